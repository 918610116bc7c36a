"""Lineage recovery on a zoo's recorded fine-tunes: zoolens vs a plain weight-distance baseline,
with thresholds chosen on one half of the zoo and scored on the other.

    python benchmarks/lineage.py --zoo zoos/lineage [--permute] [--split-seed 0]

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

**Honest thresholds.** The zoo is split by family: the root models (no recorded parent in
the zoo) are shuffled into two halves, each model going with its root. On one half every
method's edge threshold is chosen (best edge F1 over a grid; ties go to the value nearest
the shipped default), and zoolens' near-duplicate threshold is chosen (best F1 at finding
planted copies: every third model re-exported — units permuted and rescaled, weights
rounded through float16 — beside all the other models); the other half is then scored
with those values. Both ways round are reported (fold A→B and B→A), with the shipped
defaults beside them.

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


EDGE_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)
DUPLICATE_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
Edges = list[tuple[str, str]]


def split_by_root(parents: dict[str, str], ids: list[str], seed: int) -> tuple[set, set]:
    """Two halves of `ids`: root models shuffled into two, each model with its root."""

    def root(i: str) -> str:
        seen = {i}
        while i in parents and parents[i] in ids and parents[i] not in seen:
            i = parents[i]
            seen.add(i)
        return i

    roots = sorted({root(i) for i in ids})
    order = np.random.default_rng(seed).permutation(len(roots))
    first = {roots[k] for k in order[: len(roots) // 2]}
    half = {i for i in ids if root(i) in first}
    return half, set(ids) - half


def predict(method: str, nets: dict[str, Net], threshold: float, dup: float, seed: int) -> Edges:
    """Predicted ``(parent, child)`` edges of one method at one edge threshold."""
    if method.startswith("nn-raw"):
        return nearest_neighbour_edges(nets, threshold, method.split()[1].strip("()"), seed)
    config = LineageConfig(edge_threshold=threshold, duplicate_threshold=dup)
    lineage = recover_lineage(nets, align=align if method == "zoolens" else None, config=config)
    return [(e.parent, e.child) for e in lineage.edges]


def with_copies(nets: dict[str, Net], seed: int) -> tuple[dict[str, Net], set[frozenset[str]]]:
    """`nets` and a re-exported copy of every third one (units permuted and rescaled,
    weights rounded through float16); the true ``{original, copy}`` pairs."""
    g = torch.Generator().manual_seed(seed)
    out, pairs = dict(nets), set()
    for i in sorted(nets)[::3]:
        copy = random_exact_action(nets[i], g).to(torch.float16).to(torch.float32)
        out[f"{i}~copy"] = copy
        pairs.add(frozenset((i, f"{i}~copy")))
    return out, pairs


def duplicate_scores(nets: dict[str, Net], edge: float, dup: float, seed: int) -> dict:
    """Precision / recall / F1 of zoolens' near-duplicate pairs against planted copies."""
    found, truth = with_copies(nets, seed)
    config = LineageConfig(edge_threshold=edge, duplicate_threshold=dup)
    groups = recover_lineage(found, align=align, config=config).duplicates
    pred = {frozenset((a, b)) for g in groups for a in g for b in g if a < b}
    hit = len(pred & truth)
    p = hit / len(pred) if pred else float("nan")
    r = hit / len(truth) if truth else float("nan")
    f1 = 2 * p * r / (p + r) if pred and truth and p + r > 0 else 0.0
    return {"precision": p, "recall": r, "f1": f1, "n_pred": len(pred), "n_true": len(truth)}


def choose(scores: dict[float, float], default: float) -> float:
    """The grid value of best score; ties go to the one nearest `default` (log scale)."""
    best = max(v for v in scores.values() if not np.isnan(v))
    tied = [t for t, v in scores.items() if v == best]
    return min(tied, key=lambda t: abs(np.log(t / default)))


def fold(
    nets: dict[str, Net], truth: Edges, tune: set, test: set, methods: list[str], seed: int
) -> dict:
    """Thresholds chosen on `tune`, every method scored on `test` (and on `tune`)."""
    default = LineageConfig()
    part = {"tune": tune, "test": test}
    sub = {k: {i: nets[i] for i in sorted(ids)} for k, ids in part.items()}  # order matters
    edges = {k: [(p, c) for p, c in truth if p in ids] for k, ids in part.items()}
    chosen: dict[str, float] = {}
    grids: dict[str, dict[float, float]] = {}
    for m in methods:
        f1 = {
            t: lineage_metrics(
                edges["tune"], predict(m, sub["tune"], t, default.duplicate_threshold, seed)
            )["f1"]
            for t in EDGE_GRID
        }
        chosen[m], grids[m] = choose(f1, default.edge_threshold), f1
    dup_f1 = {
        d: duplicate_scores(sub["tune"], chosen["zoolens"], d, seed)["f1"] for d in DUPLICATE_GRID
    }
    chosen["duplicates"] = choose(dup_f1, default.duplicate_threshold)
    grids["duplicates"] = dup_f1
    rows: dict[str, dict] = {}
    for k in ("tune", "test"):
        for m in methods:
            for label, t in (("chosen", chosen[m]), ("default", default.edge_threshold)):
                pred = predict(m, sub[k], t, chosen["duplicates"], seed)
                rows[f"{k} {m} @{label} {t:g}"] = lineage_metrics(edges[k], pred)
        for label, d in (
            ("chosen", chosen["duplicates"]),
            ("default", default.duplicate_threshold),
        ):
            rows[f"{k} duplicates @{label} {d:g}"] = duplicate_scores(
                sub[k], chosen["zoolens"], d, seed
            )
    n_edges = {k: len(v) for k, v in edges.items()}
    return {"chosen": chosen, "tune_f1": grids, "rows": rows, "n_edges": n_edges}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", required=True)
    parser.add_argument("--permute", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split-seed", type=int, default=0)
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
    half_a, half_b = split_by_root(parents, sorted(nets), args.split_seed)
    print(
        f"zoo {args.zoo}: {len(nets)} models in {len(set(shape.values()))} architectures; "
        f"{len(truth)} recorded edges, {len(comparable)} within one architecture; halves of "
        f"{len(half_a)} / {len(half_b)} models (split seed {args.split_seed})"
        + ("; every model permuted + rescaled" if args.permute else "")
    )
    methods = ["zoolens", "zoolens-noalign", "nn-raw (random)", "nn-raw (norm)"]
    results = {}
    for name, tune, test in (("A->B", half_a, half_b), ("B->A", half_b, half_a)):
        t0 = time.perf_counter()
        out = fold(nets, comparable, tune, test, methods, args.seed)
        results[name] = out
        print(
            f"\nfold {name}: thresholds chosen on {len(tune)} models "
            f"({out['n_edges']['tune']} edges), scored on {len(test)} "
            f"({out['n_edges']['test']} edges); {time.perf_counter() - t0:.0f} s"
        )
        print("chosen: " + ", ".join(f"{k} {v:g}" for k, v in out["chosen"].items()))
        for key in ("zoolens", "duplicates"):
            grid = " ".join(f"{t:g}:{f:.2f}" for t, f in out["tune_f1"][key].items())
            print(f"tune F1 of {key} by threshold: {grid}")
        head = f"{'prec':>6} {'recall':>6} {'f1':>6} {'dir':>6} {'pred':>5}"
        print(f"{'split method @threshold':<44} {head}")
        for key, m in out["rows"].items():
            direction = m.get("direction_accuracy", float("nan"))
            print(
                f"{key:<44} {m['precision']:6.3f} {m['recall']:6.3f} {m['f1']:6.3f} "
                f"{direction:6.3f} {int(m['n_pred']):5d}"
            )
    print(json.dumps(results, default=float))


if __name__ == "__main__":
    main()
