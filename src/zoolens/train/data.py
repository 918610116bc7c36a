"""Training data from a zoo: nets, relevance groups, quality targets, and batch sampling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from zoolens.graph import NeuralGraph
from zoolens.ir import Net
from zoolens.nn.fingerprint import normalise_columns, output_responses
from zoolens.symmetry import drop_connect, random_exact_action, weight_noise
from zoolens.zoo import Zoo
from zoolens.zoo.manifest import kept


def group_labels(manifest: pd.DataFrame) -> np.ndarray:
    """Relevance group of each model: its task; an INR's task and digit."""
    inr = manifest["kind"].eq("inr")
    groups: np.ndarray = np.where(
        inr, manifest["task"] + ":" + manifest["label"].astype(str), manifest["task"]
    ).astype(str)
    return groups


def quality_targets(manifest: pd.DataFrame) -> np.ndarray:
    """Normalised quality in [0, 1]: accuracy; R² (clipped) for regression; NaN for INRs."""
    acc = manifest["accuracy"].to_numpy(np.float64)
    r2 = manifest["r2"].to_numpy(np.float64).clip(0.0, 1.0)
    return np.where(np.isfinite(acc), acc, np.where(manifest["kind"].eq("inr"), np.nan, r2))


@dataclass
class ZooSplit:
    """Models of one split: loaded nets (float32), their group ids and quality targets."""

    nets: list[Net]
    groups: np.ndarray
    targets: np.ndarray
    ids: list[str]


def load_split(
    zoo: Zoo,
    split: str | list[str],
    exclude_tasks: Sequence[str] = (),
    exclude_families: Sequence[str] = (),
) -> ZooSplit:
    """Models of `split` (one or several), minus those of `exclude_tasks` and of
    `exclude_families`."""
    splits = [split] if isinstance(split, str) else split
    m = zoo.manifest
    df = m[m["split"].isin(splits) & kept(m, exclude_tasks, exclude_families)]
    df = df.reset_index(drop=True)
    nets = [zoo.load(str(i)).to(torch.float32) for i in df["id"]]
    return ZooSplit(nets, group_labels(df), quality_targets(df), [str(i) for i in df["id"]])


def concat_splits(splits: Sequence[ZooSplit]) -> ZooSplit:
    """One split of the models of several (e.g. the shards of a procedural stream)."""
    return ZooSplit(
        [n for s in splits for n in s.nets],
        np.concatenate([s.groups for s in splits]) if splits else np.zeros(0, dtype=str),
        np.concatenate([s.targets for s in splits]) if splits else np.zeros(0),
        [i for s in splits for i in s.ids],
    )


def functional_profiles(
    graphs: Sequence[NeuralGraph], nets: Sequence[Net]
) -> tuple[torch.Tensor, np.ndarray]:
    """What each model computes, for the functional-similarity term: its outputs on the
    probe inputs, standardised per output and flattened to a unit row ``(n, F)`` (zero-padded
    to the longest), and an interface code per model (same code = same input shape and
    output count, so that the rows' dot products compare the same outputs on the same
    inputs)."""
    rows, keys = [], []
    for g, net in zip(graphs, nets, strict=True):
        y = normalise_columns(output_responses(g), scale=True)  # (P, n_out)
        rows.append(y.T.flatten())
        keys.append((tuple(net.input_shape), y.shape[1]))
    width = max((r.numel() for r in rows), default=0)
    out = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, r in enumerate(rows):
        out[i, : r.numel()] = (r / r.norm().clamp_min(1e-12)).float()
    codes = {k: c for c, k in enumerate(dict.fromkeys(keys))}
    return out, np.array([codes[k] for k in keys])


def sample_batches(
    groups: np.ndarray, batch_size: int, per_group: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch of batches; each batch takes `per_group` models from each of several
    groups so that same-group positives appear. Every model is seen about once.
    """
    by_group: dict[str, list[int]] = {}
    for i in rng.permutation(len(groups)):
        by_group.setdefault(str(groups[i]), []).append(int(i))
    chunks = [
        idx[s : s + per_group] for idx in by_group.values() for s in range(0, len(idx), per_group)
    ]
    order = rng.permutation(len(chunks))
    batches, cur = [], []
    for c in order:
        cur.extend(chunks[c])
        if len(cur) >= batch_size:
            batches.append(np.array(cur[:batch_size]))
            cur = cur[batch_size:]
    if len(cur) > 1:
        batches.append(np.array(cur))
    return batches


def graph_view(
    graph: NeuralGraph, gen: torch.Generator, p_drop: float, noise: float
) -> NeuralGraph:
    """A contrastive view made on the graph: DropConnect and weight noise on edge weights.

    For an exactly invariant encoder the exact actions are no-ops, so views of the
    (precomputed, canonical) graph are equivalent to views of the net, and much cheaper.
    Noise is zero-mean with std ``noise`` × the std of each edge type's weights.
    """
    attr = graph.edge_attr
    if p_drop > 0:
        attr = attr * (torch.rand(attr.shape, generator=gen) >= p_drop).to(attr.dtype)
    if noise > 0:
        std = torch.zeros(attr.shape[0], 1)
        for t in torch.unique(graph.edge_type).tolist():
            sel = graph.edge_type == t
            std[sel] = attr[sel].std() if int(sel.sum()) > 1 else 0.0
        attr = attr + torch.randn(attr.shape, generator=gen) * noise * std * (attr != 0)
    return replace(graph, edge_attr=attr)


def make_view(net: Net, gen: torch.Generator, p_drop: float, noise: float) -> Net:
    """A contrastive view: an exact action (a no-op for invariant encoders, a lesson for
    the others) plus inexact DropConnect and weight noise.
    """
    view = random_exact_action(net, gen)
    if p_drop > 0:
        view = drop_connect(view, p_drop, gen)
    if noise > 0:
        view = weight_noise(view, noise, gen)
    return view
