"""Rewrites of multi-node ONNX spellings into the single ONNX op they stand for.

* ``MatMul(x, W) [+ Add(b)]`` with constant ``W`` → ``Gemm`` (``transB=0``).
* LayerNorm as exported for opsets < 17 (``ReduceMean, Sub, Pow, ReduceMean, Add eps, Sqrt,
  Div[, Mul w][, Add b]``) → ``LayerNormalization``.
* ``Unsqueeze → ReduceMean(all spatial axes, keepdims) → Squeeze`` (the dynamo exporter's
  ``AdaptiveAvgPool1d(1)``) → ``GlobalAveragePool``.

Private to `zoolens.ir.onnx_import`.
"""

from __future__ import annotations

import numpy as np

from zoolens.ir._onnx_graph import Node, OnnxGraph, Unsupported, reduce_axes


def rewrite(graph: OnnxGraph) -> None:
    """Apply every rewrite to `graph` in place."""
    for node in [n for n in graph.nodes if n.op_type == "ReduceMean"]:
        if node in graph.nodes:
            _fuse_layernorm(graph, node)
    for node in [n for n in graph.nodes if n.op_type == "MatMul"]:
        _matmul_to_gemm(graph, node)
    for node in [n for n in graph.nodes if n.op_type == "Unsqueeze"]:
        _fuse_unsqueezed_mean(graph, node)


def _sole(graph: OnnxGraph, value: str, op_type: str) -> Node | None:
    """The only consumer of `value` if it has type `op_type` and `value` is no graph output."""
    users = graph.consumers(value)
    if len(users) == 1 and users[0].op_type == op_type and value != graph.output:
        return users[0]
    return None


def _other(node: Node, value: str) -> str:
    """The input of binary `node` that is not `value`."""
    a, b = node.inputs[:2]
    return b if a == value else a


def _last_axis(graph: OnnxGraph, node: Node, x: str) -> bool:
    axes, rank = reduce_axes(node, graph.consts), graph.rank(x)
    if axes is None or len(axes) != 1 or not node.attr("keepdims", 1):
        return False
    return axes[0] == -1 or (rank is not None and axes[0] == rank - 1)


def _fuse_layernorm(graph: OnnxGraph, mean: Node) -> None:
    x = mean.inputs[0]
    sub = _sole(graph, mean.outputs[0], "Sub")
    if not _last_axis(graph, mean, x) or sub is None or sub.inputs != [x, mean.outputs[0]]:
        return
    d = sub.outputs[0]
    users = {n.op_type: n for n in graph.consumers(d)}
    if set(users) != {"Pow", "Div"} or len(graph.consumers(d)) != 2:
        return
    chain = _variance_chain(graph, users["Pow"], d)
    if chain is None or chain[-1] is not users["Div"] or users["Div"].inputs[0] != d:
        return
    eps = graph.scalar(_other(chain[2], chain[1].outputs[0]))
    if eps is None:
        return
    nodes, last = [mean, sub, *chain], chain[-1]
    weight = bias = None
    mul = _sole(graph, last.outputs[0], "Mul")
    if mul is not None and _is_vector(graph, _other(mul, last.outputs[0])):
        weight, last = _other(mul, last.outputs[0]), mul
        nodes.append(mul)
    add = _sole(graph, last.outputs[0], "Add")
    if add is not None and _is_vector(graph, _other(add, last.outputs[0])):
        bias, last = _other(add, last.outputs[0]), add
        nodes.append(add)
    inputs = [x, weight or _ones(graph, mean, x, 1.0), bias or _ones(graph, mean, x, 0.0)]
    graph.replace(
        nodes,
        Node(
            "LayerNormalization",
            mean.name,
            inputs,
            list(last.outputs),
            {"axis": -1, "epsilon": eps},
        ),
    )


def _variance_chain(graph: OnnxGraph, pow_: Node, d: str) -> list[Node] | None:
    """``Pow(d, 2) → ReduceMean → Add eps → Sqrt → Div``, or None."""
    if pow_.inputs[0] != d or graph.scalar(pow_.inputs[1]) != 2.0:
        return None
    var = _sole(graph, pow_.outputs[0], "ReduceMean")
    if var is None or not _last_axis(graph, var, pow_.outputs[0]):
        return None
    add = _sole(graph, var.outputs[0], "Add")
    sqrt = _sole(graph, add.outputs[0], "Sqrt") if add else None
    div = _sole(graph, sqrt.outputs[0], "Div") if sqrt else None
    if add is None or sqrt is None or div is None or div.inputs[1] != sqrt.outputs[0]:
        return None
    return [pow_, var, add, sqrt, div]


def _is_vector(graph: OnnxGraph, value: str) -> bool:
    a = graph.consts.get(value)
    return a is not None and a.ndim == 1


def _ones(graph: OnnxGraph, node: Node, x: str, fill: float) -> str:
    shape = graph.shape(x)
    if not shape or shape[-1] is None:
        raise Unsupported(["LayerNormalization"], f"{node.label}: unknown feature size")
    name = f"{node.name or x}::{'weight' if fill else 'bias'}"
    graph.consts[name] = np.full(shape[-1], fill, dtype=np.float32)
    return name


def _matmul_to_gemm(graph: OnnxGraph, mm: Node) -> None:
    x, w = mm.inputs
    if w not in graph.consts or graph.consts[w].ndim != 2 or x in graph.consts:
        return  # left to the translator, which reports it
    if graph.rank(x) != 2:
        raise Unsupported(
            ["MatMul"],
            f"{mm.label}: matrix product on a rank-{graph.rank(x)} "
            "value (the IR applies Linear layers to (B, F) values only)",
        )
    nodes, inputs, out = [mm], [x, w], mm.outputs
    add = _sole(graph, mm.outputs[0], "Add")
    if add is not None:
        b = _other(add, mm.outputs[0])
        bias = graph.consts.get(b)
        if bias is not None and bias.size == graph.consts[w].shape[1] and bias.ndim <= 2:
            nodes, inputs, out = [mm, add], [x, w, b], add.outputs
    graph.replace(nodes, Node("Gemm", mm.name, inputs, list(out), {"transB": 0}))


def _fuse_unsqueezed_mean(graph: OnnxGraph, unsq: Node) -> None:
    x = unsq.inputs[0]
    rank, axes = graph.rank(x), reduce_axes(unsq, graph.consts)
    mean = _sole(graph, unsq.outputs[0], "ReduceMean")
    if rank is None or axes is None or len(axes) != 1 or mean is None:
        return
    axis = axes[0] % (rank + 1)
    mean_axes = reduce_axes(mean, graph.consts)
    squeeze = _sole(graph, mean.outputs[0], "Squeeze")
    if squeeze is None or mean_axes is None or not mean.attr("keepdims", 1) or axis < 2:
        return
    if sorted(a % (rank + 1) for a in mean_axes) != list(range(2, rank + 1)):
        return
    squeeze_axes = reduce_axes(squeeze, graph.consts)
    if squeeze_axes is None or [a % (rank + 1) for a in squeeze_axes] != [axis]:
        return
    graph.replace(
        [unsq, mean, squeeze], Node("GlobalAveragePool", mean.name, [x], list(squeeze.outputs))
    )
