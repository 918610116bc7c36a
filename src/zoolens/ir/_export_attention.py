"""Attention in the torch.export importer: ``scaled_dot_product_attention`` calls, and
attention spelled out as ``softmax(q kᵀ · s + bias) v``.

Either becomes one ``sdpa`` op (`attention`): q, k, v laid out ``(batch, heads, positions,
dim)``, grouped-query heads, rotary embedding carried by q and k, a causal mask, or the key
padding mask computed from the net's ``attention_mask`` input (`zoolens.ir._export_mask`).

Models with a hand-written attention (MPT, eager paths) trace it as ``matmul(q, kᵀ)``, a
scale, an additive bias and a mask (``add`` / ``masked_fill`` of constants), ``softmax`` and
``matmul(·, v)``. The scores and probabilities are carried as pending values (`Scores`,
`Probs`) and the whole becomes one ``sdpa`` op. The bias must be ALiBi — per head h,
``slope_h · (j - i)`` up to a constant per query row, which softmax ignores — and is stored as
``attrs["alibi"]`` (the slopes); the mask must be causal or absent. Anything else is refused
naming the op.

Private to `zoolens.ir.export_import`; wraps the handlers of `_export_ops.HANDLERS`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from torch.fx import Node

from zoolens.errors import UnsupportedOpError
from zoolens.ir import _export_binary  # noqa: F401  (registers the handlers wrapped here)
from zoolens.ir import _export_layout as L
from zoolens.ir._export_context import Const, Context, Value, materialise
from zoolens.ir._export_layout import Atom, Dyn
from zoolens.ir._export_mask import MASK, MaskFn, key_mask
from zoolens.ir._export_ops import ELEMENTWISE, HANDLERS, Handler, _scalar, handles
from zoolens.ir._export_patterns import Probs, Scores, rope_attrs


@handles("scaled_dot_product_attention")
def _h_sdpa(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    q, k, v = (materialise(ctx, x, "attention") for x in args[:3])
    mask = args[3] if len(args) > 3 else kw.get("attn_mask")
    causal = bool(args[5] if len(args) > 5 else kw.get("is_causal", False))
    scale = kw.get("scale", args[6] if len(args) > 6 else None)
    return attention(ctx, node.name, (q, k, v), mask, causal, scale)


def attention(
    ctx: Context,
    name: str,
    qkv: tuple[Dyn, Dyn, Dyn],
    mask: Any,
    causal: bool,
    scale: float | None,
    extra: dict[str, Any] | None = None,
) -> Dyn:
    """Emit an ``sdpa`` op for q, k, v laid out ``(batch, heads, positions, dim)``; `mask`:
    a constant (full or causal) or a function of the attention mask input; `extra`: more
    attrs (ALiBi slopes)."""
    q, k, v = qkv
    heads = []
    for d in (q, k, v):
        if (
            len(d.axes) != 4
            or d.axes[0] != (ctx.batch,)
            or d.axes[2] != d.space
            or len(d.sdims) != 1
        ):
            raise UnsupportedOpError(
                "attention inputs not laid out as (batch, heads, positions, dim)"
            )
        h_u = tuple(a for a in d.axes[1] if a.kind == "U")
        if d.units != h_u + d.axes[3]:
            raise UnsupportedOpError("attention heads are not the outer factor of the units")
        heads.append(L.heads(d.axes[1]))
    (hq, _), (hk, rk), (hv, rv) = heads
    if hk != hv or (rk, rv) not in ((hq // hk, hq // hk), (1, 1)) or hq % hk:
        raise UnsupportedOpError(f"attention with {hq} query heads and {hk}/{hv} key/value heads")
    inputs: tuple[str, ...] = (q.value, k.value, v.value)
    attrs: dict[str, Any] = {"heads": hq, "kv_heads": hk, "causal": causal, "scale": scale}
    if isinstance(mask, MaskFn):  # computed from the net's attention_mask input
        attrs |= {"causal": causal or key_mask(mask, q.sdims[0]), "mask": "keys"}
        inputs += (MASK,)
    elif mask is not None:
        attrs["causal"] = causal or _mask_is_causal(mask, q.sdims[0])
    if (q.rope is None) != (k.rope is None):
        raise UnsupportedOpError("rotary embedding on queries or keys only")
    if q.rope is not None:
        attrs["rope"] = _rope(q, k)
    op = ctx.emit("sdpa", inputs, name, attrs=attrs | (extra or {}))
    hd = math.prod(a.size for a in v.axes[3])
    h = (Atom("U", hq),) if hq > 1 else ()
    dd = (Atom("U", hd),) if hd > 1 else ()
    return Dyn(op.output, ((ctx.batch,), h, q.space, dd), h + dd, q.space, q.sdims)


def _mask_is_causal(mask: Any, t: int) -> bool:
    if not isinstance(mask, Const):
        raise UnsupportedOpError("an attention mask that depends on the input")
    m = mask.value
    allowed = m if m.dtype == torch.bool else m > torch.finfo(m.dtype).min / 2
    allowed = allowed.expand(*allowed.shape[:-2], t, t).reshape(-1, t, t)
    if bool(allowed.all()):
        return False
    tril = torch.ones(t, t, dtype=torch.bool).tril()
    if bool((allowed == tril).all()):
        if m.dtype != torch.bool and bool((m.reshape(-1, t, t)[:, tril] != 0).any()):
            raise UnsupportedOpError("an additive attention mask with non-zero entries")
        return True
    raise UnsupportedOpError("an attention mask that is neither full nor causal")


def _rope(q: Dyn, k: Dyn) -> dict[str, Any]:
    tables = []
    for d in (q, k):
        cos, sin = d.rope  # type: ignore[misc]
        tables.append((cos, sin))
    (cq, sq), (ck, sk) = tables
    if not (torch.equal(cq, ck) and torch.equal(sq, sk)):  # type: ignore[arg-type]
        raise UnsupportedOpError("different rotary tables on queries and keys")
    found = rope_attrs(cq, sq)  # type: ignore[arg-type]
    if abs(float(found["scaling"]) - 1.0) > 1e-6:  # type: ignore[arg-type]
        raise UnsupportedOpError("rotary embedding with attention scaling")
    inv = torch.tensor(found["inv_freq"], dtype=torch.float64)
    dims = 2 * inv.numel()
    theta = float(inv[1] ** (-dims / 2)) if inv.numel() > 1 else 10000.0
    ref = 1.0 / theta ** (torch.arange(0, dims, 2, dtype=torch.float64) / dims)
    if not torch.allclose(ref, inv, rtol=1e-5):
        raise UnsupportedOpError("rotary frequencies other than theta^(-2i/d)")
    return {"theta": theta, "dims": dims, "style": "half"}


def _previous(name: str) -> Handler | None:
    return HANDLERS.get(name) or (HANDLERS["_elementwise"] if name in ELEMENTWISE else None)


def _wrap(name: str, fn: Any) -> None:
    before = _previous(name)

    def handler(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
        if any(isinstance(a, (Scores, Probs)) for a in (*args, *kw.values())):
            return fn(ctx, node, args, kw)
        if before is None:
            raise UnsupportedOpError(f"ATen op {name!r} on a value that depends on the input")
        return before(ctx, node, args, kw)

    HANDLERS[name] = handler


def _heads_first(c: torch.Tensor, t: int) -> torch.Tensor:
    """A constant broadcastable to ``(B, H, T, T)``, equal over the batch → ``(H or 1, T, T)``."""
    if c.dim() > 4:
        raise UnsupportedOpError(f"an attention bias of shape {list(c.shape)}")
    c = c.reshape(*[1] * (4 - c.dim()), *c.shape)
    if c.shape[-2:] not in ((t, t), (1, t)):
        raise UnsupportedOpError(f"an attention bias of shape {list(c.shape)} for {t} positions")
    if c.shape[0] > 1 and not bool((c == c[:1]).all()):
        raise UnsupportedOpError("an attention bias that varies over the batch")
    return c[0].expand(c.shape[1], t, t)


def _matmul(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    a, b = args[0], args[1]
    if isinstance(a, Probs) and not isinstance(b, (Const, Scores, Probs)):
        return _emit(ctx, node, a.scores, materialise(ctx, b, "attention"))
    raise UnsupportedOpError("a matrix product of attention scores other than with values")


def _matmul_qk(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    """``matmul(q, kᵀ)`` of two input-dependent values: attention scores."""
    a, b = args[0], args[1]
    if isinstance(a, Dyn) and isinstance(b, Dyn) and len(a.axes) == len(b.axes) == 4:
        k = b.with_axes((*b.axes[:2], b.axes[3], b.axes[2]))  # kᵀ back to (B, H, T, d)
        return Scores(a, k)
    return _before_matmul(ctx, node, args, kw)


def _scale(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    name = node.target.overloadpacket.__name__.rstrip("_")  # type: ignore[union-attr]
    s, c = (args[0], args[1]) if isinstance(args[0], Scores) else (args[1], args[0])
    f = _scalar(c)
    if not isinstance(s, Scores) or f is None or (name == "div" and s is not args[0]):
        raise UnsupportedOpError(f"ATen op {name!r} of attention scores by a non-scalar")
    f = 1.0 / f if name == "div" else f
    bias = None if s.bias is None else s.bias * f
    return replace(s, scale=s.scale * f, bias=bias)


def _add(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    s, c = (args[0], args[1]) if isinstance(args[0], Scores) else (args[1], args[0])
    if not isinstance(s, Scores) or not isinstance(c, Const) or kw.get("alpha", 1) != 1:
        raise UnsupportedOpError("ATen op 'add' of attention scores and a non-constant")
    t = s.q.shape[2]
    bias = _heads_first(c.value.to(torch.float64), t)
    masked = bias <= torch.finfo(c.value.dtype).min / 2  # an additive mask
    s = _masked(s, ~masked)
    bias = bias.masked_fill(masked, 0.0)
    return replace(s, bias=bias if s.bias is None else s.bias + bias)


def _masked(s: Scores, allowed: torch.Tensor) -> Scores:
    allowed = allowed if s.allowed is None else s.allowed & allowed
    return replace(s, allowed=allowed)


def _masked_fill(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    s, m, value = args[0], args[1], args[2] if len(args) > 2 else kw.get("value")
    if not isinstance(s, Scores) or not isinstance(m, Const):
        raise UnsupportedOpError("ATen op 'masked_fill' of attention scores by a non-constant")
    low = _scalar(value)
    if low is None or low > torch.finfo(torch.float32).min / 2:
        raise UnsupportedOpError("attention scores filled with a value other than -inf")
    return _masked(s, ~_heads_first(m.value.bool(), s.q.shape[2]))


def _softmax(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    s, dim = args[0], int(args[1]) if len(args) > 1 else int(kw.get("dim", -1))
    if not isinstance(s, Scores) or dim % 4 != 3:
        raise UnsupportedOpError("softmax of attention scores over other than the keys")
    return Probs(s)


def _emit(ctx: Context, node: Node, s: Scores, v: Dyn) -> Dyn:
    t = s.q.shape[2]
    causal = False
    if s.allowed is not None and not bool(s.allowed.all()):
        tril = torch.ones(t, t, dtype=torch.bool).tril()
        if not bool((s.allowed == tril).all()):
            raise UnsupportedOpError("an attention mask that is neither full nor causal")
        causal = True
    extra: dict[str, Any] = {}
    if s.bias is not None and bool(s.bias.any()):
        extra["alibi"] = alibi_slopes(s.bias, tril if causal else None, s.q)
    return attention(ctx, node.name, (s.q, s.k, v), None, causal, s.scale, extra)


def alibi_slopes(bias: torch.Tensor, allowed: torch.Tensor | None, q: Dyn) -> list[float]:
    """Per-head slopes m with ``bias[h, i, j] = m_h · (j - i) + c[h, i]`` on the allowed
    entries (`allowed`: ``(T, T)``, None for all).

    Raises:
        UnsupportedOpError: a bias of another form.
    """
    t = bias.shape[-1]
    heads = L.heads(q.axes[1])[0]
    if bias.shape[0] not in (1, heads):
        raise UnsupportedOpError(f"an attention bias over {bias.shape[0]} heads for {heads}")
    bias = bias.expand(heads, t, t)
    pos = torch.arange(t, dtype=torch.float64)
    dist = pos[None, :] - pos[:, None]  # (T, T): j - i
    slopes = bias[:, t - 1, t - 1] - bias[:, t - 1, t - 2] if t > 1 else bias[:, 0, 0] * 0
    rows = bias - bias.diagonal(dim1=1, dim2=2)[:, :, None]  # bias - bias[h, i, i]
    want = slopes[:, None, None] * dist
    ok = allowed if allowed is not None else torch.ones(t, t, dtype=torch.bool)
    err = (rows - want).abs()[:, ok]
    if not bool((err <= 1e-5 * (1 + want.abs()[:, ok])).all()):
        raise UnsupportedOpError(
            "an additive attention bias that is not ALiBi (a slope per head times the "
            "key-query distance)"
        )
    return [float(m) for m in slopes]


_before_matmul: Handler = HANDLERS["matmul"]
HANDLERS["matmul"] = _matmul_qk
for _name, _fn in (
    ("matmul", _matmul),
    ("mul", _scale),
    ("div", _scale),
    ("add", _add),
    ("masked_fill", _masked_fill),
    ("softmax", _softmax),
    ("_softmax", _softmax),
):
    _wrap(_name, _fn)
