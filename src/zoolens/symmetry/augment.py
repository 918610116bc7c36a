"""Inexact augmentations: they change the function (a little), unlike the exact actions.

Used as contrastive views. Each returns a new net and leaves its input untouched.
"""

from __future__ import annotations

import torch

from zoolens.ir import DENSE_KINDS, Net
from zoolens.symmetry.spaces import PERM_LINKS, build_spaces, free_spaces, readers


def drop_connect(net: Net, p: float, generator: torch.Generator) -> Net:
    """Zero each weight of every dense op independently with probability `p`.

    Changes the function by removing connections; no rescaling by 1/(1-p) is done, so
    the expected pre-activation shrinks by (1 - p).
    """
    out = net.clone()
    for op in out.ops:
        if op.kind in DENSE_KINDS:
            w = op.params["weight"]
            keep = torch.rand(w.shape, generator=generator) >= p
            op.params["weight"] = w * keep.to(w.dtype)
    return out


def weight_noise(net: Net, sigma: float, generator: torch.Generator) -> Net:
    """Add zero-mean Gaussian noise of std ``sigma * std(tensor)`` to every weight and bias.

    BatchNorm running statistics are left alone (they are data statistics, not weights).
    """
    out = net.clone()
    for op in out.ops:
        for role, t in op.params.items():
            if role.startswith("running_") or t.numel() < 2:
                continue
            scale = sigma * float(t.std())
            noise = torch.randn(t.shape, generator=generator, dtype=torch.float64) * scale
            op.params[role] = t + noise.to(t.dtype)
    return out


def neuron_dropout(net: Net, p: float, generator: torch.Generator) -> Net:
    """Silence each hidden unit with probability `p` by zeroing its outgoing weights.

    Downstream layers then see the unit as always zero: removes that unit's contribution.
    """
    out = net.clone()
    spaces = build_spaces(out, PERM_LINKS)
    for sp in free_spaces(spaces):
        drop = torch.rand(sp.size, generator=generator) < p
        if not drop.any():
            continue
        for fam in [sp, *[s for s in spaces.values() if s.parent == sp.root]]:
            mask = (~drop).repeat_interleave(fam.block)
            for op in readers(out, fam):
                if op.kind in DENSE_KINDS:
                    w = op.params["weight"]
                    op.params["weight"] = w * mask.to(w.dtype).reshape(1, -1, *[1] * (w.dim() - 2))
    return out
