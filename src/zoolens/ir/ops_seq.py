"""Runners of the sequence ops (transformers): token sequences are ``(B, D, T)`` values.

Units are the model width D on axis 1 and positions T are the spatial axis, exactly like a
conv1d activation; `zoolens.ir.ops` registers these runners under their kinds.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from zoolens.errors import UnsupportedOpError

if TYPE_CHECKING:
    from zoolens.ir.ops import Op

#: Sequence op kinds added to `zoolens.ir.ops.KINDS`.
SEQ_KINDS = frozenset(
    {"rmsnorm", "embedding", "posembed", "sdpa", "mul", "channel_scale", "tokens", "prepend"}
    | {"select"}
)


_N_INPUTS = {"sdpa": 3}
_WEIGHTED = frozenset({"rmsnorm", "embedding", "posembed", "channel_scale", "prepend"})


def check_seq_op(op: Op) -> None:
    """Raise `UnsupportedOpError` naming `op` when its inputs, params or attrs do not fit."""
    n = _N_INPUTS.get(op.kind, 2 if op.kind == "mul" or _pad(op) is not None else 1)
    if op.kind == "sdpa" and op.attrs.get("mask") is not None:
        if op.attrs["mask"] != "keys":
            raise UnsupportedOpError(
                f"op {op.name!r}: sdpa mask {op.attrs['mask']!r}; supported: 'keys'"
            )
        n = 4  # q, k, v and the attention mask (B, T)
    if len(op.inputs) < n or (op.kind != "mul" and len(op.inputs) != n):
        raise UnsupportedOpError(f"op {op.name!r}: {op.kind} reads {n} value(s)")
    if op.kind in _WEIGHTED and "weight" not in op.params:
        raise UnsupportedOpError(f"op {op.name!r}: {op.kind} needs a 'weight' tensor")
    if op.kind != "sdpa":
        return
    h, g = op.attrs.get("heads"), op.attrs.get("kv_heads") or op.attrs.get("heads")
    if not isinstance(h, int) or not isinstance(g, int) or h < 1 or g < 1 or h % g:
        raise UnsupportedOpError(
            f"op {op.name!r}: sdpa needs int attrs heads and kv_heads dividing it, got {h}, {g}"
        )
    alibi = op.attrs.get("alibi")
    if alibi is not None and (
        not isinstance(alibi, list) or len(alibi) != h or op.attrs.get("mask") is not None
    ):
        raise UnsupportedOpError(
            f"op {op.name!r}: sdpa alibi needs one slope per head ({h}) and no attention mask"
        )
    rope = op.attrs.get("rope")
    if rope and (int(rope.get("dims", 0)) % 2 or rope.get("style", "half") != "half"):
        raise UnsupportedOpError(
            f"op {op.name!r}: rope needs even 'dims' and style 'half' (rotate_half), got {rope}"
        )


def units_last(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, *s) → (B, *s, C)``: units on the last axis, where torch's layers act."""
    return x.permute(0, *range(2, x.dim()), 1)  # explicit axes: exportable to ONNX


def units_first(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `units_last`."""
    return x.permute(0, x.dim() - 1, *range(1, x.dim() - 1))


def run_linear(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    """``linear`` on ``(B, F)``, or pointwise over positions on ``(B, F, *s)``."""
    x, w, b = xs[0], op.params["weight"], op.params.get("bias")
    if x.dim() == 2:
        return F.linear(x, w, b)
    return units_first(F.linear(units_last(x), w, b))


def run_layernorm(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    """LayerNorm over axis 1 at each position."""
    x, p, eps = xs[0], op.params, float(op.attrs["eps"])
    n = (int(p["weight"].shape[0]),)  # the units (a constant, also when traced for ONNX)
    if x.dim() == 2:
        return F.layer_norm(x, n, p["weight"], p["bias"], eps)
    return units_first(F.layer_norm(units_last(x), n, p["weight"], p["bias"], eps))


def run_rmsnorm(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    """``x / sqrt(mean_units(x²) + eps) * weight``, over axis 1 at each position."""
    x, w = xs[0], op.params["weight"]
    rms = torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + float(op.attrs["eps"]))
    return x * rms * _per_unit(w, x)


def _per_unit(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return w.reshape(1, -1, *[1] * (x.dim() - 2))


def run_embedding(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    """Token ids ``(B, T)`` → ``(B, D, T)``; weight ``(D, V)``; ``attrs["shift"]``: read
    ``cat(shift, ids[:, :-1])`` (the decoder input of an encoder-decoder model)."""
    ids, w = xs[0], op.params["weight"]
    if ids.dim() != 2:
        raise UnsupportedOpError(f"op {op.name!r}: embedding reads token ids (B, T)")
    ids = ids.round().long() if ids.is_floating_point() else ids.long()
    if op.attrs.get("shift") is not None:  # a decoder's input: the ids shifted right
        ids = torch.cat([torch.full_like(ids[:, :1], int(op.attrs["shift"])), ids[:, :-1]], 1)
    return F.embedding(ids, w.T).transpose(1, 2)  # (B, D, T)


def _pad(op: Op) -> int | None:
    pad = op.attrs.get("pad")
    return None if pad is None else int(pad)


def padded_positions(ids: torch.Tensor, pad: int) -> torch.Tensor:
    """Rows read by padding-aware positions (RoBERTa's): ``cumsum(ids != pad) ·
    (ids != pad) + pad`` — real tokens count from ``pad + 1``, padding reads row ``pad``.

    Shapes:
        ids: ``(B, T)`` → ``(B, T)`` int64.
    """
    ids = ids.round().long() if ids.is_floating_point() else ids.long()
    keep = (ids != pad).long()
    return keep.cumsum(dim=1) * keep + pad


def run_posembed(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    """``x + table[:, index]``; table ``(D, N)``; ``attrs["index"]`` the row read at each
    position (default ``0..T-1``; BERT's token types read row 0 everywhere). With
    ``attrs["pad"]`` the rows are `padded_positions` of the token ids, the op's second
    input ``(B, T)``."""
    x, table = xs[0], op.params["weight"]
    t = x.shape[2]
    pad = _pad(op)
    if pad is not None:
        rows = padded_positions(xs[1], pad)  # (B, T)
        if t + pad >= table.shape[1]:
            raise UnsupportedOpError(
                f"op {op.name!r}: {t} positions after padding id {pad} but the position "
                f"table holds {table.shape[1]}"
            )
        return x + F.embedding(rows, table.T).transpose(1, 2)  # (B, D, T)
    index = op.attrs.get("index")
    if index is not None:
        if len(index) != t:
            raise UnsupportedOpError(
                f"op {op.name!r}: {t} positions but {len(index)} table indices"
            )
        return x + table[None, :, list(index)]
    if t > table.shape[1]:
        raise UnsupportedOpError(
            f"op {op.name!r}: {t} positions but the position table holds {table.shape[1]}"
        )
    return x + table[None, :, :t]


def run_mul(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = out * x
    return out


def run_channel_scale(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    return xs[0] * _per_unit(op.params["weight"], xs[0])


def run_tokens(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    """``(B, D, *s) → (B, D, prod(s))``."""
    return xs[0].flatten(2)


def run_prepend(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    """A learned token ``(D,)`` at position 0: ``(B, D, T) → (B, D, T + 1)``."""
    x, tok = xs[0], op.params["weight"]
    return torch.cat([tok.reshape(1, -1, 1).expand(x.shape[0], -1, 1).to(x.dtype), x], dim=2)


def run_select(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    """Position ``attrs["index"]`` (``-1`` = last): ``(B, D, T) → (B, D)``."""
    return xs[0][:, :, int(op.attrs.get("index", 0))]


def rope_frequencies(rope: dict[str, Any], dtype: torch.dtype) -> torch.Tensor:
    """Inverse frequencies ``(dims // 2,)`` of rotary pairs ``(i, i + dims // 2)``."""
    dims = int(rope["dims"])
    i = torch.arange(0, dims, 2, dtype=torch.float64)
    return (1.0 / float(rope["theta"]) ** (i / dims)).to(dtype)


def apply_rope(x: torch.Tensor, rope: dict[str, Any]) -> torch.Tensor:
    """Rotate the first ``rope["dims"]`` dims of each head (rotate_half style).

    Shapes:
        x: ``(B, H, T, head_dim)`` → the same.
    """
    dims, t = int(rope["dims"]), x.shape[2]
    if rope.get("style", "half") != "half":
        raise UnsupportedOpError(f"rope style {rope.get('style')!r}; supported: 'half'")
    inv = rope_frequencies(rope, torch.float64)
    ang = torch.arange(t, dtype=torch.float64)[:, None] * inv[None, :]  # (T, dims/2)
    ang = torch.cat([ang, ang], dim=1)
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    rot, rest = x[..., :dims], x[..., dims:]
    half = dims // 2
    rotated = torch.cat([-rot[..., half:], rot[..., :half]], dim=-1)
    return torch.cat([rot * cos + rotated * sin, rest], dim=-1)


def head_dim(op: Op, q_units: int) -> int:
    heads = int(op.attrs["heads"])
    if q_units % heads:
        raise UnsupportedOpError(f"op {op.name!r}: {q_units} query units for {heads} heads")
    return q_units // heads


def run_sdpa(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    """Per-head softmax(q kᵀ · scale [+ ALiBi bias] [+ causal mask] [+ key padding mask]) v.

    With ``attrs["alibi"]`` (a slope m_h per head) the scores gain ``m_h · (j - i)`` for
    query i and key j (ALiBi; a constant per query row, such as Bloom's ``m_h · j``, does
    not change the softmax).

    With ``attrs["mask"] == "keys"`` a fourth input, the attention mask ``(B, T)`` (nonzero =
    attend), hides the padded keys from every query, as ``torch``'s SDPA applies the boolean
    mask ``transformers`` builds from ``attention_mask``; a query that sees no key at all (a
    leading pad under a causal mask) outputs zeros, as that SDPA does.

    Shapes:
        q: ``(B, H * hd, T)``; k, v: ``(B, Hkv * hd, T)``; mask: ``(B, T)`` →
        ``(B, H * hd, T)``.
    """
    q, k, v = xs[:3]
    a = op.attrs
    h, hkv = int(a["heads"]), int(a.get("kv_heads") or a["heads"])
    hd = head_dim(op, q.shape[1])
    if h % hkv or k.shape[1] != hkv * hd or v.shape[1] != hkv * hd:
        raise UnsupportedOpError(
            f"op {op.name!r}: q/k/v widths {q.shape[1]}/{k.shape[1]}/{v.shape[1]} do not fit "
            f"{h} heads and {hkv} kv heads"
        )
    b, t = q.shape[0], q.shape[2]

    def split(x: torch.Tensor, n: int) -> torch.Tensor:
        return x.reshape(b, n, hd, t).transpose(2, 3)  # (B, n, T, hd)

    qh, kh, vh = split(q, h), split(k, hkv), split(v, hkv)
    if a.get("rope"):
        qh, kh = apply_rope(qh, a["rope"]), apply_rope(kh, a["rope"])
    r = h // hkv
    kh, vh = kh.repeat_interleave(r, dim=1), vh.repeat_interleave(r, dim=1)
    scale = a.get("scale")
    scale = 1.0 / math.sqrt(hd) if scale is None else float(scale)
    scores = qh @ kh.transpose(2, 3) * scale  # (B, H, T, T)
    if a.get("alibi") is not None:  # ALiBi: slope_h · (j - i), a fixed bias per head
        pos = torch.arange(t, dtype=scores.dtype, device=q.device)
        slopes = torch.tensor(a["alibi"], dtype=scores.dtype, device=q.device)
        scores = scores + slopes[:, None, None] * (pos[None, :] - pos[:, None])  # (H, T, T)
    if a.get("mask") is None:
        if a.get("causal"):
            mask = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
            scores = scores.masked_fill(mask, float("-inf"))
        out = scores.softmax(dim=-1) @ vh  # (B, H, T, hd)
    else:
        seen = (xs[3] != 0).reshape(b, 1, 1, t)  # (B, 1, 1, T) keys each query may see
        if a.get("causal"):
            seen = seen & torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
        probs = scores.masked_fill(~seen, float("-inf")).softmax(dim=-1)
        probs = torch.where(seen.any(dim=-1, keepdim=True), probs, torch.zeros_like(probs))
        out = probs @ vh  # (B, H, T, hd)
    return out.transpose(2, 3).reshape(b, h * hd, t)


SEQ_RUNNERS = {
    "rmsnorm": run_rmsnorm,
    "embedding": run_embedding,
    "posembed": run_posembed,
    "sdpa": run_sdpa,
    "mul": run_mul,
    "channel_scale": run_channel_scale,
    "tokens": run_tokens,
    "prepend": run_prepend,
    "select": run_select,
}


def seq_param_roles(kind: str) -> tuple[str, ...]:
    """Axis roles of the parameters of sequence ops (each has one, ``weight``)."""
    if kind == "embedding":
        return ("out",)
    if kind in ("rmsnorm", "posembed", "channel_scale", "prepend"):
        return ("unit",)
    return ()
