"""Message passing on edges grouped into runs per node, with and without autograd.

Sum and max over each node's edges become a few dense ``(nodes, k, d)`` reductions instead
of scatters, and so do the backward passes of the gathers: the gradient of ``x[index]`` is
a sum over the runs of `index`. A batch is processed in chunks of whole graphs, about
`CHUNK_EDGES` edges each, and a chunk's per-edge work in blocks of runs, about
`BLOCK_EDGES` edges each, so that intermediates stay in cache; chunks wired alike (graphs
of one architecture) share their structures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import Function, once_differentiable

from zoolens.graph import GraphBatch

CHUNK_EDGES = 1 << 14  # message passing runs on graphs of about this many edges at once
BLOCK_EDGES = 1 << 13  # and on blocks of about this many edges of a chunk, where it can


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
        node_order: ``(N,)`` the nodes in that order, the inverse permutation of `rank`.
        n_empty: how many nodes have no edges (they reduce to 0, as `scatter` does).
        groups: ``(first edge, nodes, k)`` for each run length ``k > 0``.
    """

    rank: torch.Tensor
    node_order: torch.Tensor
    n_empty: int
    groups: list[tuple[int, int, int]]

    def blocks(self) -> Iterator[tuple[slice, slice, int]]:
        """Blocks of whole runs of one length `k`, about `BLOCK_EDGES` edges each (at least
        one run): their nodes (rows in run order), their edges, and `k`."""
        row = self.n_empty
        for start, n, k in self.groups:
            step = max(1, BLOCK_EDGES // k)
            for i in range(0, n, step):
                j = min(i + step, n)
                yield slice(row + i, row + j), slice(start + i * k, start + j * k), k
            row += n

    def largest_block(self) -> int:
        """Edges in the largest of `blocks`."""
        return max((e.stop - e.start for _, e, _ in self.blocks()), default=0)

    def sum(self, m: torch.Tensor, perm: torch.Tensor | None = None) -> torch.Tensor:
        """Sum per node of the rows of `m` ``(E, d)`` (of ``m[perm]`` if `perm` is given,
        gathered a block at a time), which are in run order; ``(N, d)``."""
        parts = []
        for _, edges, k in self.blocks():
            block = m[edges] if perm is None else m.index_select(0, perm[edges])
            parts.append(block.view(-1, k, m.shape[1]).sum(1))
        return self.per_node(parts, m)

    def per_node(self, parts: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """Results of `blocks` ``(n, d)`` each → ``(N, d)`` in node order, 0 for nodes
        without edges."""
        empty = like.new_zeros((self.n_empty, like.shape[1]))
        return torch.cat([empty, *parts]).index_select(0, self.rank)


def _runs(index: torch.Tensor, n: int) -> tuple[torch.Tensor, _Runs]:
    """The edge order (a permutation of ``range(E)``) that groups edges by `index` into
    `_Runs`, and those runs."""
    deg = torch.bincount(index, minlength=n)  # (N,)
    node_order = torch.argsort(deg, stable=True)
    rank = _inverse(node_order)
    order = torch.argsort(rank[index], stable=True)  # (E,)
    ks, counts = torch.unique_consecutive(deg[node_order], return_counts=True)
    groups, start, n_empty = [], 0, 0
    for k, c in zip(ks.tolist(), counts.tolist(), strict=True):
        if k == 0:
            n_empty = c
        else:
            groups.append((start, c, k))
            start += c * k
    return order, _Runs(rank, node_order, n_empty, groups)


def _inverse(perm: torch.Tensor) -> torch.Tensor:
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel())
    return inverse


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
    inverse_b: torch.Tensor  # (E_c,) the inverse permutation of `order_b`
    dst_b: torch.Tensor  # dst[order_b]
    bwd: _Runs
    degree: tuple[torch.Tensor, torch.Tensor]  # out, in: (N_c, 1) each, at least 1

    def messages(
        self, x: torch.Tensor, e: torch.Tensor, w: torch.Tensor, reverse: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum and max over each node's incoming edges (outgoing if `reverse`) of the
        messages ``silu(x[other end] + e @ w.T)``, ``(N_c, d)`` each.

        Args:
            x: ``(N_c, d)`` node part; e: ``(E_c, de)`` edge states in fwd order;
            w: ``(d, de)``.
        """
        grad = torch.is_grad_enabled()
        out: tuple[torch.Tensor, torch.Tensor] = _Messages.apply(  # type: ignore[no-untyped-call]
            x, e, w, self, reverse, grad
        )
        return out

    def edge_inputs(
        self, xs: torch.Tensor, xd: torch.Tensor, e: torch.Tensor, w: torch.Tensor
    ) -> torch.Tensor:
        """``xs[src] + xd[dst] + e @ w.T`` per edge, ``(E_c, de)`` in fwd order.

        Args:
            xs, xd: ``(N_c, de)`` source and target parts; e: ``(E_c, de')``; w: ``(de, de')``.
        """
        out: torch.Tensor = _EdgeInputs.apply(xs, xd, e, w, self)  # type: ignore[no-untyped-call]
        return out


class _Messages(Function):
    """`Chunk.messages`, a block of runs at a time so the per-edge intermediates stay in
    cache. With `grad`, the pre-activations and the maxes are kept for the backward pass,
    which recomputes the activations and sums gathered rows back over runs (no scatter)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        e: torch.Tensor,
        w: torch.Tensor,
        c: Chunk,
        reverse: bool,
        grad: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        runs, at = (c.bwd, c.dst_b) if reverse else (c.fwd, c.src)
        d, largest = x.shape[1], runs.largest_block()
        p = x.new_empty((at.numel() if grad else largest, d))  # pre-activations
        m = x.new_empty((largest if grad else 0, d))  # activations of a block
        totals, tops = [], []
        for _, edges, k in runs.blocks():
            n_e = edges.stop - edges.start
            pe = p[edges] if grad else p[:n_e]
            torch.index_select(x, 0, at[edges], out=pe)
            pe.addmm_(e.index_select(0, c.order_b[edges]) if reverse else e[edges], w.t())
            me = torch.ops.aten.silu.out(pe, out=m[:n_e]) if grad else F.silu(pe, inplace=True)
            me = me.view(-1, k, d)  # (n, k, d)
            totals.append(me.sum(1))
            tops.append(me.amax(1))
        total, top = runs.per_node(totals, x), runs.per_node(tops, x)
        if grad:
            ctx.c, ctx.reverse = c, reverse
            ctx.save_for_backward(p, e, w, top)
        return total, top

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_sum: torch.Tensor, g_max: torch.Tensor) -> tuple[Any, ...]:
        p, e, w, top = ctx.saved_tensors
        c: Chunk = ctx.c
        g_p = torch.empty_like(p)
        if ctx.reverse:  # fwd order groups the edges by the gathered end, the target
            _silu_reduce_backward(c.bwd, p, top, g_sum, g_max, g_p)
            g_x, g_e, g_w = _fwd_backward(c, g_p, c.inverse_b, e, w)
        else:  # fwd order is that of `e`
            g_e, g_w = torch.empty_like(e), torch.zeros_like(w)

            def project(edges: slice) -> None:  # while the block is in cache
                _linear_backward(g_p[edges], e, w, edges, g_e, g_w)

            _silu_reduce_backward(c.fwd, p, top, g_sum, g_max, g_p, project)
            g_x = c.bwd.sum(g_p, c.order_b)
        return g_x, g_e, g_w, None, None, None


def _silu_reduce_backward(
    runs: _Runs,
    p: torch.Tensor,
    top: torch.Tensor,
    g_sum: torch.Tensor,
    g_max: torch.Tensor,
    g_p: torch.Tensor,
    then: Callable[[slice], None] | None = None,
) -> None:
    """Write into `g_p` the gradient w.r.t. `p` ``(E, d)`` of the sum and max per node of
    ``silu(p)``, given that max `top` and the gradients of sum and max, ``(N, d)`` each,
    a block at a time, and call `then` with each block's edges once written (still in
    cache). Ties of a max share its gradient equally, as in ``amax`` and ``scatter_reduce``."""
    d = p.shape[1]
    g_sum, g_max, top = (t.index_select(0, runs.node_order) for t in (g_sum, g_max, top))
    m = p.new_empty((runs.largest_block(), d))
    for rows, edges, k in runs.blocks():
        me = torch.ops.aten.silu.out(p[edges], out=m[: edges.stop - edges.start])
        is_top = torch.eq(me.view(-1, k, d), top[rows, None], out=me.view(-1, k, d))
        share = g_max[rows] / is_top.sum(1)  # (n, d) each tie's share
        g_m = torch.addcmul(g_sum[rows, None], is_top, share[:, None], out=is_top)
        torch.ops.aten.silu_backward.grad_input(g_m.view(-1, d), p[edges], grad_input=g_p[edges])
        if then is not None:
            then(edges)


def _fwd_backward(
    c: Chunk, g: torch.Tensor, perm: torch.Tensor | None, e: torch.Tensor, w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``x[dst] + e @ w.T`` (in fwd order) w.r.t. `x`, `e` and `w`, given
    its gradient `g` (``g[perm]`` if `perm` is given), a block of runs at a time."""
    g_e, g_w, parts = torch.empty_like(e), torch.zeros_like(w), []
    for _, edges, k in c.fwd.blocks():
        ge = g[edges] if perm is None else g.index_select(0, perm[edges])
        parts.append(ge.view(-1, k, ge.shape[1]).sum(1))
        _linear_backward(ge, e, w, edges, g_e, g_w)
    return c.fwd.per_node(parts, g), g_e, g_w


def _linear_backward(
    g: torch.Tensor,
    e: torch.Tensor,
    w: torch.Tensor,
    edges: slice,
    g_e: torch.Tensor,
    g_w: torch.Tensor,
) -> None:
    """Gradients of ``e[edges] @ w.T`` given its gradient `g`: written into rows `edges`
    of `g_e`, added to `g_w`."""
    torch.mm(g, w, out=g_e[edges])
    g_w.addmm_(g.t(), e[edges])


class _EdgeInputs(Function):
    """`Chunk.edge_inputs`, a block of runs at a time; `xd` is added run by run (edges are
    grouped by target), and the backward pass sums over runs instead of scattering."""

    @staticmethod
    def forward(
        ctx: Any, xs: torch.Tensor, xd: torch.Tensor, e: torch.Tensor, w: torch.Tensor, c: Chunk
    ) -> torch.Tensor:
        u = xs.new_empty((e.shape[0], xs.shape[1]))  # (E_c, de)
        xd = xd.index_select(0, c.fwd.node_order)  # in run order
        for rows, edges, k in c.fwd.blocks():
            ue = torch.index_select(xs, 0, c.src[edges], out=u[edges]).addmm_(e[edges], w.t())
            ue.view(-1, k, ue.shape[1]).add_(xd[rows, None])
        ctx.c = c
        ctx.save_for_backward(e, w)
        return u

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        e, w = ctx.saved_tensors
        c: Chunk = ctx.c
        g_xd, g_e, g_w = _fwd_backward(c, g, None, e, w)
        return c.bwd.sum(g, c.order_b), g_xd, g_e, g_w, None


def _chunk(edge_index: torch.Tensor, n: int, dtype: torch.dtype) -> Chunk:
    """`Chunk` of a graph with `n` nodes and edges `edge_index` ``(2, E_c)``."""
    order, fwd = _runs(edge_index[1], n)
    src, dst = edge_index[:, order]
    order_b, bwd = _runs(src, n)
    degree = degrees(edge_index, n, dtype)
    return Chunk(n, order, src, dst, fwd, order_b, _inverse(order_b), dst[order_b], bwd, degree)


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
