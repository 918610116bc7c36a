"""Fix each unit's scale/sign freedom, and move a net into another net's gauge.

`to_canonical` is `zoolens.symmetry.canonical.canonical_form`: canonicalize and the scale applied
to every segment; `from_canonical` applies the inverse of such scales. Scalings of
different segments are diagonal and commute, so the order of the inverses does not matter.
"""

from __future__ import annotations

import torch

from zoolens.ir import Net
from zoolens.symmetry import apply_scale, scale_segments
from zoolens.symmetry.canonical import canonical_form

#: segment root → per-unit scale applied to it
Scales = dict[str, torch.Tensor]


def to_canonical(net: Net) -> tuple[Net, Scales]:
    """A copy of `net` in canonical gauge (same function) and the scales that took it there."""
    return canonical_form(net)


def from_canonical(net: Net, scales: Scales) -> Net:
    """A copy of `net` with the inverse of `scales` applied (same function)."""
    out = net.clone()
    for seg in scale_segments(out):
        s = scales.get(seg.space.root)
        if s is not None:
            apply_scale(out, seg, 1.0 / s)
    return out
