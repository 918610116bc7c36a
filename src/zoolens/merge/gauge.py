"""Fix each unit's scale/sign freedom, and move a net into another net's gauge.

`to_canonical` is `zoolens.symmetry.canonicalize` that also returns the scale it applied
to every segment; `from_canonical` applies the inverse of such scales. Scalings of
different segments are diagonal and commute, so the order of the inverses does not matter.
"""

from __future__ import annotations

import torch

from zoolens.ir import Net
from zoolens.symmetry import apply_scale, scale_segments
from zoolens.symmetry.canonical import canonical_scale, incoming_rows
from zoolens.symmetry.spaces import op_order, producers

#: segment root → per-unit scale applied to it
Scales = dict[str, torch.Tensor]


def to_canonical(net: Net) -> tuple[Net, Scales]:
    """A copy of `net` in canonical gauge (same function) and the scales that took it there."""
    out = net.clone()
    order = op_order(out)
    segs = [s for s in scale_segments(out) if s.group is not None]
    segs.sort(key=lambda s: min(order[op.name] for op in producers(out, s.space)))
    scales: Scales = {}
    for seg in segs:
        assert seg.group is not None
        s = canonical_scale(incoming_rows(out, seg), seg.group)
        apply_scale(out, seg, s)
        scales[seg.space.root] = s
    return out, scales


def from_canonical(net: Net, scales: Scales) -> Net:
    """A copy of `net` with the inverse of `scales` applied (same function)."""
    out = net.clone()
    for seg in scale_segments(out):
        s = scales.get(seg.space.root)
        if s is not None:
            apply_scale(out, seg, 1.0 / s)
    return out
