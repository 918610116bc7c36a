"""`merge`: one net from two of one architecture — aligned or naive interpolation, task
arithmetic and TIES for fine-tunes of one parent — with BatchNorm statistics recomputed.

LayerNorm keeps no running statistics (it normalises each sample), so an interpolated
LayerNorm net needs no reset; the full REPAIR correction of every hidden unit's
statistics (`zoolens.merge.repair`), for nets with or without norms, is an option.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from zoolens.errors import ZoolensError
from zoolens.ir import Net
from zoolens.merge.activations import as_inputs
from zoolens.merge.align import AlignMethod, align
from zoolens.merge.compat import check_same_architecture, with_names_of
from zoolens.merge.repair import repair as repair_units

MergeMethod = Literal["aligned", "naive", "task-arithmetic", "ties"]
METHODS: tuple[str, ...] = ("aligned", "naive", "task-arithmetic", "ties")
#: tensors that hold data statistics, not learned weights: interpolated, never task-merged
STATS = frozenset({"running_mean", "running_var"})


def _combine(
    nets: list[Net], fn: Callable[[str, list[torch.Tensor]], torch.Tensor], like: Net
) -> Net:
    """A copy of `like` whose every tensor is ``fn(role, [that tensor of each net])``."""
    out = like.clone()
    for i, op in enumerate(out.ops):
        op.params = {r: fn(r, [n.ops[i].params[r] for n in nets]) for r in op.params}
    return out


def interpolate(a: Net, b: Net, alpha: float = 0.5) -> Net:
    """``(1 - alpha) * a + alpha * b``, tensor by tensor (names and meta of `a`)."""
    check_same_architecture(a, b)
    return _combine([a, b], lambda r, ts: (1 - alpha) * ts[0] + alpha * ts[1], a)


def reset_batchnorm(net: Net, x: torch.Tensor) -> Net:
    """A copy of `net` whose BatchNorm running mean and variance are those of its inputs
    on `x` (each BN after the ones before it are reset): REPAIR's reset, for BN nets."""
    out = net.clone()
    env = {out.input: x}
    with torch.no_grad():
        for op in out.ops:
            xs = [env[name] for name in op.inputs]
            if op.kind == "batchnorm":
                dims = [0, *range(2, xs[0].dim())]
                op.params["running_mean"] = xs[0].mean(dim=dims).to(op.params["running_mean"])
                op.params["running_var"] = xs[0].var(dim=dims).to(op.params["running_var"])
            env[op.output] = op.run(xs)
    return out


def has_batchnorm(net: Net) -> bool:
    return any(op.kind == "batchnorm" for op in net.ops)


def _task_vectors(base: Net, nets: list[Net]) -> list[Net]:
    return [_combine([n, base], lambda r, ts: ts[0] - ts[1], base) for n in nets]


def _ties_tensor(taus: list[torch.Tensor], thresholds: list[float]) -> torch.Tensor:
    """Trim each task vector below its threshold, elect a sign, mean of the agreeing ones."""
    trimmed = torch.stack([t * (t.abs() >= th) for t, th in zip(taus, thresholds, strict=True)])
    sign = torch.sign(trimmed.sum(dim=0))
    agree = (torch.sign(trimmed) == sign) & (trimmed != 0)
    count = agree.sum(dim=0).clamp_min(1)
    return (trimmed * agree).sum(dim=0) / count


def _threshold(tau: Net, density: float) -> float:
    """Magnitude above which the top `density` fraction of `tau`'s weights lie."""
    flat = torch.cat(
        [t.abs().reshape(-1) for op in tau.ops for r, t in op.params.items() if r not in STATS]
    ).to(torch.float64)
    k = max(1, round((1 - density) * flat.numel()))
    return float(flat.kthvalue(min(k, flat.numel())).values) if density < 1 else 0.0


def merge(
    a: Net,
    b: Net,
    alpha: float = 0.5,
    method: MergeMethod = "aligned",
    base: Net | None = None,
    data: torch.Tensor | np.ndarray | None = None,
    lam: float = 1.0,
    density: float = 0.2,
    align_method: AlignMethod = "weights",
    renormalize: bool = True,
    repair: bool = False,
) -> Net:
    """Merge nets `a` and `b` of one architecture.

    Args:
        a, b: the nets.
        alpha: weight of `b` in ``"aligned"``/``"naive"`` (and in interpolated statistics).
        method: ``"aligned"``: align `b` to `a` (`align`), then interpolate; ``"naive"``:
            interpolate as they are; ``"task-arithmetic"``: ``base + lam * (τa + τb)``
            with ``τ = net - base``; ``"ties"``: TIES-merging of τa, τb (keep the top
            `density` fraction of each by magnitude, elect each weight's sign by the summed
            trimmed values, average the agreeing ones), scaled by `lam`, added to `base`.
        base: the common parent of `a` and `b`, for ``"task-arithmetic"`` and ``"ties"``.
        data: inputs for BatchNorm statistics (and activation matching); probe inputs
            (uniform in [-1, 1]^d) when None — give real data for BatchNorm nets.
        lam: task-vector scale.
        density: fraction of each task vector TIES keeps.
        align_method: ``"weights"`` or ``"activations"`` for ``"aligned"``.
        renormalize: recompute BatchNorm running statistics on `data` after merging.
        repair: for ``"aligned"``/``"naive"``, also give every hidden unit the statistics
            interpolated from A and B on `data` (REPAIR, `zoolens.merge.repair`).

    Returns:
        The merged net (names and meta of `a`).
    """
    check_same_architecture(a, b, ("A", "B"))
    b = with_names_of(b, a)
    task = method in ("task-arithmetic", "ties")
    if task and base is None:
        raise ZoolensError(f"merge method {method!r} needs the common parent of A and B: --base")
    if not task and base is not None:
        raise ZoolensError(f"merge method {method!r} takes no --base (task-arithmetic, ties do)")
    if method in ("aligned", "naive"):
        if method == "aligned":
            b = align(a, b, method=align_method, data=data)
        out = interpolate(a, b, alpha)
        if repair:
            out = repair_units(out, a, b, alpha, as_inputs(out, data))
    elif task:
        assert base is not None
        check_same_architecture(a, base, ("A", "BASE"))
        out = _merge_tasks(a, b, with_names_of(base, a), alpha, method, lam, density)
    else:
        raise ZoolensError(f"merge method {method!r}: expected one of {', '.join(METHODS)}")
    if renormalize and has_batchnorm(out):
        out = reset_batchnorm(out, as_inputs(out, data))
    return out


def _merge_tasks(
    a: Net, b: Net, base: Net, alpha: float, method: str, lam: float, density: float
) -> Net:
    taus = _task_vectors(base, [a, b])
    th = [_threshold(t, density) for t in taus] if method == "ties" else [0.0, 0.0]

    def fn(role: str, ts: list[torch.Tensor]) -> torch.Tensor:
        tb, ta, tbb = ts
        if role in STATS:
            return (1 - alpha) * ta + alpha * tbb
        t1, t2 = ta - tb, tbb - tb
        delta = _ties_tensor([t1, t2], th) if method == "ties" else t1 + t2
        return tb + lam * delta

    return _combine([base, a, b], fn, base)
