"""Coarsening of the neural graph of a large net: wide dense connections keep their strongest
edges, so the graph (and the encoder's work) grows with the units, not with their products.

A dense connection between ``n_in`` and ``n_out`` units is ``n_in · n_out`` edges. In the
graph of a net of more than `COARSEN_PARAMS` parameters (every zoo-sized net stays below,
so its graph is unchanged), a connection of more than ``2 · KEEP · (n_in + n_out)`` edges
keeps only the edges that are among the `KEEP` strongest of their target's incoming ones
*or* of their source's outgoing ones (an edge tied with the `KEEP`-th is kept too): about
``KEEP · (n_in + n_out)``. Whether an edge is kept depends only on its own weight and on the
multisets of weights at its two ends, so permuting the units of either layer permutes the
kept edges with them, ties included: the coarse graph commutes with every exact permutation
(canonical scaling is applied before), and the encoder stays exactly invariant.
"""

from __future__ import annotations

import torch

#: Nets with more parameters than this get a coarse graph.
COARSEN_PARAMS = 1_000_000
#: Strongest edges kept per unit at each end of a coarsened connection.
KEEP = 16


def strongest_pairs(strength: torch.Tensor, keep: int = KEEP) -> torch.Tensor:
    """The edges of a dense connection to keep: ``(n_out, n_in)`` bool, True where an
    edge is at least as strong as the `keep`-th strongest into its target (row) or out of
    its source (column); a threshold, not an index choice, so ties never depend on order.

    Args:
        strength: ``(n_out, n_in)`` each edge's strength (a norm of its weights), ≥ 0.
        keep: edges kept per unit at each end.

    Returns:
        The mask, ``(n_out, n_in)`` bool.
    """
    n_out, n_in = strength.shape
    row_kth = strength.topk(min(keep, n_in), dim=1).values[:, -1:]  # (n_out, 1)
    col_kth = strength.topk(min(keep, n_out), dim=0).values[-1:]  # (1, n_in)
    return (strength >= row_kth) | (strength >= col_kth)


def coarse_edges(
    src: torch.Tensor, dst: torch.Tensor, attr: torch.Tensor, keep: int = KEEP
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kept edges of the all-pairs connection ``src → dst`` whose edge attributes
    `attr` are target-major (row ``j * n_in + i`` is ``src[i] → dst[j]``).

    Args:
        src: ``(n_in,)`` source node ids.
        dst: ``(n_out,)`` target node ids.
        attr: ``(n_out * n_in, m)`` edge attributes.
        keep: edges kept per unit at each end (`strongest_pairs`).

    Returns:
        Sources ``(E',)``, targets ``(E',)`` and attributes ``(E', m)`` of the kept edges,
        target-major.
    """
    n_in, n_out = src.numel(), dst.numel()
    strength = torch.linalg.vector_norm(attr, dim=1).reshape(n_out, n_in)  # attr's dtype
    j, i = torch.nonzero(strongest_pairs(strength, keep), as_tuple=True)
    return src[i], dst[j], attr[j * n_in + i]


def worth_coarsening(n_in: int, n_out: int, keep: int = KEEP) -> bool:
    """Whether a connection of ``n_in · n_out`` edges is large enough to coarsen (it would
    shrink at least twofold)."""
    return n_in * n_out > 2 * keep * (n_in + n_out)
