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
import time

import numpy as np
import torch

from zoolens.nn import encoder_class, load_encoder
from zoolens.zoo import Zoo


def recall_at_k(z: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each row's `k` nearest other rows (cosine) sharing its label."""
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    nearest = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return float((labels[nearest] == labels[:, None]).mean())


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--encoders", default="default,layerwise,weight-stats,probe")
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    zoo = Zoo.open(args.zoo)
    m = zoo.manifest
    nets = [zoo.load(str(i)) for i in m["id"]]
    labels = m["family"].to_numpy()
    n_cls = len(np.unique(labels))
    print(f"{len(nets)} models, {n_cls} architecture classes; chance {chance(labels):.3f}")
    print(f"{'encoder':14s} {'models':>6s} {'Recall@' + str(args.k):>9s} {'secs':>6s}")
    for name in args.encoders.split(","):
        t0 = time.perf_counter()
        z, ok = encode_all(name, nets)
        r = recall_at_k(z, labels[ok], args.k)
        secs = time.perf_counter() - t0
        print(f"{name:14s} {int(ok.sum()):6d} {r:9.3f} {secs:6.1f}")


if __name__ == "__main__":
    main()
