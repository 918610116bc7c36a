"""Values of the torch.export importer that are not yet an IR value, and how they become one.

A traced program spells one IR op as several ATen calls: GPT-2's tanh-GELU is eight
elementwise ops, RMSNorm is ``x * rsqrt(mean(x²) + eps)``, rotary embedding is
``x * cos + cat(-x₂, x₁) * sin`` (partial rotary: on the first head dims, concatenated with
the rest). The importer carries such partial results as *pending*
values: an `Expr` is an elementwise function of one IR value (identified, when something else
reads it, by evaluating it on sample points against the IR's activations), the others are the
named steps of RMSNorm and rotary embedding. A pending value read by anything outside its
pattern is refused with the op that read it.

Private to `zoolens.ir.export_import`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from zoolens.errors import UnsupportedOpError
from zoolens.ir._export_layout import Dyn

Fn = Callable[[torch.Tensor], torch.Tensor]
_SAMPLES = torch.linspace(-8.0, 8.0, 4001, dtype=torch.float64)


@dataclass
class Expr:
    """``fn(src)`` applied elementwise to the numbers of `src`."""

    src: Dyn
    fn: Fn


@dataclass
class Half:
    """Head dims ``[lo, hi)`` of `src` (its last axis), negated if `neg`: a half of the
    head (rotate_half), or the rotated and passed parts of partial rotary embedding."""

    src: Dyn
    lo: int
    hi: int
    neg: bool = False


@dataclass
class Rotated:
    """``rotate_half`` of head dims ``[lo, hi)`` of `src` (``cat(-x₂, x₁)``), times
    ``table`` ``(hi - lo, T)`` once multiplied by sin."""

    src: Dyn
    table: torch.Tensor | None = None
    lo: int = 0
    hi: int | None = None  # None: the whole head


@dataclass
class Cosined:
    """Head dims ``[lo, hi)`` of `src` times `table` ``(hi - lo, T)`` varying over positions
    and head dims (rotary cos)."""

    src: Dyn
    table: torch.Tensor
    lo: int = 0
    hi: int | None = None


@dataclass
class Roped:
    """Rotary embedding of the first `dims` head dims of `src` (tables ``(dims, T)``),
    awaiting the concatenation with the dims it passes unrotated (partial rotary)."""

    src: Dyn
    dims: int
    cos: torch.Tensor
    sin: torch.Tensor


@dataclass
class MeanSquare:
    """``mean(src², units) [+ eps]``, or its ``rsqrt`` when `inverse`."""

    src: Dyn
    eps: float = 0.0
    inverse: bool = False


@dataclass
class Scores:
    """Attention scores ``q kᵀ · scale + bias``, entries outside `allowed` masked; `bias`,
    `allowed`: ``(H or 1, T, T)`` constants (None: zero bias, every entry allowed)."""

    q: Dyn
    k: Dyn
    scale: float = 1.0
    bias: torch.Tensor | None = None
    allowed: torch.Tensor | None = None


@dataclass
class Probs:
    """``softmax(scores)`` over the keys (`zoolens.ir._export_attention`)."""

    scores: Scores


Pending = Expr | Half | Rotated | Cosined | Roped | MeanSquare | Scores | Probs
PENDING = (Expr, Half, Rotated, Cosined, Roped, MeanSquare, Scores, Probs)


def activation(fn: Fn) -> tuple[str, dict[str, object]] | None:
    """The IR activation (name, attrs) that `fn` computes, ``("identity", {})`` for none,
    ``("scale", {"factor": c})`` for a constant factor, or None if it is none of them."""
    with torch.no_grad():
        y = fn(_SAMPLES.clone())
    if not isinstance(y, torch.Tensor) or y.shape != _SAMPLES.shape:
        return None
    y = y.to(torch.float64)
    x = _SAMPLES

    def close(ref: torch.Tensor) -> bool:
        return bool(torch.allclose(y, ref, rtol=1e-5, atol=1e-6))

    candidates: list[tuple[str, dict[str, object], torch.Tensor]] = [
        ("identity", {}, x),
        ("relu", {}, torch.relu(x)),
        ("gelu", {"approximate": "none"}, F.gelu(x)),
        ("gelu", {"approximate": "tanh"}, F.gelu(x, approximate="tanh")),
        ("silu", {}, F.silu(x)),
        ("tanh", {}, torch.tanh(x)),
        ("sigmoid", {}, torch.sigmoid(x)),
        ("sin", {}, torch.sin(x)),
        ("relu6", {}, F.relu6(x)),
        ("hardswish", {}, F.hardswish(x)),
        ("hardsigmoid", {}, F.hardsigmoid(x)),
    ]
    for name, attrs, ref in candidates:
        if close(ref):
            return name, attrs
    c = float(y[-1] / x[-1])
    if math.isfinite(c) and close(c * x):
        return "scale", {"factor": c}
    pos = y[x > 0] / x[x > 0]
    neg = y[x < 0] / x[x < 0]
    if close(torch.where(x > 0, x, x * float(neg[0]))) and bool(torch.allclose(pos, 1 + 0 * pos)):
        return "leaky_relu", {"negative_slope": float(neg[0])}
    return None


def is_square(fn: Fn) -> bool:
    with torch.no_grad():
        y = fn(_SAMPLES.clone())
    return isinstance(y, torch.Tensor) and bool(torch.allclose(y.double(), _SAMPLES**2))


def rope_attrs(cos: torch.Tensor, sin: torch.Tensor) -> dict[str, object]:
    """Rotary settings from the tables a traced model multiplied by: ``(d, T)`` each.

    Returns ``{"inv_freq": [...], "scaling": s}`` with ``cos[j, t] = s·cos(t·f_j)`` and
    ``sin[j, t] = s·sin(t·f_j)`` for both halves of the head dims (rotate_half layout).
    """
    d, t = cos.shape
    if t < 2 or d % 2:
        raise UnsupportedOpError("rotary embedding needs ≥ 2 positions and an even head dim")
    half = d // 2
    cos, sin = cos.double(), sin.double()
    scaling = float(cos[0, 0])
    freq = torch.atan2(sin[:half, 1], cos[:half, 1])
    pos = torch.arange(t, dtype=torch.float64)
    angle = torch.cat([freq, freq])[:, None] * pos[None, :]
    ok = torch.allclose(cos, scaling * torch.cos(angle), atol=1e-5) and torch.allclose(
        sin, scaling * torch.sin(angle), atol=1e-5
    )
    if not ok:
        raise UnsupportedOpError("rotary tables are not cos/sin of position × frequency")
    return {"inv_freq": [float(f) for f in freq], "scaling": scaling}
