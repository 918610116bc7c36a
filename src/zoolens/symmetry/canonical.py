"""`canonicalize`: one representative per scale/sign orbit, computing the same function."""

from __future__ import annotations

import torch

from zoolens.ir import Net, ValueInfo
from zoolens.symmetry import _rnn
from zoolens.symmetry.actions import Segment, apply_scale, scale_segments
from zoolens.symmetry.spaces import op_order, producers


def incoming_rows(net: Net, seg: Segment) -> torch.Tensor:
    """Each unit's incoming weights and bias over all of its writers, ``(n_units, m)``."""
    cols = []
    for op in producers(net, seg.space):
        if op.kind in ("lstm", "gru"):
            cols.append(_rnn.incoming_rows(op))
            continue
        for role in ("weight", "bias"):
            if role in op.params:
                cols.append(op.params[role].reshape(seg.space.size, -1))
    return torch.cat(cols, dim=1)


def canonical_scale(rows: torch.Tensor, group: str) -> torch.Tensor:
    """Scale that maps each row to unit norm (scale groups) and a positive sign statistic."""
    rows = rows.to(torch.float64)
    s = torch.ones(rows.shape[0], dtype=torch.float64)
    if group in ("positive", "nonzero"):
        norm = rows.norm(dim=1)
        s = torch.where(norm > 0, 1.0 / norm.clamp_min(1e-300), s)
    if group in ("sign", "nonzero"):
        stat = rows.sum(dim=1)
        tie = stat.abs() <= 1e-9 * rows.abs().sum(dim=1).clamp_min(1e-300)
        stat = torch.where(tie, rows.pow(3).sum(dim=1), stat)
        s = s * torch.where(stat < 0, -1.0, 1.0)
    return s


def canonicalize(net: Net, infos: dict[str, ValueInfo] | None = None) -> Net:
    """A copy of `net` with the scale and sign freedom of every unit removed.

    Segments are fixed in topological order: each unit's incoming weights (and bias)
    are scaled to unit norm where positive scaling is exact, and signed so their sum is
    positive where a sign flip is exact; the inverse goes to the units' readers. Hence
    ``canonicalize(action(net))`` equals ``canonicalize(net)`` up to a permutation and
    float error, for any exact action, and the function is unchanged.

    Args:
        net: the network.
        infos: `net.value_infos()`, when the caller already holds them.
    """
    return canonical_form(net, infos)[0]


def canonical_form(
    net: Net, infos: dict[str, ValueInfo] | None = None
) -> tuple[Net, dict[str, torch.Tensor]]:
    """`canonicalize`, and the per-unit scale it applied to each segment (space root →
    scales), so that a caller can undo it (`zoolens.merge` moves nets between gauges)."""
    out = net.clone()
    order = op_order(out)
    segs = [s for s in scale_segments(out, infos) if s.group is not None]
    segs.sort(key=lambda s: min(order[op.name] for op in producers(out, s.space)))
    scales: dict[str, torch.Tensor] = {}
    for seg in segs:
        assert seg.group is not None
        scales[seg.space.root] = canonical_scale(incoming_rows(out, seg), seg.group)
        apply_scale(out, seg, scales[seg.space.root])
    return out, scales
