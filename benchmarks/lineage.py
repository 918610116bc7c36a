"""Lineage recovery on a zoo's recorded fine-tunes: zoolens vs a plain weight-distance baseline.

    python benchmarks/lineage.py --zoo zoos/lineage [--threshold 0.6] [--permute]

Every model of the zoo is loaded; the recorded ``parent`` column is the truth and is not
shown to the methods. Edges count only between models of one architecture and shape
(a fine-tune with a new head of another size cannot be compared weight by weight); the
report says how many recorded edges that leaves.

- ``zoolens``: `recover_lineage` with `zoolens.merge.align` (minimum spanning forest on
  aligned relative distances, direction by weight kurtosis).
- ``zoolens-noalign``: the same without permutation alignment (scale / sign canonical form).
- ``nn-raw``: each model's nearest neighbour in raw flattened weights (no alignment) when
  below the threshold, one edge per pair; direction at random, or the smaller-norm end as
  the parent.

The zoo used for the README's figures (100 models, 40 fine-tunes; about 5 minutes):

    from dataclasses import replace
    from zoolens.zoo import generate_zoo
    from zoolens.zoo.presets import TINY
    preset = replace(TINY, name="lineage", n_models=60, n_finetunes=40, n_inrs=0,
                     widths=(16, 32), depths=(1, 2))
    generate_zoo(preset, "zoos/lineage", seed=0)

``--permute`` applies a random exact symmetry action (units permuted and rescaled; same
function) to every model first, as models re-exported or re-ordered by other tools are.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from zoolens.eval import lineage_metrics
from zoolens.index.lineage import LineageConfig, recover_lineage, relative_distances, weight_vector
from zoolens.ir import Net
from zoolens.merge import align
from zoolens.symmetry import random_exact_action
from zoolens.zoo import Zoo


def nearest_neighbour_edges(
    nets: dict[str, Net], threshold: float, direction: str, seed: int = 0
) -> list[tuple[str, str]]:
    """The baseline: join each model to its raw-weight nearest neighbour of the same
    architecture when the relative distance is below `threshold`."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = {}
    for model_id, net in nets.items():
        groups.setdefault(net.arch_key(), []).append(model_id)
    edges: dict[frozenset[str], tuple[str, str]] = {}
    for ids in groups.values():
        if len(ids) < 2:
            continue
        x = np.stack([weight_vector(nets[i]) for i in ids])  # (n, p)
        dist = relative_distances(x)
        np.fill_diagonal(dist, np.inf)
        norms = np.linalg.norm(x, axis=1)
        for a, b in enumerate(dist.argmin(axis=1)):
            if dist[a, b] >= threshold:
                continue
            if direction == "norm":
                pair = (ids[a], ids[b]) if norms[a] <= norms[b] else (ids[b], ids[a])
            else:
                pair = (ids[a], ids[b]) if rng.random() < 0.5 else (ids[b], ids[a])
            edges.setdefault(frozenset(pair), pair)
    return list(edges.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", required=True)
    parser.add_argument("--threshold", type=float, default=LineageConfig().edge_threshold)
    parser.add_argument("--permute", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    zoo = Zoo.open(args.zoo)
    nets: dict[str, Net] = {}
    g = torch.Generator().manual_seed(args.seed)
    for net, row in zoo:
        nets[str(row["id"])] = random_exact_action(net, g) if args.permute else net
    parents = {
        str(r["id"]): str(r["parent"]) for _, r in zoo.manifest.iterrows() if r.get("parent")
    }
    truth = [(p, c) for c, p in parents.items() if p in nets]
    shape = {i: n.arch_key() for i, n in nets.items()}
    comparable = [(p, c) for p, c in truth if shape[p] == shape[c]]
    groups = len(set(shape.values()))
    print(
        f"zoo {args.zoo}: {len(nets)} models in {groups} architectures; {len(truth)} recorded "
        f"edges, {len(comparable)} within one architecture; threshold {args.threshold}"
        + ("; every model permuted + rescaled" if args.permute else "")
    )

    config = LineageConfig(edge_threshold=args.threshold)
    rows = {}
    for name, aligner in (("zoolens", align), ("zoolens-noalign", None)):
        t0 = time.perf_counter()
        lineage = recover_lineage(nets, align=aligner, config=config)
        pred = [(e.parent, e.child) for e in lineage.edges]
        rows[name] = {**lineage_metrics(comparable, pred), "seconds": time.perf_counter() - t0}
    for direction in ("random", "norm"):
        t0 = time.perf_counter()
        pred = nearest_neighbour_edges(nets, args.threshold, direction, args.seed)
        rows[f"nn-raw ({direction})"] = {
            **lineage_metrics(comparable, pred),
            "seconds": time.perf_counter() - t0,
        }

    print(f"{'method':<20} {'prec':>6} {'recall':>6} {'f1':>6} {'dir acc':>7} {'pred':>5} {'s':>6}")
    for name, m in rows.items():
        print(
            f"{name:<20} {m['precision']:6.3f} {m['recall']:6.3f} {m['f1']:6.3f} "
            f"{m['direction_accuracy']:7.3f} {int(m['n_pred']):5d} {m['seconds']:6.1f}"
        )
    print(json.dumps({k: {a: round(b, 4) for a, b in v.items()} for k, v in rows.items()}))


if __name__ == "__main__":
    main()
