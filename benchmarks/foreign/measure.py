"""Task-mAP of embeddings on the foreign zoos of `make_zoos.py` (issue 25, protocol a, d).

    PYTHONPATH=src python benchmarks/foreign/measure.py --zoos DIR [--encoder NAME|DIR]
        [--out results.json] [--limit N] [--probe-counts 64,256]

For every zoo under DIR (a directory with ``manifest.csv``), every net is read with
``zoolens.load_net(path, strict=True)``; the ones that fail are counted and listed with their
error, not fatal. Embeddings: the encoder (default: the shipped default), its learned part
alone and its fingerprint alone (`split_parts`), the `probe` baseline over several probe
distributions, counts and output normalisations, and `weight-stats`. Score: leave-one-out
retrieval mAP and P@1 (relevant = same task / shape class; `zoolens.eval.retrieval_metrics`).
For coordinate-net (INR) zoos, also 5-fold logistic-regression accuracy (stratified, shuffled
with seed 0; `zoolens.eval.classification_accuracy`) of every embedding and of the rendered
image (28×28 pixel-centre grid → pixels). ``--limit N`` keeps the first N nets of each task.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import sys
import time

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedKFold

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _embeddings import (
    encode_each,
    probe_embeddings,
    rendered_images,
    split_parts,
    weight_stats,
)

import zoolens
from zoolens.eval import classification_accuracy, retrieval_metrics
from zoolens.ir import Net

log = logging.getLogger("foreign")


def load_zoo(zoo_dir: str, limit: int | None) -> tuple[pd.DataFrame, list[Net], dict[str, str]]:
    """The manifest rows that loaded as Nets, the Nets, and ``{id: error}`` of the rest."""
    manifest = pd.read_csv(os.path.join(zoo_dir, "manifest.csv"))
    if limit:
        manifest = manifest.groupby("task", sort=False).head(limit)
    keep, nets, errors = [], [], {}
    for i, row in manifest.iterrows():
        try:
            net = zoolens.load_net(os.path.join(zoo_dir, row["path"]), strict=True)
            if not isinstance(net, Net):
                raise TypeError(f"loaded as {type(net).__name__}, not a Net")
        except Exception as e:
            errors[str(row["id"])] = f"{type(e).__name__}: {e}"
            continue
        keep.append(i)
        nets.append(net)
    return manifest.loc[keep].reset_index(drop=True), nets, errors


def kfold_accuracy(emb: np.ndarray, labels: np.ndarray, folds: int = 5) -> float:
    """Mean held-out accuracy of logistic regression over stratified folds (seed 0)."""
    n_min = int(pd.Series(labels).value_counts().min())
    k = min(folds, n_min)
    if k < 2:
        return float("nan")
    accs = []
    for train, _ in StratifiedKFold(k, shuffle=True, random_state=0).split(emb, labels):
        mask = np.zeros(len(labels), dtype=bool)
        mask[train] = True
        accs.append(classification_accuracy(emb, labels, mask))
    return float(np.mean(accs))


def embeddings(encoder_name: str, nets: list[Net], ids: list[str], counts: list[int], inr: bool):
    """``{name: (n, d)}`` of every embedding measured, the encoder's failures, and timings."""
    out: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    encoder = zoolens.load_encoder(encoder_name)
    emb, failures = encode_each(encoder, nets, ids)
    out[f"encoder `{encoder_name}` ({emb.shape[1]} dims)"] = emb
    ok = ~np.isnan(emb).any(axis=1)
    parts = split_parts(encoder, emb, nets) if ok.all() else {}
    out.update({f"  {k}": v for k, v in parts.items()})
    seconds["encoder"] = time.perf_counter() - start
    start = time.perf_counter()
    out.update(probe_embeddings(nets, counts, single_output=inr))
    seconds["probes"] = time.perf_counter() - start
    out.update(weight_stats(nets))
    if inr:
        out["rendered image 28×28 (pixels)"] = rendered_images(nets)
    return out, failures, seconds


def measure_zoo(zoo_dir: str, args: argparse.Namespace) -> dict:
    manifest, nets, load_errors = load_zoo(zoo_dir, args.limit)
    name = os.path.basename(os.path.normpath(zoo_dir))
    print(f"\n## {name}: {len(nets)} nets loaded, {len(load_errors)} failed to load as Nets")
    for nid, err in load_errors.items():
        print(f"- load failure `{nid}`: {err}")
    inr = bool(len(nets)) and tuple(nets[0].input_shape) == (2,)
    labels = manifest["task"].to_numpy()
    embs, enc_failures, seconds = embeddings(
        args.encoder, nets, manifest["id"].astype(str).tolist(), args.counts, inr
    )
    for nid, err in enc_failures.items():
        print(f"- encoder failure `{nid}`: {err}")
    rows = {}
    for key, emb in embs.items():
        ok = ~np.isnan(emb).any(axis=1)
        r = retrieval_metrics(emb[ok], labels[ok])
        row = {"mAP": r["mAP"], "P@1": r["P@1"], "n": int(ok.sum())}
        if inr:
            row["5-fold acc"] = kfold_accuracy(emb[ok], labels[ok])
        rows[key] = row
    _print_table(rows, inr)
    return {
        "zoo": zoo_dir,
        "n_models": int(len(manifest) + len(load_errors)),
        "n_loaded": len(nets),
        "load_failures": load_errors,
        "encoder_failures": enc_failures,
        "tasks": sorted(set(labels.tolist())),
        "seconds": seconds,
        "rows": rows,
    }


def _print_table(rows: dict[str, dict], inr: bool) -> None:
    cols = ["mAP", "P@1"] + (["5-fold acc"] if inr else []) + ["n"]
    print("\n| embedding | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for key, row in rows.items():
        cells = [f"{row[c]:.3f}" if c != "n" else str(row[c]) for c in cols]
        label = key.replace("  ", "↳ ", 1) if key.startswith("  ") else key
        print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--zoos", required=True, help="directory of zoos (each with manifest.csv)")
    ap.add_argument("--encoder", default="default", help="encoder name or saved directory")
    ap.add_argument("--out", default=None, help="write every number here as JSON")
    ap.add_argument("--limit", type=int, default=None, help="first N nets of each task")
    ap.add_argument("--probe-counts", default="64,256", help="probe counts of the probe baseline")
    args = ap.parse_args()
    args.counts = [int(v) for v in args.probe_counts.split(",")]
    torch.set_num_threads(1)
    zoos = sorted(
        os.path.join(args.zoos, d)
        for d in os.listdir(args.zoos)
        if os.path.isfile(os.path.join(args.zoos, d, "manifest.csv"))
    )
    if not zoos:
        sys.exit(f"{args.zoos}: no zoo (a directory with manifest.csv) inside")
    started = datetime.datetime.now().isoformat(timespec="seconds")
    print(f"# Foreign zoos, {started}, encoder `{args.encoder}`")
    results = {
        "command": "python benchmarks/foreign/measure.py " + " ".join(sys.argv[1:]),
        "started": started,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "zoos": [measure_zoo(z, args) for z in zoos],
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1, default=float)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
