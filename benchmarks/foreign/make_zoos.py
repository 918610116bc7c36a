"""Foreign zoos for measuring embeddings: made without any zoolens code (issue 25, protocol a).

    python benchmarks/foreign/make_zoos.py --out DIR [--seed 0] [--tiny]

Writes, deterministically from ``--seed``:

* ``DIR/shared-interface/``: 8 tasks that share one interface (12 inputs → 4 classes) from
  different data-generating processes (random teacher MLPs, Gaussian mixtures of different
  geometry, scikit-learn ``make_classification`` with different settings, a rule, quadratic
  shells); 25 nets per task, MLPs and pre-norm residual MLPs with LayerNorm (relu, tanh, gelu),
  each trained briefly with Adam under its own seed and hyper-parameters.
* ``DIR/shapes-inr/``: INRs (x, y) ∈ [-1, 1]² → intensity of procedurally drawn shapes (disc,
  square, triangle, ring, cross, stripes) at random position, size, rotation and contrast;
  25 per class, ReLU and sine MLPs fit on a 28×28 pixel-centre grid.

Each net is an ONNX file (TorchScript exporter, default opset, dynamic batch axis), listed in
``manifest.csv``; each zoo has a ``README.md`` saying how it was made. ``--tiny`` makes 2 tasks
× 3 nets and 2 shape classes × 3 INRs, for smoke tests. Imports only torch, numpy,
scikit-learn (and onnx through torch's exporter).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _shapes
import _tasks
from _common import export_onnx, write_manifest


def make_shared_interface(out: str, seed: int, tasks: list[str], per_task: int) -> list[dict]:
    """Train `per_task` nets on each of `tasks` and export them under ``out/``."""
    os.makedirs(os.path.join(out, "nets"), exist_ok=True)
    rows = []
    for t, task in enumerate(tasks):
        data = _tasks.make_task(task, seed)
        rng = np.random.default_rng([seed, 1, t])
        for j in range(per_task):
            cfg = _tasks.draw_config(rng)
            net_seed = seed * 100_000 + t * 1000 + j
            model, acc = _tasks.train(cfg, data, net_seed)
            nid = f"{task}-{j:02d}"
            rel = os.path.join("nets", f"{nid}.onnx")
            export_onnx(model, (_tasks.N_IN,), os.path.join(out, rel))
            hp = {k: cfg[k] for k in ("width", "depth", "lr", "weight_decay", "batch", "steps")}
            rows.append(
                {
                    "id": nid,
                    "path": rel,
                    "task": task,
                    "family": cfg["family"],
                    "arch": _tasks.arch_name(cfg),
                    "activation": cfg["activation"],
                    "seed": net_seed,
                    "hparams": json.dumps(hp, sort_keys=True),
                    "test_accuracy": f"{acc:.4f}",
                    "input_shape": str(_tasks.N_IN),
                    "n_outputs": _tasks.N_OUT,
                }
            )
        accs = [float(r["test_accuracy"]) for r in rows if r["task"] == task]
        print(
            f"  {task:20s} {per_task} nets, test accuracy {np.mean(accs):.3f} ± {np.std(accs):.3f}"
        )
    return rows


def make_shapes_inr(out: str, seed: int, shapes: list[str], per_class: int) -> list[dict]:
    """Fit `per_class` INRs to fresh drawings of each of `shapes` and export them."""
    os.makedirs(os.path.join(out, "nets"), exist_ok=True)
    rows = []
    for s, shape in enumerate(shapes):
        rng = np.random.default_rng([seed, 2, s])
        for j in range(per_class):
            image = _shapes.draw_shape(shape, rng)
            cfg = _shapes.draw_config(rng)
            net_seed = seed * 100_000 + 50_000 + s * 1000 + j
            model, psnr = _shapes.fit(cfg, image, net_seed)
            nid = f"{shape}-{j:02d}"
            rel = os.path.join("nets", f"{nid}.onnx")
            export_onnx(model, (2,), os.path.join(out, rel))
            hp = {k: cfg[k] for k in ("width", "depth", "w0", "lr", "steps")}
            rows.append(
                {
                    "id": nid,
                    "path": rel,
                    "task": shape,
                    "family": f"{cfg['family']}-inr",
                    "arch": _shapes.arch_name(cfg),
                    "activation": cfg["activation"],
                    "seed": net_seed,
                    "hparams": json.dumps(hp, sort_keys=True),
                    "psnr": f"{psnr:.2f}",
                    "input_shape": "2",
                    "n_outputs": 1,
                }
            )
        psnrs = [float(r["psnr"]) for r in rows if r["task"] == shape]
        print(f"  {shape:20s} {per_class} INRs, PSNR {np.mean(psnrs):.1f} ± {np.std(psnrs):.1f} dB")
    return rows


def write_readme(out: str, title: str, body: str, command: str, seconds: float, n: int) -> None:
    text = (
        f"# {title}\n\n{body}\n\n"
        f"Made by `{command}` ({n} nets, {seconds / 60:.1f} min on one core; torch "
        f"{torch.__version__}). Code: `benchmarks/foreign/` of the zoolens repository, which "
        "imports no zoolens code. Files: `manifest.csv` (id, path, task, family, arch, "
        "activation, seed, hparams, test_accuracy or psnr, input_shape, n_outputs) and "
        "`nets/*.onnx` (TorchScript exporter, default opset, input `x` and output `y` with a "
        "dynamic batch axis).\n"
    )
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(text)


SHARED_BODY = (
    "Eight classification tasks that share one interface, 12 standardised inputs → 4 logits, "
    "so a net's shapes cannot give its task away: teacher-relu / teacher-tanh (Gaussian inputs "
    "labelled by the argmax of a random 12-32-32-4 MLP), mixture-isotropic (one blob per class), "
    "mixture-anisotropic (three elongated blobs per class, shared random covariance), sklearn-a / "
    "sklearn-b (`make_classification` with different seeds and settings), rule-xor "
    "(2·[x_a x_b > 0] + [x_c + x_d > x_e]) and quadratic-shells (quartile of a random quadratic "
    "form). 1200 train / 400 test points each. Nets: MLPs (1-3 hidden layers, width 16-64) and "
    "pre-norm residual MLPs with LayerNorm (1-2 blocks, width 16-32), relu / tanh / gelu, Adam "
    "with lr in [1e-3, 1e-2], weight decay 0 / 1e-4 / 1e-3, batch 32 / 64 / 128, 200-400 steps."
)
SHAPES_BODY = (
    "Implicit neural representations, (x, y) ∈ [-1, 1]² → intensity, of procedurally drawn "
    "shapes: disc, square, triangle, ring, cross, stripes, each at a random position, size, "
    "rotation and contrast, anti-aliased, 28×28 pixels. INRs: ReLU MLPs (2-3 hidden layers, "
    "width 24-48) and sine MLPs (SIREN: sin(w0 · (Wx + b)) with w0 ∈ {10, 20, 30} in the first "
    "layer, width 16-32), fit by full-batch Adam on the pixel-centre grid "
    "((2i + 1) / 28 - 1) for 300-500 steps; the manifest's psnr is the fit's."
)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="2 tasks × 3 nets, 2 shapes × 3 INRs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tasks = list(_tasks.TASKS)[:2] if args.tiny else list(_tasks.TASKS)
    shapes = list(_shapes.SHAPES)[:2] if args.tiny else list(_shapes.SHAPES)
    per = 3 if args.tiny else 25
    command = "python benchmarks/foreign/make_zoos.py " + " ".join(sys.argv[1:])
    for name, make, items, title, body in (
        ("shared-interface", make_shared_interface, tasks, "Shared-interface zoo", SHARED_BODY),
        ("shapes-inr", make_shapes_inr, shapes, "Shapes INR zoo", SHAPES_BODY),
    ):
        out = os.path.join(args.out, name)
        print(f"{name}:")
        start = time.perf_counter()
        rows = make(out, args.seed, items, per)
        write_manifest(rows, out)
        seconds = time.perf_counter() - start
        write_readme(out, title, body, command, seconds, len(rows))
        print(f"  {len(rows)} nets in {seconds / 60:.1f} min → {out}")


if __name__ == "__main__":
    main()
