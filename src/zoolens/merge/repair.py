"""REPAIR (Jordan et al., 2023): give each hidden unit of an interpolated net the
activation statistics interpolated from its endpoints.

Each dense op's output units (pre-activation) get the per-unit mean and standard deviation
``(1 - alpha) * stat_a + alpha * stat_b`` measured on inputs; the affine correction is
folded into that op's weight rows and bias, so the net keeps its architecture. Ops are
corrected in order, each on the statistics left by the corrections before it. The net's
output op is not corrected; neither is a dense op read by a BatchNorm
(`reset_batchnorm` renormalises those).
"""

from __future__ import annotations

import torch

from zoolens.ir import DENSE_KINDS, Net
from zoolens.merge.activations import activations


def _stats(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-unit mean and standard deviation of a value ``(B, n, *spatial)``."""
    dims = [0, *range(2, v.dim())]
    return v.mean(dim=dims), v.std(dim=dims)


def repair(net: Net, a: Net, b: Net, alpha: float, x: torch.Tensor) -> Net:
    """A copy of `net` (the interpolation of `a` and `b` at `alpha`, all three with the
    same names, `b` aligned to `a`) with REPAIR's per-unit correction on inputs `x`."""
    ea, eb = activations(a, x), activations(b, x)
    out = net.clone()
    bn_inputs = {v for op in out.ops if op.kind == "batchnorm" for v in op.inputs}
    env = {out.input: x}
    with torch.no_grad():
        for op in out.ops:
            xs = [env[name] for name in op.inputs]
            y = op.run(xs)
            fix = op.kind in DENSE_KINDS and op.output != out.output
            if fix and op.output not in bn_inputs:
                (ma, sa), (mb, sb) = _stats(ea[op.output]), _stats(eb[op.output])
                mean, std = _stats(y)
                s = ((1 - alpha) * sa + alpha * sb) / std.clamp_min(1e-12)  # (n,)
                t = (1 - alpha) * ma + alpha * mb - s * mean
                w = op.params["weight"]
                op.params["weight"] = w * s.to(w.dtype).reshape(-1, *[1] * (w.dim() - 1))
                if "bias" in op.params:
                    op.params["bias"] = op.params["bias"] * s + t
                y = op.run(xs)
            env[op.output] = y
    return out
