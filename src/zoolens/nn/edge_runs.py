"""Index structures for fast no-grad message passing: edges grouped into runs per node.

Sum and max over each node's edges become a few dense ``(nodes, k, d)`` reductions
instead of scatters, and a batch is processed in chunks of whole graphs, about
`CHUNK_EDGES` edges each, so the per-edge tensors stay cache-sized; chunks wired alike
(graphs of one architecture) share their structures.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from zoolens.graph import GraphBatch

CHUNK_EDGES = 1 << 14  # no-grad message passing runs on graphs of about this many edges at once


def degrees(
    edge_index: torch.Tensor, n: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Out- and in-degree of every node, ``(N, 1)`` each, at least 1."""
    out_deg, in_deg = (torch.bincount(i, minlength=n).clamp_min(1).to(dtype) for i in edge_index)
    return out_deg[:, None], in_deg[:, None]


@dataclass
class _Runs:
    """Edges ordered so each node's edges are one run and runs of equal length adjacent:
    a reduction over them is a few dense ``(nodes, k, d)`` reductions, no scatter.

    Args:
        rank: ``(N,)`` each node's place in that order; nodes without edges come first.
        n_empty: how many nodes have no edges (they reduce to 0, as `scatter` does).
        groups: ``(first edge, nodes, k)`` for each run length ``k > 0``.
    """

    rank: torch.Tensor
    n_empty: int
    groups: list[tuple[int, int, int]]

    def reduce(self, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum and max of `m` ``(E, d)`` (rows in run order) per node, ``(N, d)`` each."""
        sums = [m.new_zeros((self.n_empty, m.shape[1]))]
        maxs = [sums[0]]
        for start, n, k in self.groups:
            runs = m[start : start + n * k].view(n, k, m.shape[1])  # (n, k, d)
            sums.append(runs.sum(1))
            maxs.append(runs.amax(1))
        rank = self.rank
        return torch.cat(sums).index_select(0, rank), torch.cat(maxs).index_select(0, rank)


def _runs(index: torch.Tensor, n: int) -> tuple[torch.Tensor, _Runs]:
    """The edge order (a permutation of ``range(E)``) that groups edges by `index` into
    `_Runs`, and those runs."""
    deg = torch.bincount(index, minlength=n)  # (N,)
    node_order = torch.argsort(deg, stable=True)
    rank = torch.empty_like(node_order)
    rank[node_order] = torch.arange(n)
    order = torch.argsort(rank[index], stable=True)  # (E,)
    ks, counts = torch.unique_consecutive(deg[node_order], return_counts=True)
    groups, start, n_empty = [], 0, 0
    for k, c in zip(ks.tolist(), counts.tolist(), strict=True):
        if k == 0:
            n_empty = c
        else:
            groups.append((start, c, k))
            start += c * k
    return order, _Runs(rank, n_empty, groups)


@dataclass
class Chunk:
    """Index structures of a set of whole graphs, shared by all message-passing layers.

    Edges are kept in `fwd` run order (by target); `order_b` reorders them by source for
    the backward messages. Node ids are local to the chunk.
    """

    n: int  # nodes
    order: torch.Tensor  # (E_c,) the chunk's edges in fwd run order
    src: torch.Tensor
    dst: torch.Tensor
    fwd: _Runs
    order_b: torch.Tensor  # (E_c,) positions in fwd order, grouped by source
    dst_b: torch.Tensor  # dst[order_b]
    bwd: _Runs
    degree: tuple[torch.Tensor, torch.Tensor]  # out, in: (N_c, 1) each, at least 1


def _chunk(edge_index: torch.Tensor, n: int, dtype: torch.dtype) -> Chunk:
    """`Chunk` of a graph with `n` nodes and edges `edge_index` ``(2, E_c)``."""
    order, fwd = _runs(edge_index[1], n)
    src, dst = edge_index[:, order]
    order_b, bwd = _runs(src, n)
    degree = degrees(edge_index, n, dtype)
    return Chunk(n, order, src, dst, fwd, order_b, dst[order_b], bwd, degree)


def chunks(b: GraphBatch, dtype: torch.dtype) -> Iterator[tuple[slice, slice, Chunk]]:
    """Node range, edge range and `Chunk` of consecutive whole graphs, about
    `CHUNK_EDGES` edges at a time; chunks wired alike (graphs of one architecture) share
    one `Chunk`."""
    last: tuple[torch.Tensor, Chunk] | None = None
    for nodes, edges in _split(b, CHUNK_EDGES):
        local = b.edge_index[:, edges] - nodes.start  # (2, E_c)
        n = nodes.stop - nodes.start
        if last is None or last[1].n != n or not torch.equal(last[0], local):
            last = (local, _chunk(local, n, dtype))
        yield nodes, edges, last[1]


def _split(b: GraphBatch, max_edges: int) -> list[tuple[slice, slice]]:
    """Node and edge ranges of consecutive whole graphs, about `max_edges` edges each (one
    range for all when nodes or edges are not stored graph by graph)."""
    src, dst = b.edge_index
    edge_graph = b.batch[src]  # (E,)
    everything = [(slice(0, b.batch.numel()), slice(0, src.numel()))]
    unsorted = (b.batch[1:] < b.batch[:-1]).any() or (edge_graph[1:] < edge_graph[:-1]).any()
    if bool(unsorted or (b.batch[dst] != edge_graph).any()):
        return everything
    node_end = torch.bincount(b.batch, minlength=b.num_graphs).cumsum(0).tolist()
    edge_end = torch.bincount(edge_graph, minlength=b.num_graphs).cumsum(0).tolist()
    out, n0, e0 = [], 0, 0
    for g in range(b.num_graphs):
        last = g == b.num_graphs - 1
        if last or edge_end[g + 1] - e0 > max_edges:
            out.append((slice(n0, node_end[g]), slice(e0, edge_end[g])))
            n0, e0 = node_end[g], edge_end[g]
    return out
