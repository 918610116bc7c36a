"""Elementwise, binary and slicing ATen ops of the torch.export importer: activations spelled
out, residual sums, gating products, position tables, RMSNorm, rotary embedding, class tokens,
fused-projection splits.

Private to `zoolens.ir.export_import`; the handlers register into `_export_ops.HANDLERS`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.fx import Node

from zoolens.errors import UnsupportedOpError
from zoolens.ir._export_context import Const, Context, Value, materialise
from zoolens.ir._export_layout import Atom, Dyn
from zoolens.ir._export_ops import (
    HANDLERS,
    _fresh,
    _same_layout,
    _scalar,
    _src,
    arrange,
    handles,
    posembed,
)
from zoolens.ir._export_patterns import (
    PENDING,
    Cosined,
    Expr,
    Half,
    MeanSquare,
    Roped,
    Rotated,
)


def _fn_of(v: Any) -> Any:
    if isinstance(v, Dyn):
        return lambda t: t
    if isinstance(v, Expr):
        return v.fn
    s = _scalar(v)
    if isinstance(v, Const) and s is not None:
        return lambda t, s=s: s
    return lambda t, v=v: v


def _one_source(args: list[Any]) -> Dyn | None:
    """The IR value every input-dependent argument is an elementwise function of, if one."""
    srcs = [_src(a) for a in args if isinstance(a, (Dyn, Expr))]
    if not srcs or any(isinstance(a, PENDING) and not isinstance(a, Expr) for a in args):
        return None
    first = srcs[0]
    assert first is not None
    for s in srcs[1:]:
        if s is None or s.value != first.value or not _same_layout(s, first):
            return None
    return first


def elementwise(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    name = node.target.overloadpacket.__name__.rstrip("_")  # type: ignore[union-attr]
    bad = [a for a in args if isinstance(a, Const) and a.value.numel() > 1]
    src = _one_source(list(args))
    if src is not None and not bad:
        parts = [_fn_of(a) for a in args]
        target = node.target

        def fn(t: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = target(*[p(t) for p in parts], **kw)  # type: ignore[operator]
            return out

        return Expr(src, fn)
    dyn = [a for a in args if isinstance(a, (Dyn, Expr))]
    if name in ("add", "mul") and len(dyn) == 2 and len(args) == 2 and kw.get("alpha", 1) == 1:
        a, b = (materialise(ctx, x, name) for x in dyn)
        if not _same_layout(a, b):
            raise UnsupportedOpError(f"{name} of two values laid out differently")
        op = ctx.emit(name, (a.value, b.value), node.name)
        return Dyn(op.output, a.axes, a.units, a.space, a.sdims)
    raise UnsupportedOpError(f"ATen op {name!r} on these operands")


HANDLERS["_elementwise"] = elementwise


def _split_const(args: tuple[Any, ...]) -> tuple[Const, Any] | None:
    a, b = args[0], args[1]
    if isinstance(a, Const) and a.value.numel() > 1 and isinstance(b, (Dyn, Expr)):
        return a, b
    if isinstance(b, Const) and b.value.numel() > 1 and isinstance(a, (Dyn, Expr)):
        return b, a
    return None


def _head_table(t: torch.Tensor, d: Dyn) -> torch.Tensor:
    """A ``(H·d, T)`` table equal over heads → ``(d, T)``."""
    hd = math.prod(a.size for a in d.axes[-1])
    t = t.reshape(-1, hd, t.shape[-1])
    if not bool((t == t[:1]).all()):
        raise UnsupportedOpError("a rotary table that differs between heads")
    return t[0]


def _part_table(t: torch.Tensor, d: Dyn, lo: int, hi: int | None) -> torch.Tensor:
    """The ``(hi - lo, T)`` table (equal over batch and heads) a constant `t` multiplies
    head dims ``[lo, hi)`` of `d` ``(B, H, T, hd)`` by; the whole head when `hi` is None."""
    if hi is None:
        return _head_table(arrange(t, d), d)
    if len(d.axes) != 4 or d.axes[2] != d.space or len(d.sdims) != 1:
        raise UnsupportedOpError("rotary tables on a value not laid out as (B, heads, T, dim)")
    if t.dim() > 4:
        raise UnsupportedOpError(f"a rotary table of shape {list(t.shape)}")
    flat = t.expand(*d.shape[:-1], hi - lo).reshape(-1, d.shape[2], hi - lo)  # (B·H, T, r)
    if not bool((flat == flat[:1]).all()):
        raise UnsupportedOpError("a rotary table that differs between heads")
    return flat[0].T.contiguous()


def _partial_rope(r: Roped, rest: Half, dim: int) -> Dyn:
    """``cat([rope(x[..., :r]), x[..., r:]], -1)``: rotary embedding of the first `r` dims."""
    d = r.src
    if (
        rest.neg
        or rest.src.value != d.value
        or (rest.lo, rest.hi) != (r.dims, d.shape[-1])
        or dim % len(d.axes) != len(d.axes) - 1
    ):
        raise UnsupportedOpError(
            "partial rotary embedding concatenated with other than the head's remaining dims"
        )
    return Dyn(d.value, d.axes, d.units, d.space, d.sdims, rope=(r.cos, r.sin))


@handles("add")
def _h_add(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    a, b = args[0], args[1]
    for x, y in ((a, b), (b, a)):
        if isinstance(x, MeanSquare) and not x.inverse and _scalar(y) is not None:
            return MeanSquare(x.src, x.eps + float(_scalar(y)))  # type: ignore[arg-type]
        if isinstance(x, Cosined) and isinstance(y, Rotated) and y.table is not None:
            if x.src.value != y.src.value or not _same_layout(x.src, y.src):
                raise UnsupportedOpError("rotary embedding mixing two values")
            if (x.lo, x.hi) != (y.lo, y.hi) or x.lo != 0:
                raise UnsupportedOpError("rotary embedding of head dims other than the first")
            d = x.src
            if x.hi is not None:  # partial rotary: awaits the head's unrotated dims
                return Roped(d, x.hi, x.table, y.table)
            return Dyn(d.value, d.axes, d.units, d.space, d.sdims, rope=(x.table, y.table))
    pair = _split_const(args)
    if pair is not None and kw.get("alpha", 1) == 1:
        c, v = pair
        return posembed(ctx, materialise(ctx, v, "add"), c, node)
    return elementwise(ctx, node, args, kw)


@handles("mul")
def _h_mul(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    a, b = args[0], args[1]
    for x, y in ((a, b), (b, a)):
        if isinstance(x, MeanSquare) and x.inverse:
            d = _src(y)
            if d is None or d.value != x.src.value or not _same_layout(d, x.src):
                raise UnsupportedOpError("an RMS statistic multiplied into another value")
            d = materialise(ctx, y, "rms_norm")
            n = math.prod(u.size for u in d.units)
            op = ctx.emit(
                "rmsnorm", (d.value,), node.name, {"weight": torch.ones(n)}, {"eps": x.eps}
            )
            return Dyn(op.output, d.axes, d.units, d.space, d.sdims)
        if isinstance(x, Rotated) and x.table is None and isinstance(y, Const):
            return Rotated(x.src, _part_table(y.value, x.src, x.lo, x.hi), x.lo, x.hi)
        if isinstance(x, Half) and not x.neg and isinstance(y, Const) and y.value.numel() > 1:
            return Cosined(x.src, _part_table(y.value, x.src, x.lo, x.hi), x.lo, x.hi)
    pair = _split_const(args)
    if pair is None:
        return elementwise(ctx, node, args, kw)
    c, v = pair
    d = materialise(ctx, v, "mul")
    t = arrange(c.value, d)  # (U, *S)
    flat = t.reshape(t.shape[0], -1)
    if bool((flat == flat[:, :1]).all()):
        op = ctx.emit(
            "channel_scale",
            (d.value,),
            c.param or node.name,
            {"weight": Const(flat[:, 0].clone(), c.param)},
        )
        return Dyn(op.output, d.axes, d.units, d.space, d.sdims)
    if len(d.axes) == 4 and len(d.sdims) == 1:
        return Cosined(d, _head_table(t, d))
    raise UnsupportedOpError("a product with a constant that varies over positions")


@handles("rsqrt")
def _h_rsqrt(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    if isinstance(args[0], MeanSquare) and not args[0].inverse:
        return MeanSquare(args[0].src, args[0].eps, inverse=True)
    return elementwise(ctx, node, args, kw)


@handles("neg")
def _h_neg(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    if isinstance(args[0], Half):
        return Half(args[0].src, args[0].lo, args[0].hi, not args[0].neg)
    return elementwise(ctx, node, args, kw)


@handles("slice")
def _h_slice(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    part = args[0] if isinstance(args[0], Half) and not args[0].neg else None
    d = part.src if part is not None else materialise(ctx, args[0], "slice")
    n = len(d.axes)
    dim = int(args[1]) % n if len(args) > 1 else 0
    lo, size = (part.lo, part.hi - part.lo) if part is not None else (0, d.shape[dim])
    start = int(args[2]) if len(args) > 2 and args[2] is not None else 0
    end = min(int(args[3]), size) if len(args) > 3 and args[3] is not None else size
    if (len(args) > 4 and int(args[4]) != 1) or start < 0 or end < 0:
        raise UnsupportedOpError("slice with a step or negative bounds")
    if start == 0 and end == size:
        return args[0] if part is not None else d
    ax = d.axes[dim]
    if dim == n - 1 and len(ax) == 1 and ax[0].kind == "U" and start <= end:
        return Half(d, lo + start, lo + end)  # head dims: rotate_half, partial rotary
    raise UnsupportedOpError(f"slice [{start}:{end}] of an axis of size {size}")


@handles("cat")
def _h_cat(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    parts = list(args[0])
    dim = int(args[1]) if len(args) > 1 else int(kw.get("dim", 0))
    if len(parts) == 2 and all(isinstance(p, Half) for p in parts):
        hi, lo = parts  # rotate_half of head dims [lo.lo, hi.hi): cat(-x₂, x₁)
        if (
            hi.neg
            and not lo.neg
            and hi.src.value == lo.src.value
            and hi.lo == lo.hi
            and hi.hi - hi.lo == lo.hi - lo.lo
        ):
            whole = lo.lo == 0 and hi.hi == hi.src.shape[-1]
            return Rotated(hi.src) if whole else Rotated(hi.src, None, lo.lo, hi.hi)
        raise UnsupportedOpError("a concatenation of head halves other than rotate_half")
    if len(parts) == 2 and isinstance(parts[0], Roped) and isinstance(parts[1], Half):
        return _partial_rope(parts[0], parts[1], dim)
    if len(parts) == 2 and isinstance(parts[0], Dyn) and isinstance(parts[1], Half):
        d, empty = parts  # a "partial" rotary over every dim: nothing passed unrotated
        if empty.lo == empty.hi == d.shape[-1] and empty.src.value == d.value:
            return d
    if len(parts) == 2 and isinstance(parts[0], Const) and isinstance(parts[1], (Dyn, Expr)):
        return _prepend(ctx, node, parts[0], materialise(ctx, parts[1], "cat"), dim)
    raise UnsupportedOpError("concatenation of input-dependent values")


def _prepend(ctx: Context, node: Node, c: Const, d: Dyn, dim: int) -> Dyn:
    axis = dim % len(d.axes)
    if d.axes[axis] != d.space or not d.space or c.value.shape[axis] != 1:
        raise UnsupportedOpError("a concatenation that is not a token prepended to positions")
    if len(d.sdims) != 1:
        op = ctx.emit("tokens", (d.value,), "tokens")
        t = Atom("S", math.prod(d.sdims))
        axes = tuple((t,) if i == axis else ax for i, ax in enumerate(d.axes))
        d = Dyn(op.output, axes, d.units, (t,), (t.size,))
    bare = Dyn(
        d.value, tuple(() if i == axis else ax for i, ax in enumerate(d.axes)), d.units, (), ()
    )
    token = arrange(c.value, bare).reshape(-1)
    op = ctx.emit("prepend", (d.value,), c.param or node.name, {"weight": Const(token, c.param)})
    t2 = Atom("S", d.sdims[0] + 1)
    axes = tuple((t2,) if i == axis else ax for i, ax in enumerate(d.axes))
    return Dyn(op.output, axes, d.units, (t2,), (t2.size,))


@handles("select")
def _h_select(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    d = materialise(ctx, args[0], "select")
    axis, index = int(args[1]) % len(d.axes), int(args[2])
    if d.axes[axis] != d.space or len(d.sdims) != 1:
        raise UnsupportedOpError("select on an axis that is not the positions")
    if index < 0:
        index += d.sdims[0]
    attrs = {"index": -1 if index == d.sdims[0] - 1 and index > 0 else index}
    op = ctx.emit("select", (d.value,), node.name, attrs=attrs)
    axes = tuple(ax for i, ax in enumerate(d.axes) if i != axis)
    return Dyn(op.output, axes, d.units, (), ())


@handles("split", "split_with_sizes")
def _h_split(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    """A fused projection split along its units (GPT-2's qkv), or within each head
    (GPT-NeoX's ``(H, 3·hd)`` qkv): one linear op per part."""
    d = materialise(ctx, args[0], "split")
    axis = int(args[2]) % len(d.axes) if len(args) > 2 else 0
    total = d.shape[axis]
    sizes = [int(args[1])] * (total // int(args[1])) if isinstance(args[1], int) else list(args[1])
    producer = next((op for op in ctx.ops if op.output == d.value), None)
    readers = [op for op in ctx.ops if d.value in op.inputs]
    src_node = node.args[0]
    per_head = len(d.units) == 2 and d.axes[axis] == d.units[1:]  # (H, 3·hd): split in heads
    if (
        producer is None
        or producer.kind != "linear"
        or readers
        or not ((d.axes[axis] == d.units and len(d.units) == 1) or per_head)
        or ctx.consumers.get(getattr(src_node, "name", ""), 0) != 1
    ):
        raise UnsupportedOpError("split of a value other than a fused linear projection")
    ctx.ops.remove(producer)
    for uses in ctx.used.values():
        for role in list(uses):
            if role.startswith(producer.name + "."):
                uses.remove(role)
    outs, start = [], 0
    for i, n in enumerate(sizes):
        rows = torch.arange(start, start + n)
        if per_head:  # GPT-NeoX: each head's units are its [q | k | v] dims
            heads, width = d.units[0].size, d.units[1].size
            rows = (torch.arange(heads)[:, None] * width + rows[None, :]).reshape(-1)
        params = {r: t[rows] for r, t in producer.params.items()}
        op = ctx.emit("linear", producer.inputs, f"{producer.name}.{i}", params)
        outs.append(_per_head_part(d, op.output, n) if per_head else _fresh(d, axis, op.output, n))
        start += n
    return tuple(outs)


def _per_head_part(d: Dyn, value: str, n: int) -> Dyn:
    """`d` (units ``(H, W)``, W on its own axis) as IR value `value` of units ``(H, n)``."""
    new = {id(d.units[0]): Atom("U", d.units[0].size), id(d.units[1]): Atom("U", n)}
    axes = tuple(tuple(new.get(id(a), a) for a in ax) for ax in d.axes)
    units = tuple(new[id(a)] for a in d.units)
    return Dyn(value, axes, units, d.space, d.sdims)


@handles("chunk")
def _h_chunk(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    d = materialise(ctx, args[0], "chunk")
    axis = int(args[2]) if len(args) > 2 else 0
    k = int(args[1])
    return _h_split(ctx, node, (d, d.shape[axis] // k, axis), kw)
