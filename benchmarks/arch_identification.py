"""Architecture identification on an ``archs`` zoo (seed 001): Recall@10 per encoder.

    zoolens zoo generate --preset archs --out ZOO --jobs 1
    python benchmarks/arch_identification.py --zoo ZOO

Every model of the zoo is a query (leave-one-out over the whole zoo); Recall@10 is the
fraction of its 10 nearest neighbours (cosine) of the same architecture class (the
manifest's ``family``), averaged over queries. Encoders: the default (shipped neural-graph
encoder), ``layerwise``, weight statistics, and the output probe (outputs on fixed probe
inputs of each net's own input shape; nets it cannot run are left out of its row, which
says how many it covered). Chance is the mean share of a query's class among the others.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

from zoolens.nn import encoder_class, load_encoder
from zoolens.zoo import Zoo


def recall_per_query(z: np.ndarray, labels: np.ndarray, k: int = 10) -> np.ndarray:
    """Fraction of each row's `k` nearest other rows (cosine) sharing its label."""
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    nearest = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    hits: np.ndarray = (labels[nearest] == labels[:, None]).mean(1)
    return hits


def recall_at_k(z: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean over queries of `recall_per_query`."""
    return float(recall_per_query(z, labels, k).mean())


def chance(labels: np.ndarray) -> float:
    """Expected Recall@k of a random ranking: the mean share of a query's class."""
    _, counts = np.unique(labels, return_counts=True, return_inverse=False)
    share = {c: (n - 1) / (len(labels) - 1) for c, n in zip(np.unique(labels), counts, strict=True)}
    return float(np.mean([share[c] for c in labels]))


def encode_all(name: str, nets: list) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of the nets an encoder can embed, and a mask of which ones they are."""
    if name == "probe":
        encoder = encoder_class("probe")({"n_probes": 16, "dim": 16 * 10})
    elif name == "weight-stats":
        encoder = encoder_class("weight-stats")()
    else:
        encoder = load_encoder(name)
    rows, ok = [], []
    for net in nets:
        try:
            rows.append(encoder.encode([net], threads=1)[0])
            ok.append(True)
        except Exception:
            ok.append(False)
    return np.stack(rows), np.array(ok)


def relabelled_zoo(zoo_dir: str, out: str) -> str:
    """A view of the zoo whose groups are architecture classes: the manifest's ``task`` is
    set to ``family`` (and every row counted a classifier), models symlinked."""
    from zoolens.zoo.manifest import read_manifest, write_manifest

    m = read_manifest(zoo_dir)
    m["task"], m["kind"] = m["family"], "classification"
    os.makedirs(out, exist_ok=True)
    with (
        open(os.path.join(zoo_dir, "zoo.json")) as f,
        open(os.path.join(out, "zoo.json"), "w") as g,
    ):
        json.dump(json.load(f), g)
    os.symlink(os.path.abspath(os.path.join(zoo_dir, "models")), os.path.join(out, "models"))
    write_manifest(m, out)
    return out


def trained_rows(
    zoo_dir: str, nets: list, labels: np.ndarray, split: np.ndarray, k: int, minutes: float
) -> None:
    """Seed 001's protocol: each encoder trained on the train split with same-class
    positives (val split for early stopping), then the test models queried against every
    other model of the zoo."""
    from zoolens.train import TrainConfig, train_encoder

    test = split == "test"
    for name in ("neural-graph", "layerwise"):
        with tempfile.TemporaryDirectory() as tmp:
            view = relabelled_zoo(zoo_dir, os.path.join(tmp, "zoo"))
            cfg = TrainConfig(encoder=name, lam=1.0, max_minutes=minutes, epochs=200, patience=20)
            t0 = time.perf_counter()
            encoder = train_encoder(view, os.path.join(tmp, "run"), cfg, progress=False).encoder
            z = encoder.encode(nets, threads=1)
        sim = z[test] @ z.T  # (n_test, n)
        sim[np.arange(test.sum()), np.flatnonzero(test)] = -np.inf
        nearest = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        r = float((labels[nearest] == labels[test][:, None]).mean())
        secs = time.perf_counter() - t0
        print(f"{name + ' (trained)':22s} {int(test.sum()):6d} {r:9.3f} {secs:6.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--encoders", default="default,layerwise,weight-stats,probe")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--per-class", action="store_true", help="also Recall@k by class")
    ap.add_argument(
        "--train-minutes",
        type=float,
        default=0.0,
        help="also train neural-graph and layerwise on the zoo's train split with "
        "same-class positives for this long each, and query with its test split",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    zoo = Zoo.open(args.zoo)
    m = zoo.manifest
    nets = [zoo.load(str(i)) for i in m["id"]]
    labels = m["family"].to_numpy()
    n_cls = len(np.unique(labels))
    print(f"{len(nets)} models, {n_cls} architecture classes; chance {chance(labels):.3f}")
    print(f"{'encoder':22s} {'models':>6s} {'Recall@' + str(args.k):>9s} {'secs':>6s}")
    per_class = {}
    for name in args.encoders.split(","):
        t0 = time.perf_counter()
        z, ok = encode_all(name, nets)
        hits = recall_per_query(z, labels[ok], args.k)
        secs = time.perf_counter() - t0
        print(f"{name:22s} {int(ok.sum()):6d} {hits.mean():9.3f} {secs:6.1f}")
        per_class[name] = {c: hits[labels[ok] == c].mean() for c in np.unique(labels[ok])}
    if args.train_minutes:
        split = m["split"].to_numpy()
        trained_rows(args.zoo, nets, labels, split, args.k, args.train_minutes)
    if args.per_class:
        names = list(per_class)
        print(f"\n{'class':20s} " + " ".join(f"{n:>12s}" for n in names))
        for c in np.unique(labels):
            cells = [per_class[n].get(c, float("nan")) for n in names]
            print(f"{c:20s} " + " ".join(f"{v:12.3f}" for v in cells))


if __name__ == "__main__":
    main()
