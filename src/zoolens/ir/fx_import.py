"""Import a PyTorch ``nn.Module`` into a `Net` by tracing it with ``torch.fx``."""

from __future__ import annotations

import contextlib
import io
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from zoolens.errors import LoadError, UnsupportedOpError
from zoolens.ir._fx_rnn import FxRnn
from zoolens.ir.net import Net
from zoolens.ir.ops import Op

_ACT_MODULES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.Softplus: "softplus",
    nn.LeakyReLU: "leaky_relu",
    nn.PReLU: "prelu",
    nn.Identity: "identity",
}
_ACT_FUNCTIONS: dict[Callable[..., Any], str] = {
    torch.relu: "relu",
    F.relu: "relu",
    torch.tanh: "tanh",
    F.tanh: "tanh",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    torch.sin: "sin",
    F.gelu: "gelu",
    F.silu: "silu",
    F.leaky_relu: "leaky_relu",
    F.softplus: "softplus",
}
_ACT_METHODS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "sin": "sin"}
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)


def _ints(v: Any, n: int) -> list[int]:
    return [int(v)] * n if isinstance(v, int) else [int(x) for x in v]


def _module_op(name: str, m: nn.Module, inp: str, out: str) -> Op | None:
    """The op for a leaf module, or None for an identity (Dropout, Identity)."""
    p = {k: v.detach().clone() for k, v in m.named_parameters(recurse=False)}
    if isinstance(m, (*_DROPOUT, nn.Identity)):
        return Op(name, "dropout", (inp,), out) if isinstance(m, _DROPOUT) else None
    if isinstance(m, nn.Linear):
        return Op(name, "linear", (inp,), out, p)
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        d = 1 if isinstance(m, nn.Conv1d) else 2
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise UnsupportedOpError(
                f"module {name!r}: Conv with padding={m.padding!r}, "
                f"padding_mode={m.padding_mode!r} is not supported (need int zero padding)"
            )
        attrs: dict[str, Any] = {
            "stride": _ints(m.stride, d),
            "padding": _ints(m.padding, d),
            "dilation": _ints(m.dilation, d),
        }
        if m.groups != 1:
            attrs["groups"] = int(m.groups)
        return Op(name, f"conv{d}d", (inp,), out, p, attrs)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if m.running_mean is None or m.running_var is None:
            raise UnsupportedOpError(f"module {name!r}: BatchNorm without running statistics")
        c = m.num_features
        params = {
            "weight": p.get("weight", torch.ones(c)),
            "bias": p.get("bias", torch.zeros(c)),
            "running_mean": m.running_mean.detach().clone(),
            "running_var": m.running_var.detach().clone(),
        }
        return Op(name, "batchnorm", (inp,), out, params, {"eps": float(m.eps)})
    if isinstance(m, nn.LayerNorm):
        if len(m.normalized_shape) != 1:
            raise UnsupportedOpError(f"module {name!r}: LayerNorm over several axes")
        n = m.normalized_shape[0]
        params = {"weight": p.get("weight", torch.ones(n)), "bias": p.get("bias", torch.zeros(n))}
        return Op(name, "layernorm", (inp,), out, params, {"eps": float(m.eps)})
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)):
        return _pool_module(name, m, inp, out)
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        size = _ints(m.output_size, 1 if isinstance(m, nn.AdaptiveAvgPool1d) else 2)
        if any(s != 1 for s in size):
            raise UnsupportedOpError(f"module {name!r}: adaptive pooling to {size} (only 1)")
        return Op(name, "gap", (inp,), out, attrs={"keepdim": True})
    if isinstance(m, nn.Flatten):
        return Op(name, "flatten", (inp,), out)
    for cls, fn in _ACT_MODULES.items():
        if isinstance(m, cls):
            return Op(name, "act", (inp,), out, p, _act_attrs(fn, m))
    raise UnsupportedOpError(f"module {name!r}: {type(m).__name__} is not supported by the IR")


def _pool_module(name: str, m: nn.Module, inp: str, out: str) -> Op:
    d = 1 if isinstance(m, (nn.MaxPool1d, nn.AvgPool1d)) else 2
    kind = "maxpool" if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)) else "avgpool"
    a = m.__dict__
    if a.get("ceil_mode") or _ints(a.get("dilation", 1), d) != [1] * d:
        raise UnsupportedOpError(f"module {name!r}: pooling with ceil_mode or dilation")
    if kind == "avgpool" and (not a.get("count_include_pad", True) or a.get("divisor_override")):
        raise UnsupportedOpError(f"module {name!r}: avg pooling that excludes padding")
    stride = a.get("stride") or a["kernel_size"]
    attrs = {
        "kernel_size": _ints(a["kernel_size"], d),
        "stride": _ints(stride, d),
        "padding": _ints(a.get("padding", 0), d),
    }
    return Op(name, kind, (inp,), out, attrs=attrs)


def _act_attrs(
    fn: str, m: nn.Module | None = None, kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    src: dict[str, Any] = dict(m.__dict__) if m is not None else dict(kwargs or {})
    attrs: dict[str, Any] = {"fn": fn}
    if fn == "leaky_relu":
        attrs["negative_slope"] = float(src.get("negative_slope", 0.01))
    elif fn == "gelu":
        attrs["approximate"] = str(src.get("approximate", "none"))
    elif fn == "softplus":
        attrs["beta"], attrs["threshold"] = (
            float(src.get("beta", 1)),
            float(src.get("threshold", 20)),
        )
    return attrs


def _shape(node: torch.fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def import_module(module: nn.Module, input_shape: tuple[int, ...] | None = None) -> Net:
    """Trace `module` with torch.fx and translate each node into IR ops.

    Args:
        module: a model in eval-ready state (BatchNorm uses its running statistics).
        input_shape: shape of one input without the batch axis; inferred for nets that
            start with a Linear layer.
    """
    module = module.eval()
    shape = input_shape or _infer_input_shape(module)
    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception as e:  # fx raises many types for untraceable control flow
        raise LoadError(f"{type(module).__name__}: torch.fx cannot trace it ({e})") from None
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # ShapeProp prints failures itself
            ShapeProp(gm).propagate(torch.zeros((2, *shape)))
    except RuntimeError as e:
        raise LoadError(
            f"{type(module).__name__}: does not run on input shape {tuple(shape)} "
            f"({str(e).splitlines()[0]})"
        ) from None
    return _translate(gm, tuple(shape))


def _infer_input_shape(module: nn.Module) -> tuple[int, ...]:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            return (m.in_features,)
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            break
    raise LoadError(
        f"{type(module).__name__}: pass input_shape= (e.g. (1, 28, 28)) "
        "for networks that do not start with a Linear layer"
    )


def _translate(gm: torch.fx.GraphModule, input_shape: tuple[int, ...]) -> Net:
    modules = dict(gm.named_modules())
    alias: dict[str, str] = {}
    ops: list[Op] = []
    inp, out = "input", ""
    rnn = FxRnn(alias, ops, modules)

    def src(a: Any) -> str:
        if not isinstance(a, torch.fx.Node):
            raise UnsupportedOpError(f"constant operand {a!r} where a tensor was expected")
        return rnn.materialise(a.name)

    for node in gm.graph.nodes:
        if node.op in ("call_module", "call_function", "call_method") and rnn.handle(node):
            continue
        if node.op == "placeholder":
            alias[node.name] = inp
        elif node.op == "output":
            out = src(node.args[0])
        elif node.op == "call_module":
            op = _module_op(
                str(node.target), modules[str(node.target)], src(node.args[0]), node.name
            )
            if op is None:
                alias[node.name] = src(node.args[0])
            else:
                name = str(node.target).replace(".", "_")
                # A module called twice (a shared ReLU) gets fx's unique node name.
                op.name = node.name if any(o.name == name for o in ops) else name
                ops.append(op)
        elif node.op in ("call_function", "call_method"):
            if _shape(node) is None:  # shape arithmetic (x.size(0), x.shape[0]): no tensor
                continue
            op = _function_op(node, src)
            if op is None:
                alias[node.name] = src(node.args[0])
            else:
                ops.append(op)
        else:
            raise UnsupportedOpError(
                f"fx node {node.name!r}: {node.op} {node.target} "
                "(functional weights are not supported; use modules)"
            )
    return Net(
        ops=ops, input_shape=input_shape, input=inp, output=out, meta={"importer": "torch.fx"}
    )


def _function_op(node: torch.fx.Node, src: Callable[[Any], str]) -> Op | None:
    t, name = node.target, node.name
    if t in (operator.add, torch.add) or (node.op == "call_method" and t == "add"):
        return Op(name, "add", (src(node.args[0]), src(node.args[1])), name)
    if t in (operator.mul, torch.mul) or (node.op == "call_method" and t == "mul"):
        a, b = node.args
        const, x = (a, b) if not isinstance(a, torch.fx.Node) else (b, a)
        if isinstance(const, (int, float)):
            return Op(name, "scale", (src(x),), name, attrs={"factor": float(const)})
    if t in _ACT_FUNCTIONS or (node.op == "call_method" and t in _ACT_METHODS):
        fn = _ACT_FUNCTIONS[t] if callable(t) and t in _ACT_FUNCTIONS else _ACT_METHODS[str(t)]
        return Op(name, "act", (src(node.args[0]),), name, attrs=_act_attrs(fn, None, _kw(node)))
    if t in (torch.flatten,) or (node.op == "call_method" and t in ("flatten", "view", "reshape")):
        return _reshape_op(node, src)
    if t in (F.dropout, torch.dropout) or (node.op == "call_function" and t == F.dropout):
        return None
    raise UnsupportedOpError(f"fx node {name!r}: {getattr(t, '__name__', t)} is not supported")


def _kw(node: torch.fx.Node) -> dict[str, Any]:
    kw = dict(node.kwargs)
    if node.target in (F.leaky_relu,) and len(node.args) > 1:
        kw["negative_slope"] = node.args[1]
    return kw


def _reshape_op(node: torch.fx.Node, src: Callable[[Any], str]) -> Op | None:
    x = node.args[0]
    assert isinstance(x, torch.fx.Node)
    before, after = _shape(x), _shape(node)
    if before is None or after is None:
        raise UnsupportedOpError(f"fx node {node.name!r}: reshape with unknown shapes")
    if before == after:
        return None
    if len(after) == 2 and after[0] == before[0]:
        return Op(node.name, "flatten", (src(x),), node.name)
    raise UnsupportedOpError(
        f"fx node {node.name!r}: reshape {before} -> {after} "
        "(only flattening to (B, N) is supported)"
    )
