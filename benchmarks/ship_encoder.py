"""Measure an encoder against every baseline on the zoo's test split and ship it.

    python benchmarks/ship_encoder.py --zoo ZOO --encoder DIR [--heldout-encoder DIR2]
        [--heldout-tasks a,b,c] [--heldout-families f] [--name neural-graph]
        [--fingerprint W] [--quality-stats] [--command "..."]

Writes ``src/zoolens/weights/<name>/`` (config.json, model.safetensors, MODEL_CARD.md, and
metrics.csv when DIR or its parent run holds one) and prints the card's table. Every
number in the card comes from this run; the test split is read once, here.
``--encoder DIR`` is a saved encoder (a training run's ``RUN/best``, or a shipped one such
as ``src/zoolens/weights/neural-graph``); ``--heldout-encoder DIR2`` its counterpart trained
without the held-out tasks and families, which fills the held-out columns.
``--fingerprint W`` ships (and measures, with its counterpart) the neural-graph encoder with
its function fingerprint at weight W (choose W on validation with
`benchmarks/fingerprint_weight.py`).
``--quality-stats`` refits the encoder's quality head on the zoo, reading its function's
output statistics too (`zoolens fit-quality`), before measuring it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from zoolens.bench.measure import subset_retrieval
from zoolens.eval import retrieval_metrics
from zoolens.nn import Encoder, NeuralGraphEncoder, encoder_class, load_encoder
from zoolens.nn.torch_encoder import TorchEncoder
from zoolens.train.data import group_labels, quality_targets
from zoolens.train.quality import QualityFit, fit_quality_head
from zoolens.zoo import Zoo

#: The parts of a two-part neural-graph embedding, measured beside it: the learned part
#: alone, and the fingerprint nearly alone (at w = 1 a net with constant outputs would have
#: an all-zero embedding, which no cosine ranks).
PARTS = (("learned part alone", 0.0), ("fingerprint, w = 0.99", 0.99))
BASELINES = ("raw-weights", "flat-pca", "weight-stats", "probe", "metadata", "layerwise")


def _nets(zoo: Zoo, df) -> list:
    return [zoo.load(str(i)).to(torch.float32) for i in df["id"]]


def _score(enc: Encoder, nets: list, labels: np.ndarray, subsets: dict[str, np.ndarray]) -> dict:
    """Leave-one-out retrieval over all test models, and scored on the queries of each
    subset only (their gallery is still every test model)."""
    t = time.time()
    z = enc.encode(nets, batch_size=64)
    speed = len(nets) / (time.time() - t)
    m = retrieval_metrics(z, labels)
    out = {"all": {k: m[k] for k in ("mAP", "P@1", "P@5", "MRR")} | {"models/s": speed}}
    for name, queries in subsets.items():
        if queries.any():
            out[name] = subset_retrieval(z, labels, queries)
    return out


def _quality(enc: Encoder, nets: list, target: np.ndarray) -> dict[str, float]:
    """Quality predicted by the encoder's head vs the recorded one, on test models."""
    from scipy.stats import kendalltau, spearmanr

    ok = np.isfinite(target)
    pred = enc.predict_quality([n for n, k in zip(nets, ok, strict=True) if k])  # type: ignore[attr-defined]
    t = target[ok]
    return {
        "n": int(ok.sum()),
        "spearman": float(spearmanr(pred, t).statistic),
        "kendall": float(kendalltau(pred, t).statistic),
        "mae": float(np.abs(pred - t).mean()),
        "r2": float(1 - ((pred - t) ** 2).sum() / ((t - t.mean()) ** 2).sum()),
    }


def subsets(test, heldout_tasks: list[str], heldout_families: list[str]) -> dict[str, np.ndarray]:
    """Query subsets of the card's columns: INRs, the other models, held-out tasks, family."""
    inr = test["kind"].eq("inr").to_numpy()
    return {
        "INRs": inr,
        "non-INR": ~inr,
        "held-out tasks": test["task"].isin(heldout_tasks).to_numpy(),
        "held-out families": test["family"].isin(heldout_families).to_numpy(),
    }


HELD = ("held-out tasks", "held-out families")


def load_trained(path: str, fingerprint: float | None) -> Encoder:
    """The encoder saved at `path`, with its fingerprint weight set if one is given."""
    enc = load_encoder(path)
    if fingerprint is None:
        return enc
    if not isinstance(enc, NeuralGraphEncoder):
        raise SystemExit(f"{path}: --fingerprint applies to neural-graph encoders only")
    return enc.with_fingerprint(fingerprint)


def run_file(encoder_dir: str, name: str) -> str | None:
    """`name` (metrics.csv, train_config.json) beside the encoder or in its training run
    (the parent of ``RUN/best``), if there is one."""
    for d in (encoder_dir, os.path.dirname(os.path.abspath(encoder_dir))):
        path = os.path.join(d, name)
        if os.path.isfile(path):
            return path
    return None


def evaluate_all(
    zoo: Zoo,
    trained: tuple[str, Encoder],
    heldout: Encoder | None,
    heldout_tasks: list[str],
    heldout_families: list[str],
) -> dict:
    """The trained encoder (name, encoder) and every baseline on the test split. The
    trained encoder's held-out columns come from its counterpart `heldout`, trained
    without those tasks and families (without one, the columns are left out)."""
    m = zoo.manifest
    test, train = m[m["split"] == "test"], m[m["split"] == "train"]
    test_nets = _nets(zoo, test)
    labels = group_labels(test.reset_index(drop=True))
    queries = subsets(test, heldout_tasks, heldout_families)
    own = {k: v for k, v in queries.items() if k not in HELD}
    name, enc = trained
    rows: dict = {name: _score(enc, test_nets, labels, own)}
    rows[name]["quality"] = _quality(enc, test_nets, quality_targets(test))
    if heldout is not None:
        held = {k: queries[k] for k in HELD}
        unseen = _score(heldout, test_nets, labels, held)
        rows[name] |= {k: v for k, v in unseen.items() if k != "all"}
    for part, w in PARTS if isinstance(enc, NeuralGraphEncoder) and enc.config.fingerprint else ():
        rows[f"{name}: {part}"] = _score(enc.with_fingerprint(w), test_nets, labels, own)
        if isinstance(heldout, NeuralGraphEncoder):
            unseen = _score(heldout.with_fingerprint(w), test_nets, labels, held)
            rows[f"{name}: {part}"] |= {k: v for k, v in unseen.items() if k != "all"}
    train_nets = _nets(zoo, train)
    others = {"neural-graph (untrained)": encoder_class("neural-graph")()}
    for name in BASELINES:
        enc = encoder_class(name)()
        if hasattr(enc, "fit"):
            enc.fit(train_nets)
        others[f"{name} (untrained)" if isinstance(enc, TorchEncoder) else name] = enc
    for name, enc in others.items():
        rows[name] = _score(enc, test_nets, labels, queries)
    return rows


def _summary(train_cfg: dict) -> dict:
    """The run's config, with a long list of trained-on tasks (a procedural stream's)
    counted rather than listed."""
    tasks = train_cfg.get("trained_on", {}).get("tasks", [])
    if len(tasks) <= 24:
        return train_cfg
    counted = f"{len(tasks)} tasks ({', '.join(tasks[:3])}, ...)"
    return {**train_cfg, "trained_on": {**train_cfg["trained_on"], "tasks": counted}}


def projection(config: object) -> str:
    """How the encoder's fingerprint is made, for its card."""
    layout = str(getattr(config, "fingerprint_layout", "gaussian"))
    k, n = getattr(config, "fingerprint_probes", 0), getattr(config, "n_probes", 0)
    return f"layout `{layout}`" + (f", on the first {k} of its {n} probes" if k else "")


def card(
    rows: dict,
    args: argparse.Namespace,
    zoo: Zoo,
    train_cfg: dict | None,
    fit: QualityFit | None,
    projection: str = "layout `gaussian`",
) -> str:
    lines = [
        f"# zoolens encoder `{args.name}`",
        "",
        f"Trained with: `{args.command or '—'}`",
        "",
        f"Zoo: `{zoo.path}` ({len(zoo)} models; "
        f"{zoo.manifest['task'].nunique()} tasks; split counts "
        f"{zoo.manifest['split'].value_counts().to_dict()}).",
        f"Training config: `{json.dumps(_summary(train_cfg)) if train_cfg else '—'}`",
        "",
        *([Path(args.notes).read_text().strip(), ""] if args.notes else []),
        *(
            [
                f"Function fingerprint at weight {args.fingerprint:g} "
                "(`zoolens.nn.fingerprint`: the outputs on the probe inputs, standardised "
                f"per output, projected ({projection}); "
                "not trained, set after training, chosen on "
                "the validation split by `python benchmarks/fingerprint_weight.py`); the "
                "learned part weighs the rest.",
                "",
            ]
            if args.fingerprint is not None
            else []
        ),
        "Held-out retrieval on the zoo's **test split** (models never seen in training), "
        "leave-one-out, relevant = same task (INRs: same task and digit). The INR and "
        "non-INR columns score the queries of each kind (gallery: every other test model). "
        f"'held-out tasks' = queries from the test models of tasks "
        f"{args.heldout_tasks or '—'}, 'held-out family' = those of the family "
        f"{args.heldout_families or '—'} (same gallery), embedded for the trained encoder "
        f"by `{args.heldout_encoder or '—'}`, which never saw those tasks or that family; the "
        "baselines' figure is the same subset of their own ranking (fitted ones were fit on "
        "everything).",
        "",
        "| encoder | mAP | P@1 | P@5 | MRR | mAP INRs | mAP non-INR | mAP held-out tasks "
        "| mAP held-out family | models/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        a = r["all"]
        sub = " | ".join(
            f"{r.get(k, {}).get('mAP', float('nan')):.3f}" for k in ("INRs", "non-INR", *HELD)
        )
        lines.append(
            f"| {name} | {a['mAP']:.3f} | {a['P@1']:.3f} | {a['P@5']:.3f} | "
            f"{a['MRR']:.3f} | {sub} | {a['models/s']:.0f} |"
        )
    if fit is not None:
        tried = ", ".join(f"{wd:g}: {r2:.3f}" for wd, r2 in fit.val_r2.items())
        lines += [
            "",
            "Quality head refit after training, the encoder frozen (`zoolens fit-quality "
            "--stats`: `zoolens.train.quality.fit_quality_head`), from the learned embedding "
            "and the function's output statistics on the probes, on the "
            f"{fit.n_train} train-split classifiers and regressors; weight decay "
            f"{fit.weight_decay:g} chosen by validation R² ({fit.n_val} models; {tried}).",
        ]
    for name, r in rows.items():
        if "quality" in r:
            q = r["quality"]
            lines += [
                "",
                f"Quality predicted by {name}'s head (`predict_quality`) on the {q['n']} "
                "test classifiers and regressors (accuracy; R² clipped to [0, 1]): "
                f"Spearman {q['spearman']:.3f}, Kendall τ {q['kendall']:.3f}, "
                f"MAE {q['mae']:.3f}, R² {q['r2']:.3f}.",
            ]
    lines += [
        "",
        f"Measured on {platform.machine()} with {torch.get_num_threads()} threads, "
        f"{time.strftime('%Y-%m-%d')}. Re-run: `python benchmarks/ship_encoder.py "
        f"--zoo {args.zoo} --encoder {args.encoder}"
        + (
            f" --heldout-encoder {args.heldout_encoder} --heldout-tasks {args.heldout_tasks}"
            f" --heldout-families {args.heldout_families}"
            if args.heldout_encoder
            else ""
        )
        + (f" --fingerprint {args.fingerprint:g}" if args.fingerprint is not None else "")
        + (" --quality-stats" if args.quality_stats else "")
        + "`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--encoder", required=True, help="a saved encoder directory")
    ap.add_argument("--heldout-encoder", default="", help="its held-out counterpart")
    ap.add_argument("--heldout-tasks", default="")
    ap.add_argument("--heldout-families", default="")
    ap.add_argument("--name", default="neural-graph")
    ap.add_argument("--command", default="")
    ap.add_argument("--fingerprint", type=float, default=None)
    ap.add_argument("--quality-stats", action="store_true")
    ap.add_argument("--notes", default="", help="markdown file: how it was trained (in the card)")
    ap.add_argument("--dest", default=os.path.join("src", "zoolens", "weights"))
    args = ap.parse_args()
    zoo = Zoo.open(args.zoo)
    tasks, families = (
        [t for t in v.split(",") if t] for v in (args.heldout_tasks, args.heldout_families)
    )
    enc = load_trained(args.encoder, args.fingerprint)
    heldout = load_trained(args.heldout_encoder, args.fingerprint) if args.heldout_encoder else None
    fit = None
    if args.quality_stats:
        if not isinstance(enc, TorchEncoder):
            raise SystemExit(f"{args.encoder}: --quality-stats needs a trained torch encoder")
        fit = fit_quality_head(enc, args.zoo, stats=True)
        enc = fit.encoder
    rows = evaluate_all(zoo, (f"{args.name} (trained)", enc), heldout, tasks, families)
    train_cfg = None
    cfg_path = run_file(args.encoder, "train_config.json")
    if cfg_path is not None:
        with open(cfg_path) as f:
            train_cfg = json.load(f)
    metrics = run_file(args.encoder, "metrics.csv")
    out = os.path.join(args.dest, args.name)
    os.makedirs(out, exist_ok=True)
    enc.save(out)
    target = os.path.join(out, "metrics.csv")
    if metrics is not None and os.path.abspath(metrics) != os.path.abspath(target):
        shutil.copy(metrics, target)
    text = card(rows, args, zoo, train_cfg, fit, projection(enc.config))
    with open(os.path.join(out, "MODEL_CARD.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
