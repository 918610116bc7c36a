"""Translation of each ATen op that reads an input-dependent value into IR ops.

Private to `zoolens.ir.export_import`; see its docstring for the mechanism.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.fx import Node

from zoolens.errors import UnsupportedOpError
from zoolens.ir import _export_layout as L
from zoolens.ir._export_context import Const, Context, Value, materialise
from zoolens.ir._export_layout import Atom, Dyn
from zoolens.ir._export_patterns import (
    Expr,
    MeanSquare,
    is_square,
)

Handler = Callable[[Context, Node, tuple[Any, ...], dict[str, Any]], Value]
HANDLERS: dict[str, Handler] = {}
#: Ops that pass their first argument through (in eval mode, whatever the dtype).
IDENTITY = frozenset(
    {"alias", "clone", "contiguous", "detach", "lift_fresh_copy", "to", "_to_copy", "type_as"}
    | {"dropout", "feature_dropout", "_assert_tensor_metadata"}
)
#: Elementwise ops: on one IR value they compose into an `Expr`.
ELEMENTWISE = frozenset(
    {"add", "sub", "rsub", "mul", "div", "pow", "neg", "tanh", "sigmoid", "relu", "gelu"}
    | {"silu", "sin", "cos", "exp", "log", "sqrt", "rsqrt", "erf", "abs", "reciprocal"}
    | {"clamp", "clamp_min", "clamp_max", "leaky_relu", "softplus", "hardtanh", "square"}
)


def handles(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for n in names:
            HANDLERS[n] = fn
        return fn

    return register


def _fresh(d: Dyn, axis: int, value: str, units: int) -> Dyn:
    """`d` with traced `axis` (its unit axis) replaced by `units` new units in `value`."""
    u = (Atom("U", units),) if units > 1 else ()
    axes = (*d.axes[:axis], u, *d.axes[axis + 1 :])
    return Dyn(value, axes, u, d.space, d.sdims)


def _last_units(ctx: Context, d: Dyn, reader: str) -> Dyn:
    """`d` with every unit atom, in order, on its last axis (flattening a conv output)."""
    squeezed = d.sdims and math.prod(d.sdims) == 1 and len(d.axes) == 2
    if L.unit_axis(d) == len(d.axes) - 1 and not squeezed:
        return d
    if d.axes[-1] == d.units + d.space and all(a.kind == "B" for ax in d.axes[:-1] for a in ax):
        op = ctx.emit("flatten", (d.value,), "flatten")
        n = math.prod(a.size for a in d.axes[-1])
        u = Atom("U", n)
        return Dyn(op.output, (*d.axes[:-1], (u,)), (u,), (), ())
    raise UnsupportedOpError(f"{reader} on an axis that is not the units of its input")


def arrange(t: torch.Tensor, d: Dyn, keep_batch: bool = False) -> torch.Tensor:
    """A tensor laid out as traced tensor `d`, rearranged as its IR value.

    Returns ``(B, U, *S)`` with `keep_batch`, else ``(U, *S)`` after checking that it does
    not vary over the batch (or repeats); ``U`` is 1 for a value without units.
    """
    if t.dim() > len(d.axes):
        raise UnsupportedOpError(
            f"a constant of shape {list(t.shape)} broadcast to {list(d.shape)}"
        )
    t = t.expand(d.shape)
    flat = [a for ax in d.axes for a in ax]
    t = t.reshape([a.size for a in flat])
    where = {id(a): i for i, a in enumerate(flat)}
    lead = [a for a in flat if a.kind in ("B", "R")]
    order = [where[id(a)] for a in (*lead, *d.units, *d.space)]
    u = math.prod(a.size for a in d.units)
    t = t.permute(order).reshape(-1, u, *d.sdims)
    if keep_batch:
        return t
    if not bool((t == t[:1]).all()):
        raise UnsupportedOpError("a constant that varies over the batch")
    return t[0]


def _varies(t: torch.Tensor, dim: int) -> bool:
    return t.shape[dim] > 1 and not bool((t == t.narrow(dim, 0, 1)).all())


def _scalar(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, Const) and v.value.numel() == 1:
        return float(v.value.reshape(()))
    return None


def _src(v: Any) -> Dyn | None:
    if isinstance(v, Dyn):
        return v
    if isinstance(v, Expr):
        return v.src
    return None


def _same_layout(a: Dyn, b: Dyn) -> bool:
    """Two traced tensors over IR values of one shape, with every axis in the same place."""

    def sig(d: Dyn) -> list[list[tuple[str, int, int]]]:
        pos = {id(x): i for i, x in enumerate((*d.units, *d.space))}
        return [[(x.kind, x.size, pos.get(id(x), -1)) for x in ax] for ax in d.axes]

    return (
        a.sdims == b.sdims
        and sig(a) == sig(b)
        and [x.size for x in a.units] == [x.size for x in b.units]
    )


# -- layout-only ops ---------------------------------------------------------------------------
@handles("view", "reshape", "_unsafe_view")
def _view(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    return L.view(materialise(ctx, args[0], "reshape"), [int(s) for s in args[1]])


@handles("transpose")
def _transpose(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    return L.transpose(materialise(ctx, args[0], "transpose"), int(args[1]), int(args[2]))


@handles("t")
def _t(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    return L.transpose(materialise(ctx, args[0], "transpose"), 0, 1)


@handles("permute")
def _permute(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    return L.permute(materialise(ctx, args[0], "permute"), [int(x) for x in args[1]])


@handles("unsqueeze")
def _unsqueeze(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    return L.unsqueeze(materialise(ctx, args[0], "unsqueeze"), int(args[1]))


@handles("squeeze")
def _squeeze(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    d = materialise(ctx, args[0], "squeeze")
    dims = args[1] if len(args) > 1 else list(range(len(d.axes)))
    return L.squeeze(d, [int(x) for x in (dims if isinstance(dims, (list, tuple)) else [dims])])


@handles("expand")
def _expand(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    return L.expand(materialise(ctx, args[0], "expand"), [int(s) for s in args[1]])


@handles("flatten")
def _flatten(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    start = int(args[1]) if len(args) > 1 else 0
    end = int(args[2]) if len(args) > 2 else -1
    return L.flatten(materialise(ctx, args[0], "flatten"), start, end)


# -- dense and norm ops ------------------------------------------------------------------------
def _linear(ctx: Context, x: Any, w: Const, b: Any, node: Node) -> Dyn:
    if not isinstance(w, Const):
        raise UnsupportedOpError(f"{node.target}: a weight that depends on the input")
    d = _last_units(ctx, materialise(ctx, x, "linear"), "linear")
    params: dict[str, Any] = {"weight": w}
    if isinstance(b, Const):
        params["bias"] = b
    op = ctx.emit("linear", (d.value,), w.param or node.name, params)
    return _fresh(d, len(d.axes) - 1, op.output, int(w.value.shape[0]))


@handles("linear")
def _h_linear(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    return _linear(ctx, args[0], args[1], args[2] if len(args) > 2 else kw.get("bias"), node)


def _transposed(w: Any) -> Const:
    if not isinstance(w, Const) or w.value.dim() != 2:
        raise UnsupportedOpError("a matrix product with an input-dependent right operand")
    return Const(w.value.T, param=w.param)


@handles("addmm")
def _h_addmm(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    if kw.get("beta", 1) != 1 or kw.get("alpha", 1) != 1:
        raise UnsupportedOpError("addmm with alpha or beta")
    return _linear(ctx, args[1], _transposed(args[2]), args[0], node)


@handles("mm", "matmul")
def _h_mm(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    return _linear(ctx, args[0], _transposed(args[1]), None, node)


@handles("layer_norm")
def _h_layer_norm(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    d = materialise(ctx, args[0], "layer_norm")
    n = [int(s) for s in args[1]]
    if L.unit_axis(d) != len(d.axes) - 1 or n != [d.shape[-1]]:
        raise UnsupportedOpError(f"layer_norm over {n} of a value that is not its units")
    w = args[2] if len(args) > 2 and args[2] is not None else Const(torch.ones(n[0]))
    b = args[3] if len(args) > 3 and args[3] is not None else Const(torch.zeros(n[0]))
    eps = float(args[4]) if len(args) > 4 else 1e-5
    op = ctx.emit(
        "layernorm", (d.value,), w.param or node.name, {"weight": w, "bias": b}, {"eps": eps}
    )
    absent = [r for r, i in (("weight", 2), ("bias", 3)) if len(args) <= i or args[i] is None]
    ctx.implied += [f"{op.name}.{r}" for r in absent]  # ones / zeros the model does not hold
    return Dyn(op.output, d.axes, d.units, d.space, d.sdims)


def _canonical_in(ctx: Context, v: Any, reader: str) -> Dyn:
    d = materialise(ctx, v, reader)
    if not L.is_canonical(d):
        raise UnsupportedOpError(
            f"{reader} on a value not laid out as (batch, channels, ...): {d.axes}"
        )
    return d


def _canonical_out(ctx: Context, node: Node, value: str) -> Dyn:
    shape = [int(s) for s in node.meta["val"].shape]
    return L.canonical(value, shape[1], tuple(shape[2:]), ctx.batch)


@handles("conv1d", "conv2d")
def _h_conv(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    d = _canonical_in(ctx, args[0], "convolution")
    w, b = args[1], args[2] if len(args) > 2 else None
    dims = len(d.sdims)
    stride, padding, dilation = (
        [int(x) for x in (args[i] if len(args) > i else [1 if i != 4 else 0] * dims)]
        for i in (3, 4, 5)
    )
    groups = int(args[6]) if len(args) > 6 else 1
    if isinstance(args[4] if len(args) > 4 else 0, str):
        raise UnsupportedOpError("convolution with string padding")
    params: dict[str, Any] = {"weight": w}
    if isinstance(b, Const):
        params["bias"] = b
    attrs: dict[str, Any] = {"stride": stride, "padding": padding, "dilation": dilation}
    if groups != 1:
        attrs["groups"] = groups
    kind = "conv1d" if dims == 1 else "conv2d"
    op = ctx.emit(kind, (d.value,), w.param or node.name, params, attrs)
    return _canonical_out(ctx, node, op.output)


def _batchnorm(ctx: Context, node: Node, x: Any, ps: list[Any], eps: float) -> Dyn:
    d = materialise(ctx, x, "batch_norm")
    if L.unit_axis(d) != 1:
        raise UnsupportedOpError("batch_norm over an axis that is not the units")
    w, b, rm, rv = ps
    n = d.shape[1]
    params = {
        "weight": w if w is not None else Const(torch.ones(n)),
        "bias": b if b is not None else Const(torch.zeros(n)),
        "running_mean": rm,
        "running_var": rv,
    }
    op = ctx.emit(
        "batchnorm", (d.value,), getattr(w, "param", None) or node.name, params, {"eps": eps}
    )
    return Dyn(op.output, d.axes, d.units, d.space, d.sdims)


@handles("_native_batch_norm_legit_no_training")
def _h_bn_legit(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    out = _batchnorm(ctx, node, args[0], list(args[1:5]), float(args[6]))
    return (out, None, None)


@handles("batch_norm")
def _h_bn(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    if args[5]:
        raise UnsupportedOpError("batch_norm in training mode")
    return _batchnorm(ctx, node, args[0], list(args[1:5]), float(args[7]))


def _pool(ctx: Context, node: Node, kind: str, args: tuple[Any, ...]) -> Dyn:
    d = _canonical_in(ctx, args[0], kind)
    k = [int(x) for x in args[1]]
    stride = [int(x) for x in args[2]] if len(args) > 2 and args[2] else k
    padding = [int(x) for x in args[3]] if len(args) > 3 else [0] * len(k)
    attrs = {"kernel_size": k, "stride": stride, "padding": padding}
    op = ctx.emit(kind, (d.value,), node.name, attrs=attrs)
    return _canonical_out(ctx, node, op.output)


@handles("max_pool2d", "max_pool1d")
def _h_maxpool(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    dil = args[4] if len(args) > 4 else 1
    if (len(args) > 5 and args[5]) or any(
        int(x) != 1 for x in (dil if isinstance(dil, list) else [dil])
    ):
        raise UnsupportedOpError("max_pool with dilation or ceil_mode")
    return _pool(ctx, node, "maxpool", args)


@handles("max_pool2d_with_indices")
def _h_maxpool_idx(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    return (_h_maxpool(ctx, node, args, kw), None)


@handles("avg_pool2d", "avg_pool1d")
def _h_avgpool(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    if len(args) > 3 and any(int(x) for x in args[3]) and len(args) > 5 and not args[5]:
        raise UnsupportedOpError("avg_pool excluding padding from the count")
    return _pool(ctx, node, "avgpool", args)


@handles("adaptive_avg_pool2d", "adaptive_avg_pool1d")
def _h_adaptive(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    d = _canonical_in(ctx, args[0], "adaptive_avg_pool")
    if any(int(x) != 1 for x in args[1]):
        raise UnsupportedOpError(f"adaptive_avg_pool to {list(args[1])}; only to size 1")
    op = ctx.emit("gap", (d.value,), node.name, attrs={"keepdim": True})
    return _canonical_out(ctx, node, op.output)


@handles("mean")
def _h_mean(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    v, src = args[0], _src(args[0])
    if src is None:
        raise UnsupportedOpError("mean of a partial pattern")
    n = len(src.axes)
    dims = sorted(int(x) % n for x in args[1])
    keep = bool(args[2]) if len(args) > 2 else bool(kw.get("keepdim", False))
    square = isinstance(v, Expr) and is_square(v.fn)
    if square and dims == [L.unit_axis(src)] and keep:
        return MeanSquare(src)
    d = _canonical_in(ctx, v, "mean")
    if dims != list(range(2, n)):
        raise UnsupportedOpError("mean over axes other than all positions")
    op = ctx.emit("gap", (d.value,), node.name, attrs={"keepdim": keep})
    if keep:
        return _canonical_out(ctx, node, op.output)
    return Dyn(op.output, d.axes[:2], d.units, (), ())


# -- sequence ops --------------------------------------------------------------------------------
@handles("embedding")
def _h_embedding(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    w, ids = args[0], args[1]
    if not isinstance(w, Const) or not isinstance(ids, Dyn) or ids.units or ids.value != "input":
        raise UnsupportedOpError("embedding of values other than the token-id input")
    op = ctx.emit(
        "embedding", (ids.value,), w.param or node.name, {"weight": Const(w.value.T, w.param)}
    )
    u = Atom("U", int(w.value.shape[1]))
    return Dyn(op.output, (*ids.axes, (u,)), (u,), ids.space, ids.sdims)


def posembed(ctx: Context, d: Dyn, c: Const, node: Node) -> Dyn:
    """``d + c`` for a constant that varies over positions: a position (or token-type) table.

    A constant gathered from a parameter table (`Const.table`) keeps the whole table and the
    rows it reads, so the net holds every parameter the model has.
    """
    if len(d.sdims) != 1:
        raise UnsupportedOpError("a position table added to a value without one position axis")
    added = arrange(c.value, d)  # (D, T): what the traced model adds
    attrs: dict[str, Any] = {}
    uniform = c.param is None and c.table is None and bool((added == added[:, :1]).all())
    if c.table is not None and c.ids is not None:
        ids = c.ids.reshape(-1, d.sdims[0])
        if not bool((ids == ids[:1]).all()):
            raise UnsupportedOpError("position ids that vary over the batch")
        index = [int(i) for i in ids[0]]
        weight = Const(c.table.T, c.param)
        if not torch.equal(weight.value[:, index], added):
            raise UnsupportedOpError("a gathered table whose rows do not match what is added")
        if index != list(range(len(index))):
            attrs["index"] = index
    elif uniform:  # a buffer such as BART's final_logits_bias: one column, not counted
        weight, attrs["index"] = Const(added[:, :1]), [0] * added.shape[1]
    else:
        weight = Const(added, c.param)
    op = ctx.emit("posembed", (d.value,), c.param or node.name, {"weight": weight}, attrs)
    ctx.implied += [f"{op.name}.weight"] if uniform else []
    return Dyn(op.output, d.axes, d.units, d.space, d.sdims)


@handles("pad", "constant_pad_nd")
def _h_pad(ctx: Context, node: Node, args: tuple[Any, ...], kw: dict[str, Any]) -> Value:
    d = _canonical_in(ctx, args[0], "pad")
    pads = [int(p) for p in args[1]]
    mode = args[2] if node.target.overloadpacket.__name__ == "pad" and len(args) > 2 else "constant"  # type: ignore[union-attr]
    value = args[-1] if len(args) > 2 and not isinstance(args[-1], str) else kw.get("value", 0.0)
    if mode != "constant" or (value or 0.0) != 0.0 or len(pads) > 2 * len(d.sdims):
        raise UnsupportedOpError("padding other than zeros on the spatial axes")
    op = ctx.emit("pad", (d.value,), node.name, attrs={"pads": pads})
    return _canonical_out(ctx, node, op.output)
