"""Evaluate every part of an ONNX graph that does not depend on the input's values.

Exporters spell shape arithmetic in many ways (``Shape → Gather → Unsqueeze → Concat`` for
``x.view(x.size(0), -1)``, ``Mod``/``Slice``/``Where`` for ``nn.Unflatten`` with a dynamic
batch, ``Cast``/``Range``/``ConstantOfShape`` ...). Instead of one rewrite per spelling, the
nodes whose outputs depend only on initializers, constants and the input *shape* are run
with onnx's reference evaluator at the real static dims for several batch sizes. A value equal
at every batch size becomes a constant; an integer vector that differs only in entries equal
to the batch size becomes a constant with `BATCH` in those entries (a batch-preserving shape).
Anything else that varies with the batch is refused, naming the op that computes it.
An ``If`` whose condition folds is replaced by the branch it takes, and folding goes on.

Private to `zoolens.ir.onnx_import`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from zoolens.ir._onnx_graph import BATCH, Shape, Unsupported
from zoolens.ir._onnx_rnn import is_zero_state

#: Batch sizes the static part is evaluated at when the file leaves the batch axis free
#: (three, so that ``B // 2`` or ``B % 2`` cannot pass for a constant).
BATCH_SIZES = (2, 3, 5)
#: Ops that read only the shape of their input, never its values.
SHAPE_ONLY = frozenset({"Shape", "Size"})
_RANDOM = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}
)


@dataclass
class Folded:
    """The graph once its static part is evaluated.

    Args:
        nodes: the nodes left to translate (those reaching the output), in order.
        consts: every folded value read by a kept node or the output (`BATCH` marks
            batch-size entries of shape vectors).
        shapes: static shape of each value (``None`` for the batch axis and unknown dims).
    """

    nodes: list[onnx.NodeProto]
    consts: dict[str, np.ndarray]
    shapes: dict[str, Shape] = field(default_factory=dict)


def fold(
    model: onnx.ModelProto,
    inits: dict[str, np.ndarray],
    input_name: str,
    input_shape: Shape | None,
    output: str,
) -> Folded:
    """Evaluate the static part of `model`'s graph (the part feeding `output`).

    Args:
        model: the checked model.
        inits: its initializers, read.
        input_name: the graph input the data path starts at.
        input_shape: its declared shape (``None`` dims are symbolic).
        output: the graph output to compute.

    Raises:
        Unsupported: a value that varies with the batch size other than as a shape's
            batch entry is read by an op the IR must translate.
    """
    nodes = _live(list(model.graph.node), output)
    batches = _batch_sizes(input_shape)
    consts = dict(inits)
    while True:
        runs = [_run(nodes, consts, model, input_name, input_shape, b) for b in batches]
        done = set.intersection(*(set(r) for r in runs)) if runs else set()
        kept = [n for n in nodes if not all(o in done for o in n.output if o)]
        folded = _compare(runs, batches, done, kept, nodes, output)
        consts.update(folded)
        inlined = _inline_static_ifs(kept, consts)
        if inlined is None:
            break
        nodes = _live(inlined, output)
    kept = _live(kept, output)
    shapes = _static_shapes(model, kept, consts, runs, batches, input_name, input_shape, output)
    return Folded(kept, consts, shapes)


def _batch_sizes(input_shape: Shape | None) -> tuple[int, ...]:
    if input_shape and input_shape[0] is not None:
        return (int(input_shape[0]),)
    return BATCH_SIZES


def _live(nodes: list[onnx.NodeProto], output: str) -> list[onnx.NodeProto]:
    """The nodes `output` depends on (including through subgraphs' outer-scope reads)."""
    needed, keep = {output}, []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
            needed.update(_outer_reads(node))
    return keep[::-1]


def _outer_reads(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs read (a superset of their outer-scope reads suffices)."""
    reads: set[str] = set()
    for attr in node.attribute:
        for g in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            for n in g.node:
                reads.update(i for i in n.input if i)
                reads.update(_outer_reads(n))
            reads.update(o.name for o in g.output)
    return reads


def _is_evaluable(node: onnx.NodeProto) -> bool:
    if node.domain not in ("", "ai.onnx") or node.op_type in _RANDOM:
        return False
    return not any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute
    )


def _run(
    nodes: list[onnx.NodeProto],
    consts: dict[str, np.ndarray],
    model: onnx.ModelProto,
    input_name: str,
    input_shape: Shape | None,
    batch: int,
) -> dict[str, np.ndarray]:
    """Values of every node computable without the input's values, at batch size `batch`."""
    from onnx.reference import ReferenceEvaluator

    opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    dims = None if input_shape is None or None in input_shape[1:] else input_shape[1:]
    inits = {t.name for t in model.graph.initializer}
    values: dict[str, np.ndarray] = {}
    oracle: dict[str, Shape] = {}
    oracle_at = -1

    def shape_of(v: str) -> tuple[int, ...] | None:
        nonlocal oracle, oracle_at
        if dims is None:
            return None
        if v == input_name:
            return (batch, *dims)  # type: ignore[arg-type]
        if (v not in oracle or None in oracle[v]) and oracle_at != len(values):
            folded = {k: a for k, a in consts.items() if k not in inits} | values
            oracle = infer_at(model, nodes, folded, input_name, (batch, *dims))
            oracle_at = len(values)
        s = oracle.get(v)
        return None if s is None or None in s else tuple(int(d) for d in s)  # type: ignore[arg-type]

    for node in nodes:
        if not _is_evaluable(node):
            continue
        feeds: dict[str, np.ndarray] = {}
        for i in (i for i in node.input if i):
            a = values.get(i, consts.get(i))
            if a is None and node.op_type in SHAPE_ONLY and (s := shape_of(i)) is not None:
                a = np.broadcast_to(np.zeros((), np.float32), s)  # a shape without data
            if a is None:
                break
            feeds[i] = a
        else:
            with contextlib.suppress(Exception):  # an op the evaluator lacks stays unfolded
                out = ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds)
                values.update(zip(node.output, (np.asarray(o) for o in out), strict=False))
    return values


def infer_at(
    model: onnx.ModelProto,
    nodes: list[onnx.NodeProto],
    values: dict[str, np.ndarray],
    input_name: str,
    input_shape: tuple[int | None, ...],
) -> dict[str, Shape]:
    """Shapes ONNX shape inference gives `nodes` with `values` (folded values, not the
    model's initializers) written in and the input fixed to `input_shape`; unknown dims are
    None. Large float initializers enter as typed inputs, not copies of their data."""
    g = model.graph
    body = [n for n in nodes if not all(o in values for o in n.output if o)]
    elem = {i.name: i.type.tensor_type.elem_type for i in g.input}
    inputs = [helper.make_tensor_value_info(input_name, elem[input_name], list(input_shape))]
    # np.array, not np.ascontiguousarray, which makes a 0-d index 1-d (and Gather's rank wrong)
    inits = [numpy_helper.from_array(np.array(a, order="C"), k) for k, a in values.items()]
    for t in g.initializer:
        if t.data_type in _FLOATS and np.prod(t.dims, dtype=np.int64) > 64:
            inputs.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        else:
            inits.append(t)
    outputs = [helper.make_value_info(o.name, onnx.TypeProto()) for o in g.output]
    m = helper.make_model(
        helper.make_graph(body, "shapes", inputs, outputs, inits),
        opset_imports=list(model.opset_import),
    )
    m.ir_version = model.ir_version
    with contextlib.suppress(Exception):  # best effort: a miss leaves a shape unknown
        m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    shapes: dict[str, Shape] = {input_name: tuple(input_shape)}
    for vi in [*m.graph.value_info, *m.graph.output]:
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = tuple(
                d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim
            )
    return shapes


_FLOATS = frozenset(
    {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
    }
)


def _compare(
    runs: list[dict[str, np.ndarray]],
    batches: tuple[int, ...],
    done: set[str],
    kept: list[onnx.NodeProto],
    nodes: list[onnx.NodeProto],
    output: str,
) -> dict[str, np.ndarray]:
    """Folded values that kept nodes (or the output) read, as constants."""
    read = {i for n in kept for i in [*n.input, *_outer_reads(n)]} | {output}
    producer = {o: n for n in nodes for o in n.output}
    out: dict[str, np.ndarray] = {}
    for v in sorted(read & done):
        arrays = [r[v] for r in runs]
        value = _batch_invariant(arrays, batches)
        readers = [(n.op_type, i) for n in kept for i, x in enumerate(n.input) if x == v]
        if value is None and is_zero_state(v, arrays, readers):
            value = arrays[0]  # zeros; the recurrent op's initial state has the input's batch
        if value is None:
            node = producer[v]
            raise Unsupported(
                [node.op_type],
                f"{node.op_type} node {node.name or v!r}: its output {v!r} changes with the "
                f"batch size ({_describe(arrays, batches)}), other than as the batch entry "
                "of a shape",
            )
        out[v] = value
    return out


def _batch_invariant(arrays: list[np.ndarray], batches: tuple[int, ...]) -> np.ndarray | None:
    first = arrays[0]
    if all(
        a.shape == first.shape and a.dtype == first.dtype and np.array_equal(a, first, True)
        for a in arrays[1:]
    ):
        return first
    if (
        first.ndim != 1
        or first.dtype.kind not in "iu"
        or any(a.shape != first.shape for a in arrays)
    ):
        return None
    stacked = np.stack([a.astype(np.int64) for a in arrays])  # (runs, n)
    same = (stacked == stacked[:1]).all(axis=0)
    is_batch = (stacked == np.asarray(batches)[:, None]).all(axis=0)
    if not (same | is_batch).all():
        return None
    return np.where(same, stacked[0], BATCH).astype(np.int64)


def _describe(arrays: list[np.ndarray], batches: tuple[int, ...]) -> str:
    def one(a: np.ndarray) -> str:
        return str(a.tolist()) if a.size <= 8 else f"shape {list(a.shape)}"

    return ", ".join(f"B={b}: {one(a)}" for b, a in zip(batches, arrays, strict=True))


def _inline_static_ifs(
    nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray]
) -> list[onnx.NodeProto] | None:
    """`nodes` with each ``If`` whose condition is constant replaced by its branch's nodes
    (branch initializers become constants); None when there is no such ``If``."""
    out: list[onnx.NodeProto] = []
    changed = False
    for node in nodes:
        cond = consts.get(node.input[0]) if node.op_type == "If" else None
        if cond is None or cond.size != 1:
            out.append(node)
            continue
        attrs = {a.name: a.g for a in node.attribute}
        branch = attrs["then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"]
        out += _inline(node, branch, consts)
        changed = True
    return out if changed else None


def _inline(
    node: onnx.NodeProto, branch: onnx.GraphProto, consts: dict[str, np.ndarray]
) -> list[onnx.NodeProto]:
    prefix = f"{node.name or node.output[0]}/"
    local = {t.name for t in branch.initializer} | {o for n in branch.node for o in n.output}

    def rename(v: str) -> str:
        return prefix + v if v in local else v

    for t in branch.initializer:
        consts[prefix + t.name] = numpy_helper.to_array(t)
    body: list[onnx.NodeProto] = []
    for n in branch.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        copy.ClearField("input")
        copy.ClearField("output")
        copy.input.extend(rename(i) if i else i for i in n.input)
        copy.output.extend(rename(o) if o else o for o in n.output)
        if copy.name:
            copy.name = prefix + copy.name
        body.append(copy)
    for src, dst in zip(branch.output, node.output, strict=True):
        body.append(helper.make_node("Identity", [rename(src.name)], [dst], name=f"{prefix}{dst}"))
    return body


def _static_shapes(
    model: onnx.ModelProto,
    nodes: list[onnx.NodeProto],
    consts: dict[str, np.ndarray],
    runs: list[dict[str, np.ndarray]],
    batches: tuple[int, ...],
    input_name: str,
    input_shape: Shape | None,
    output: str,
) -> dict[str, Shape]:
    """Shapes of the kept nodes' values: inferred at each batch size with the folded values
    filled in; a dim that differs between batch sizes is the batch axis (None)."""
    if input_shape is None or any(d is None for d in input_shape[1:]):
        return {}
    inits = {t.name for t in model.graph.initializer}
    per_batch = []
    for b, run in zip(batches, runs, strict=True):
        values = {k: run.get(k, v) for k, v in consts.items() if k not in inits}
        per_batch.append(infer_at(model, nodes, values, input_name, (b, *input_shape[1:])))
    merged: dict[str, Shape] = {}
    for v, s in per_batch[0].items():
        others = [p.get(v) for p in per_batch[1:]]
        if any(o is None or len(o) != len(s) for o in others):
            continue
        merged[v] = tuple(
            d if all(o[i] == d for o in others) else None  # type: ignore[index]
            for i, d in enumerate(s)
        )
    return merged


def live_inputs(model: onnx.ModelProto, inputs: list[str], output: str) -> list[str]:
    """The graph `inputs` that `output` depends on, in order."""
    reads = {i for n in _live(list(model.graph.node), output) for i in [*n.input, *_outer_reads(n)]}
    return [i for i in inputs if i in reads or i == output]
