"""Translation of ONNX LSTM/GRU, the transposes around them, Concat, Split and Slice.

Private to `zoolens.ir.onnx_import`. ONNX's recurrent ops are time-major (``(T, B, F)`` in,
``(T, D, B, H)`` out); the IR holds sequences as ``(B, F, T)``. A *view* records how an
ONNX value is laid out relative to an IR value: one letter per ONNX axis, the IR axis it
is (``"0"``, ``"1"``, ``"2"``), ``"s"`` for a size-1 axis the IR value lacks, or ``"D"``,
``"H"`` for the direction and hidden axes that a bidirectional RNN's units split into. Transpose,
Squeeze and a squeezing Reshape only change the letters; an op that needs the IR layout
(an LSTM, the last time step) reads through them, and any other op reads a view through
a ``transpose`` op, or fails if the batch axis is not first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from zoolens.ir._onnx_graph import BATCH, Node, Unsupported, to_tensor
from zoolens.ir.ops import Op

if TYPE_CHECKING:
    from zoolens.ir._onnx_ops import Builder

#: ONNX gate blocks in PyTorch's order (LSTM: ONNX i, o, f, c → torch i, f, g, o;
#: GRU: ONNX z, r, h → torch r, z, n).
_GATE_ORDER = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2)}
_DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


def _fail(node: Node, why: str) -> Unsupported:
    return Unsupported([node.op_type], f"{node.label}: {why}")


def _view(b: Builder, v: str) -> tuple[str, str]:
    """(IR value, letters) of ONNX value `v`; a plain value is its IR value, letters 0..r-1."""
    if v in b.views:
        return b.views[v]
    rank = b.graph.rank(v) or 2
    return b.value(v), "".join(str(i) for i in range(rank))


def materialise(b: Builder, v: str) -> str:
    """IR value equal to ONNX value `v` (a ``transpose`` op if its letters ask for one)."""
    ir, letters = b.views[v]
    if not letters.isdigit() or letters[:1] != "0":
        raise Unsupported(
            ["<sequence>"],
            f"value {v!r} is time-major or has a size-1 direction axis (layout {letters!r}); "
            "the IR reads it only through an LSTM/GRU or its last time step",
        )
    if letters == "".join(sorted(letters)):
        return ir
    name = b._unique(f"{ir}_t")
    perm = [int(c) - 1 for c in letters[1:]]
    b.ops.append(Op(name, "transpose", (ir,), name, {}, {"perm": perm}))
    b.names[v] = name
    return name


def _sequence(b: Builder, v: str, order: str, node: Node) -> str:
    """IR value ``(B, F, T)`` of ONNX value `v`, whose axes are ``order`` (e.g. ``"tbf"``)."""
    ir, letters = _view(b, v)
    if len(letters) != 3:
        raise _fail(node, f"input {v!r} of layout {letters!r} is not a (T, B, F) sequence")
    at = {c: letters[order.index(c)] for c in "bft"}
    if at["b"] != "0":
        raise _fail(node, f"input {v!r}: the batch axis is not the IR value's first")
    if (at["f"], at["t"]) == ("1", "2"):
        return ir
    name = b._unique(f"{ir}_bft")
    b.ops.append(Op(name, "transpose", (ir,), name, {}, {"perm": [1, 0]}))
    return name


def _rnn(b: Builder, node: Node) -> None:
    kind = node.op_type
    direction = node.attr("direction", "forward")
    if direction == "reverse" or node.attr("clip") is not None:
        raise _fail(node, "direction=reverse or clip is not supported")
    acts = [str(a) for a in node.attr("activations", _DEFAULT_ACTS[kind] * 2)]
    if acts[: len(_DEFAULT_ACTS[kind])] != _DEFAULT_ACTS[kind] or len(set(acts)) > 2:
        raise _fail(node, f"activations {node.attr('activations')} (need the defaults)")
    if node.attr("input_forget", 0) or (kind == "GRU" and not node.attr("linear_before_reset", 0)):
        raise _fail(node, "input_forget=1 or linear_before_reset=0 (not torch's cell)")
    if any(b.has(node, i) for i in (4, 7)):
        raise _fail(node, "sequence_lens or peephole weights are not supported")
    for i in (5, 6):
        if b.has(node, i) and np.any(b.const(node, i)):
            raise _fail(node, f"input {i}: a non-zero initial state is not supported")
    for extra in node.outputs[1:]:
        if extra and b.graph.is_used(extra):
            raise _fail(node, f"output {extra!r} (final state) is used; read Y instead")
    layout = int(node.attr("layout", 0))
    src = _sequence(b, node.inputs[0], "btf" if layout else "tbf", node)
    hint = b._hint(node)
    names = [_cell(b, node, src, d, hint) for d in range(2 if direction == "bidirectional" else 1)]
    if len(names) == 1:
        b.views[node.outputs[0]] = (names[0], "0s21" if layout else "2s01")  # Y: (T, D, B, H)
        return
    both = b._unique(f"{hint}_both")
    b.ops.append(Op(both, "concat", tuple(names), both))
    b.views[node.outputs[0]] = (both, "02DH" if layout else "2D0H")  # units split in (D, H)


def _cell(b: Builder, node: Node, src: str, d: int, hint: str) -> str:
    """Append the IR op of direction `d` (0 forward, 1 backward) of `node`; its name."""
    order = _GATE_ORDER[node.op_type]
    w, r = b.const(node, 1)[d], b.const(node, 2)[d]  # (G*H, F), (G*H, H)
    h = r.shape[1]

    def torch_order(a: np.ndarray) -> np.ndarray:
        blocks = a.reshape(len(order), h, *a.shape[1:])
        return np.ascontiguousarray(np.concatenate([blocks[k] for k in order]))

    params = {"weight_ih": torch_order(w), "weight_hh": torch_order(r)}
    if b.has(node, 3):
        bias = b.const(node, 3)[d]  # (2*G*H,)
        params["bias_ih"] = torch_order(bias[: len(order) * h])
        params["bias_hh"] = torch_order(bias[len(order) * h :])
    name = b._unique(hint if d == 0 else f"{hint}_reverse")
    tensors = {k: to_tensor(a) for k, a in params.items()}
    attrs = {"reverse": True} if d else {}
    b.ops.append(Op(name, node.op_type.lower(), (src,), name, tensors, attrs))
    return name


def _transpose(b: Builder, node: Node) -> None:
    ir, letters = _view(b, node.inputs[0])
    perm = [int(p) for p in node.attr("perm", range(len(letters))[::-1])]
    b.views[node.outputs[0]] = (ir, "".join(letters[p] for p in perm))


def _squeeze_axes(b: Builder, node: Node, rank: int) -> list[int]:
    axes = node.attr("axes")
    if axes is None and b.has(node, 1):
        axes = b.const(node, 1).reshape(-1)
    if axes is None:
        raise _fail(node, "squeeze without axes")
    return sorted(int(a) % rank for a in axes)


def _squeeze(b: Builder, node: Node) -> None:
    if node.inputs[0] not in b.views:
        raise _fail(node, "squeeze of a network value (only of an LSTM/GRU output)")
    ir, letters = b.views[node.inputs[0]]
    axes = _squeeze_axes(b, node, len(letters))
    if any(letters[a] != "s" for a in axes):
        raise _fail(node, f"squeezes axes {axes} of layout {letters!r} (not size-1 axes)")
    _set_view(b, node.outputs[0], ir, "".join(c for i, c in enumerate(letters) if i not in axes))


def _set_view(b: Builder, v: str, ir: str, letters: str) -> None:
    if letters == "".join(str(i) for i in range(len(letters))):
        b.names[v] = ir  # the IR value itself
    else:
        b.views[v] = (ir, letters)


def _reshape_view(b: Builder, node: Node) -> bool:
    """A Reshape that only drops size-1 axes of a view or joins its direction and hidden
    axes (``D, H`` → units); returns whether it was one."""
    if node.inputs[0] not in b.views:
        return False
    ir, letters = b.views[node.inputs[0]]
    shape = b.graph.shape(node.inputs[0]) or (None,) * len(letters)
    kept: list[tuple[str, int | None]] = []
    for c, d in zip(letters, shape, strict=True):
        if c == "H" and kept and kept[-1][0] == "D":  # (D, H) → the concat's units
            prev = kept.pop()[1]
            kept.append(("1", None if prev is None or d is None else prev * d))
        elif c != "s":
            kept.append((c, d))
    target = [int(t) for t in b.const(node, 1).reshape(-1)]
    new = "".join(c for c, _ in kept)
    if len(target) != len(kept) or target.count(-1) > 1 or new == letters:
        return False  # a real reshape: of the value in the IR layout, if it has one
    for t, (_, d) in zip(target, kept, strict=True):
        if t not in (-1, 0, BATCH) and d is not None and t != d:
            return False
    _set_view(b, node.outputs[0], ir, new)
    return True


def _gather(b: Builder, node: Node) -> None:
    v = node.inputs[0]
    if v not in b.views:
        raise _fail(node, "gather from a network value (only the last step of a sequence)")
    ir, letters = b.views[v]
    axis = int(node.attr("axis", 0)) % len(letters)
    idx = b.const(node, 1)
    n_steps = b.graph.shape(v)
    last = n_steps[axis] if n_steps is not None else None
    if (
        letters[axis] != "2"
        or idx.size != 1
        or int(idx.reshape(-1)[0]) not in (-1, last and last - 1)
    ):
        raise _fail(
            node,
            f"gather {idx.reshape(-1)[:4].tolist()} on axis {axis} of layout "
            f"{letters!r} (only the last time step of a sequence)",
        )
    name = b._unique(f"{ir}_last")
    b.ops.append(Op(name, "select", (ir,), name, attrs={"index": -1}))
    keep = "" if idx.ndim == 0 else "s"  # a 1-d index keeps a size-1 time axis
    rest = letters[:axis] + keep + letters[axis + 1 :]
    _set_view(b, node.outputs[0], name, rest)


def _concat(b: Builder, node: Node) -> None:
    rank = b.graph.rank(node.inputs[0])
    axis = int(node.attr("axis", 0))
    if rank is None or axis % rank != 1:
        raise _fail(node, f"concat along axis {axis} (the IR concatenates units, axis 1)")
    b.emit(node, "concat", inputs=list(node.inputs))


def _split(b: Builder, node: Node) -> None:
    shape = b.graph.shape(node.inputs[0])
    axis = int(node.attr("axis", 0))
    if shape is None or axis % len(shape) != 1 or shape[1] is None:
        raise _fail(node, f"split along axis {axis} (the IR splits units, axis 1)")
    n, outs = int(shape[1]), [o for o in node.outputs]
    if b.has(node, 1):
        sizes = [int(s) for s in b.const(node, 1).reshape(-1)]
    elif node.attr("split") is not None:
        sizes = [int(s) for s in node.attr("split")]
    else:
        size = -(-n // len(outs))
        sizes = [min(size, n - i * size) for i in range(len(outs))]
    src, start = b.value(node.inputs[0]), 0
    for out, size in zip(outs, sizes, strict=True):
        if out and b.graph.is_used(out):
            _emit_split(b, node, src, out, start, start + size)
        start += size


def _emit_split(b: Builder, node: Node, src: str, out: str, start: int, stop: int) -> None:
    name = b._unique(f"{b._hint(node)}_{start}")
    b.ops.append(Op(name, "split", (src,), name, {}, {"start": start, "stop": stop}))
    b.names[out] = name


def _slice(b: Builder, node: Node) -> None:
    shape = b.graph.shape(node.inputs[0])
    starts, ends = b.const(node, 1).reshape(-1), b.const(node, 2).reshape(-1)
    axes = b.const(node, 3).reshape(-1) if b.has(node, 3) else np.arange(len(starts))
    steps = b.const(node, 4).reshape(-1) if b.has(node, 4) else np.ones(len(starts))
    if shape is None or shape[1] is None or len(starts) != 1 or int(axes[0]) % len(shape) != 1:
        raise _fail(node, "slice of a network value other than along axis 1 (units)")
    n = int(shape[1])
    start, stop = (int(np.clip(s if s >= 0 else s + n, 0, n)) for s in (starts[0], ends[0]))
    if int(steps[0]) != 1 or stop <= start:
        raise _fail(node, f"slice {start}:{stop}:{int(steps[0])} of axis 1 (need step 1)")
    _emit_split(b, node, b.value(node.inputs[0]), node.outputs[0], start, stop)


def translators(
    base: dict[str, Callable[[Builder, Node], None]],
) -> dict[str, Callable[[Builder, Node], None]]:
    """The translators of this module; `base`'s Reshape handles non-sequence reshapes."""
    reshape = base["Reshape"]

    def _reshape(b: Builder, node: Node) -> None:
        if not _reshape_view(b, node):
            reshape(b, node)

    return {
        "LSTM": _rnn,
        "GRU": _rnn,
        "Transpose": _transpose,
        "Squeeze": _squeeze,
        "Reshape": _reshape,
        "Gather": _gather,
        "Concat": _concat,
        "Split": _split,
        "Slice": _slice,
    }


def is_zero_state(v: str, arrays: list[np.ndarray], readers: list[tuple[str, int]]) -> bool:
    """A value that changes with the batch size only in its shape, all zeros, read only as
    an LSTM/GRU's initial state (`readers`: (op type, input index) of each read)."""
    return (
        bool(readers)
        and all(t in _GATE_ORDER and i in (5, 6) for t, i in readers)
        and all(a.dtype.kind == "f" and not np.any(a) for a in arrays)
    )
