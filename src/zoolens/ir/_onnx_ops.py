"""Translation of prepared ONNX nodes into IR ops (same kinds, attrs and params as fx_import).

Private to `zoolens.ir.onnx_import`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from zoolens.ir import _onnx_rnn
from zoolens.ir._onnx_elementwise import ELEMENTWISE, Regions, f32, match_activation
from zoolens.ir._onnx_graph import BATCH, Node, OnnxGraph, Unsupported, reduce_axes, to_tensor
from zoolens.ir.ops import Op


class Builder:
    """Walks the graph in order and appends one IR op per supported ONNX node (or region).

    Args:
        graph: the graph, constants folded and patterns rewritten.
    """

    def __init__(self, graph: OnnxGraph) -> None:
        self.graph = graph
        self.regions = Regions(graph)
        self.ops: list[Op] = []
        self.names: dict[str, str] = {graph.input: "input"}
        self._taken: set[str] = {"input"}
        self._failed: dict[str, Unsupported] = {}
        #: ONNX values held as a relayout of an IR value (`zoolens.ir._onnx_rnn`)
        self.views: dict[str, tuple[str, str]] = {}

    def build(self) -> tuple[list[Op], str]:
        """Returns: the ops in order and the IR name of the graph's output."""
        for node in self.graph.nodes:
            if not self.regions.is_absorbed(node):
                TRANSLATORS.get(node.op_type, _elementwise)(self, node)
        return self.ops, self.value(self.graph.output)

    # -- values ---------------------------------------------------------------------------
    def value(self, v: str) -> str:
        """IR name of ONNX value `v`, emitting the activation that computes it if needed."""
        if v in self.names:
            return self.names[v]
        if v in self.views:
            return _onnx_rnn.materialise(self, v)
        if v in self._failed:
            raise self._failed[v]
        if v not in self.regions.producer:
            raise Unsupported(["<constant>"], f"constant {v!r} is used as a network value")
        for u in [self.regions.root[v], *self.regions.ancestors(v)]:
            f = self.regions.function(v, u)
            match = None if f is None else match_activation(f, self.regions.scalars(v))
            if match is not None:
                n_ops, names = len(self.ops), dict(self.names)
                try:
                    return self._emit_activation(v, u, *match)
                except Unsupported:  # `u` itself is no activation: try the next split
                    self.ops, self.names = self.ops[:n_ops], names
        node = self.regions.producer[v]
        live = [i for i in node.inputs if i and i not in self.graph.consts]
        if node.op_type == "Add" and len(live) == 2:
            self.emit(node, "add", inputs=live)
            return self.names[v]
        self._failed[v] = Unsupported(
            self.regions.op_types(v),
            f"the elementwise ops computing {v!r} match no IR "
            "activation (relu, leaky_relu, prelu, gelu, silu, tanh, sigmoid, softplus, sin) or "
            "scaling by a constant",
        )
        raise self._failed[v]

    def _emit_activation(self, v: str, u: str, kind: str, attrs: dict[str, Any]) -> str:
        src = self.value(u)
        if kind == "act" and attrs["fn"] == "identity":
            self.names[v] = src
            return src
        name = self._unique(_node_hint(self.regions.producer[v]) or attrs.get("fn", kind))
        self.ops.append(Op(name, kind, (src,), name, attrs=attrs))
        self.names[v] = name
        return name

    def const(self, node: Node, i: int) -> np.ndarray:
        """Constant input `i` of `node`; Unsupported if it is computed at run time."""
        v = node.inputs[i] if i < len(node.inputs) else ""
        if v not in self.graph.consts:
            raise Unsupported(
                [node.op_type],
                f"{node.label}: input {i} ({v!r}) must be a "
                "constant (weights computed at run time are not supported)",
            )
        return self.graph.consts[v]

    def has(self, node: Node, i: int) -> bool:
        return i < len(node.inputs) and bool(node.inputs[i])

    # -- emitting -------------------------------------------------------------------------
    def emit(
        self,
        node: Node,
        kind: str,
        params: dict[str, np.ndarray] | None = None,
        attrs: dict[str, Any] | None = None,
        inputs: list[str] | None = None,
    ) -> None:
        """Append an op computing ``node.outputs[0]``; its other outputs must be unused."""
        for extra in node.outputs[1:]:
            if extra and self.graph.is_used(extra):
                raise Unsupported(
                    [node.op_type],
                    f"{node.label}: output {extra!r} is used "
                    "(training-mode outputs are not supported)",
                )
        srcs = tuple(self.value(i) for i in (inputs if inputs is not None else node.inputs[:1]))
        tensors = {k: to_tensor(np.ascontiguousarray(a)) for k, a in (params or {}).items()}
        name = self._unique(self._hint(node))
        self.ops.append(Op(name, kind, srcs, name, tensors, attrs or {}))
        self.names[node.outputs[0]] = name

    def alias(self, node: Node) -> None:
        """``node.outputs[0]`` is its first input unchanged."""
        self.names[node.outputs[0]] = self.value(node.inputs[0])

    def _hint(self, node: Node) -> str:
        w = node.inputs[1] if len(node.inputs) > 1 else ""
        if w.endswith(".weight") and w in self.graph.initializers:
            return w[: -len(".weight")]
        return _node_hint(node) or node.op_type.lower()

    def _unique(self, hint: str) -> str:
        base = re.sub(r"\W+", "_", hint).strip("_") or "op"
        name, k = base, 1
        while name in self._taken:
            name, k = f"{base}_{k}", k + 1
        self._taken.add(name)
        return name


def _node_hint(node: Node) -> str:
    """Module path of a TorchScript-exported node (``/blocks/0/Relu`` → ``blocks_0``), or the
    dynamo exporter's name without its ``node_`` prefix."""
    if node.name.startswith("/"):
        return "_".join(node.name.split("/")[1:-1])
    return node.name.removeprefix("node_")


def _fail(node: Node, why: str) -> Unsupported:
    return Unsupported([node.op_type], f"{node.label}: {why}")


def _ints(values: Any) -> list[int]:
    return [int(v) for v in values]


def _symmetric_pads(node: Node, d: int) -> list[int]:
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID"):
        raise _fail(node, f"auto_pad={auto_pad} (re-export with explicit padding)")
    pads = _ints(node.attr("pads", [0] * 2 * d)) if auto_pad == "NOTSET" else [0] * 2 * d
    if pads[:d] != pads[d:]:
        raise _fail(node, f"asymmetric padding {pads} (the IR pads both sides equally)")
    return pads[:d]


def _gemm(b: Builder, node: Node) -> None:
    if node.attr("transA", 0):
        raise _fail(node, "transA=1")
    w = b.const(node, 1)
    w = w if node.attr("transB", 0) else w.T  # (out, in)
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    params = {"weight": w * np.float32(alpha) if alpha != 1.0 else w}
    if b.has(node, 2):
        c = b.const(node, 2)
        if c.size not in (1, w.shape[0]) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
            raise _fail(node, f"bias of shape {list(c.shape)} (need one per output unit)")
        c = np.broadcast_to(c.reshape(-1), (w.shape[0],))
        params["bias"] = c * np.float32(beta) if beta != 1.0 else c
    b.emit(node, "linear", params)


def _conv(b: Builder, node: Node) -> None:
    w = b.const(node, 1)
    d = w.ndim - 2
    if d not in (1, 2):
        raise _fail(node, f"{d}-d convolution (the IR has 1-d and 2-d convolutions)")
    kernel = node.attr("kernel_shape")
    if kernel is not None and _ints(kernel) != list(w.shape[2:]):
        raise _fail(node, f"kernel_shape {kernel} disagrees with the weight {list(w.shape)}")
    attrs: dict[str, Any] = {
        "stride": _ints(node.attr("strides", [1] * d)),
        "padding": _symmetric_pads(node, d),
        "dilation": _ints(node.attr("dilations", [1] * d)),
    }
    if int(node.attr("group", 1)) != 1:
        attrs["groups"] = int(node.attr("group"))
    params = {"weight": w}
    if b.has(node, 2):
        params["bias"] = b.const(node, 2)
    b.emit(node, f"conv{d}d", params, attrs)


def _batchnorm(b: Builder, node: Node) -> None:
    if node.attr("training_mode", 0):
        raise _fail(node, "training_mode=1 (export the model in eval mode)")
    roles = ("weight", "bias", "running_mean", "running_var")
    params = {role: b.const(node, i + 1) for i, role in enumerate(roles)}
    b.emit(node, "batchnorm", params, {"eps": f32(node.attr("epsilon", 1e-5))})


def _layernorm(b: Builder, node: Node) -> None:
    rank, axis = b.graph.rank(node.inputs[0]), int(node.attr("axis", -1))
    if rank != 2 or axis not in (-1, 1):
        raise _fail(
            node,
            f"normalisation over axis {axis} of a rank-{rank} value "
            "(the IR normalises the features of (B, F) values)",
        )
    w = b.const(node, 1)
    bias = b.const(node, 2) if b.has(node, 2) else np.zeros_like(w)
    b.emit(
        node,
        "layernorm",
        {"weight": w.reshape(-1), "bias": bias.reshape(-1)},
        {"eps": f32(node.attr("epsilon", 1e-5))},
    )


def _prelu(b: Builder, node: Node) -> None:
    slope, rank = b.const(node, 1), b.graph.rank(node.inputs[0])
    if slope.size > 1:
        if rank is None or slope.ndim > rank:
            raise _fail(node, f"slope of shape {list(slope.shape)} on a value of unknown rank")
        aligned = (1,) * (rank - slope.ndim) + slope.shape
        if any(s != 1 for i, s in enumerate(aligned) if i != 1):
            raise _fail(node, f"slope of shape {list(slope.shape)} (need one per unit or one)")
    b.emit(node, "act", {"weight": slope.reshape(-1)}, {"fn": "prelu"})


def _flatten(b: Builder, node: Node) -> None:
    if int(node.attr("axis", 1)) != 1:
        raise _fail(node, f"axis={node.attr('axis')} (only flattening to (B, N) is supported)")
    b.emit(node, "flatten")


def _reshape(b: Builder, node: Node) -> None:
    target = [int(t) for t in b.const(node, 1).reshape(-1)]
    src = b.graph.shape(node.inputs[0])
    if src is None or any(s is None for s in src[1:]):
        raise _fail(node, "reshape of a value of unknown shape")
    rest = _batch_preserving(node, target, [int(s) for s in src[1:] if s is not None], src[0])
    shown = ["B" if t == BATCH else t for t in target]
    if rest is None:
        raise _fail(
            node,
            f"reshape {list(src)} -> {shown} does not keep the batch axis (the IR reshapes "
            "(B, ...) to (B, ...))",
        )
    if rest == list(src[1:]):
        b.alias(node)
    elif len(rest) == 1:
        b.emit(node, "flatten")
    else:
        b.emit(node, "reshape", attrs={"shape": rest})


def _batch_preserving(
    node: Node, target: list[int], dims: list[int], batch: int | None
) -> list[int] | None:
    """The non-batch sizes `target` asks for if it keeps the batch axis of a value of
    non-batch sizes `dims`, else None."""
    n = math.prod(dims)
    zero_copies = not node.attr("allowzero", 0)
    # ONNX: a 0 copies the input's size at the same position (target[i + 1] ← dims[i])
    rest = [
        dims[i] if d == 0 and zero_copies and i < len(dims) else d for i, d in enumerate(target[1:])
    ]
    if any(d == 0 for d in rest) or not target:
        return None
    if target[0] == -1 and -1 in rest:
        return None
    if not (
        target[0] in (-1, BATCH)
        or (target[0] == 0 and zero_copies)
        or (batch is not None and target[0] == batch)
    ):
        return None
    if rest.count(-1) > 1:
        return None
    known = math.prod(d for d in rest if d != -1)
    if -1 in rest:
        if known == 0 or n % known:
            return None
        rest[rest.index(-1)] = n // known
    return rest if math.prod(rest) == n else None


def _pool(b: Builder, node: Node) -> None:
    kernel = _ints(node.attr("kernel_shape", []))
    d = len(kernel)
    if d not in (1, 2) or node.attr("ceil_mode", 0):
        raise _fail(node, "pooling must be 1-d or 2-d without ceil_mode")
    if any(x != 1 for x in node.attr("dilations", [1] * d)):
        raise _fail(node, "dilated pooling is not supported")
    pads = _symmetric_pads(node, d)
    kind = "maxpool" if node.op_type == "MaxPool" else "avgpool"
    if kind == "avgpool" and any(pads) and not node.attr("count_include_pad", 0):
        raise _fail(node, "average pooling that excludes padding is not supported")
    attrs = {"kernel_size": kernel, "stride": _ints(node.attr("strides", [1] * d)), "padding": pads}
    b.emit(node, kind, attrs=attrs)


def _global_avg_pool(b: Builder, node: Node) -> None:
    b.emit(node, "gap", attrs={"keepdim": True})


def _reduce_mean(b: Builder, node: Node) -> None:
    rank, axes = b.graph.rank(node.inputs[0]), reduce_axes(node, b.graph.consts)
    if rank is None or axes is None or sorted(a % rank for a in axes) != list(range(2, rank)):
        raise _fail(
            node,
            f"mean over axes {axes} of a rank-{rank} value (only the mean over "
            "all spatial axes is supported)",
        )
    b.emit(node, "gap", attrs={"keepdim": bool(node.attr("keepdims", 1))})


def _dropout(b: Builder, node: Node) -> None:
    b.emit(node, "dropout")


def _elementwise(b: Builder, node: Node) -> None:
    if node.op_type not in ELEMENTWISE or node.domain:
        raise _fail(node, "no IR equivalent")
    live = [i for i in node.inputs if i and i not in b.graph.consts]
    if node.op_type == "Add" and len(live) == 2:
        b.emit(node, "add", inputs=live)
        return
    raise _fail(
        node,
        "elementwise op on a non-scalar constant or on two different values "
        "(the IR has residual Add and activations only)",
    )


TRANSLATORS: dict[str, Callable[[Builder, Node], None]] = {
    "Gemm": _gemm,
    "Conv": _conv,
    "BatchNormalization": _batchnorm,
    "LayerNormalization": _layernorm,
    "PRelu": _prelu,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "GlobalAveragePool": _global_avg_pool,
    "ReduceMean": _reduce_mean,
    "Dropout": _dropout,
}
TRANSLATORS.update(_onnx_rnn.translators(TRANSLATORS))
#: ONNX op types the translator knows (others make a file unsupported up front).
KNOWN_OPS = frozenset(TRANSLATORS) | ELEMENTWISE
