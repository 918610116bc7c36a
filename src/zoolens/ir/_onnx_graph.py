"""An ONNX graph prepared for translation: nodes, folded constants, static shapes.

Private to `zoolens.ir.onnx_import`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from zoolens.errors import InvalidWeightsError, LoadError, UnsupportedOpError

#: Stands for the batch size inside folded shape constants (``Shape(x)[0]``).
BATCH = -(2**62)
Shape = tuple[int | None, ...]


class Unsupported(UnsupportedOpError):
    """ONNX ops (or op settings) the IR cannot represent; `op_types` names them."""

    def __init__(self, op_types: Iterable[str], detail: str) -> None:
        self.op_types = sorted(set(op_types))
        self.detail = detail
        super().__init__(f"{', '.join(self.op_types)}: {detail}")


@dataclass
class Node:
    """One ONNX node with decoded attributes (bytes → str, tensors → numpy)."""

    op_type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    @property
    def label(self) -> str:
        return f"{self.op_type} node {self.name or self.outputs[0]!r}"


def node_from_proto(proto: onnx.NodeProto) -> Node:
    attrs: dict[str, Any] = {}
    for a in proto.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        attrs[a.name] = v
    return Node(
        proto.op_type,
        proto.name,
        list(proto.input),
        list(proto.output),
        attrs,
        proto.domain if proto.domain not in ("", "ai.onnx") else "",
    )


def is_float(a: np.ndarray) -> bool:
    return bool(np.issubdtype(a.dtype, np.floating)) or a.dtype.name == "bfloat16"


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """A torch copy of `a` (bfloat16 goes through float32, which holds it exactly)."""
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.array(a, copy=True))


class OnnxGraph:
    """Nodes of one ONNX model with every constant-only computation folded away.

    Args:
        model: a loaded, checked model.
        path: the file it came from (for messages).
    """

    def __init__(self, model: onnx.ModelProto, path: str) -> None:
        g = model.graph
        self.path = path
        self.initializers = {t.name: self._read_initializer(t) for t in g.initializer}
        self.consts: dict[str, np.ndarray] = dict(self.initializers)
        self._check_finite(self.initializers)
        inputs = [i for i in g.input if i.name not in self.initializers]
        if len(inputs) != 1 or len(g.output) != 1:
            raise Unsupported(
                ["<graph>"],
                f"{len(inputs)} inputs and {len(g.output)} outputs "
                "(zoolens reads networks with one input and one output)",
            )
        self.input, self.output = inputs[0].name, g.output[0].name
        self.shapes = _infer_shapes(model)
        self.nodes = [node_from_proto(n) for n in g.node]
        self._fold_constants()

    # -- reading --------------------------------------------------------------------------
    def _read_initializer(self, t: onnx.TensorProto) -> np.ndarray:
        try:
            return numpy_helper.to_array(t)
        except Exception as e:  # external data missing, bad raw_data length, unknown dtype
            raise LoadError(
                f"{self.path}: cannot read tensor {t.name!r} "
                f"({_first_line(e)}); the file is corrupt or incomplete"
            ) from None

    def _check_finite(self, arrays: dict[str, np.ndarray]) -> None:
        for name, a in arrays.items():
            if not is_float(a):
                continue
            if not np.isfinite(a if a.dtype.kind == "f" else a.astype(np.float32)).all():
                raise InvalidWeightsError(
                    f"{self.path}: tensor {name!r} contains NaN or Inf values"
                )

    # -- queries --------------------------------------------------------------------------
    def shape(self, value: str) -> Shape | None:
        return self.shapes.get(value)

    def rank(self, value: str) -> int | None:
        s = self.shapes.get(value)
        return None if s is None else len(s)

    def consumers(self, value: str) -> list[Node]:
        return [n for n in self.nodes if value in n.inputs]

    def is_used(self, value: str) -> bool:
        return value == self.output or any(value in n.inputs for n in self.nodes)

    def scalar(self, value: str) -> float | None:
        """The value of a one-element float constant, else None."""
        a = self.consts.get(value)
        return float(a.reshape(-1)[0]) if a is not None and a.size == 1 and is_float(a) else None

    def replace(self, old: list[Node], new: Node) -> None:
        """Put `new` where the last node of `old` was and drop the others."""
        last = max(self.nodes.index(n) for n in old)
        self.nodes[last] = new
        ids = {id(n) for n in old}
        self.nodes = [n for n in self.nodes if id(n) not in ids or n is new]

    # -- constant folding -----------------------------------------------------------------
    def _fold_constants(self) -> None:
        defined = {self.input, *self.consts}
        kept: list[Node] = []
        for node in self.nodes:
            for v in node.inputs:
                if v and v not in defined:
                    raise LoadError(
                        f"{self.path}: {node.label} reads undefined value {v!r}; "
                        "the file is truncated or corrupt"
                    )
            defined.update(node.outputs)
            value = self._fold(node)
            if value is None:
                kept.append(node)
            else:
                self._check_finite({node.outputs[0]: value})
                self.consts[node.outputs[0]] = value
        if self.output not in defined:
            raise LoadError(f"{self.path}: graph output {self.output!r} is never computed")
        self.nodes = kept

    def _fold(self, node: Node) -> np.ndarray | None:
        if node.domain or len(node.outputs) != 1:
            return None
        if node.op_type == "Constant":
            return _constant_value(node)
        if node.op_type == "Shape":
            return self._fold_shape(node)
        args = [self.consts.get(v) for v in node.inputs if v]
        if not args or any(a is None for a in args):
            return None
        if node.op_type in _SHAPE_FOLDERS:
            return np.asarray(_SHAPE_FOLDERS[node.op_type](node, args))
        from zoolens.ir._onnx_elementwise import ELEMENTWISE, evaluate

        if node.op_type in ELEMENTWISE:
            out = evaluate(node, [torch.from_numpy(np.array(a)) for a in args])
            return out.numpy()
        return None

    def _fold_shape(self, node: Node) -> np.ndarray | None:
        s = self.shapes.get(node.inputs[0])
        if s is None or any(d is None for d in s[1:]) or node.attr("start") or node.attr("end"):
            return None
        return np.array([BATCH if s[0] is None else s[0], *s[1:]], dtype=np.int64)


def _constant_value(node: Node) -> np.ndarray | None:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            v = node.attrs[key]
            if key.startswith("value_float"):
                return np.asarray(v, dtype=np.float32)
            return np.asarray(v, dtype=np.int64) if key.startswith("value_int") else np.asarray(v)
    return None


def reduce_axes(node: Node, consts: dict[str, np.ndarray]) -> list[int] | None:
    """Axes of a Reduce* node: the ``axes`` attribute (opset < 18) or its second input."""
    if "axes" in node.attrs:
        return [int(a) for a in node.attrs["axes"]]
    if len(node.inputs) > 1 and node.inputs[1] in consts:
        return [int(a) for a in consts[node.inputs[1]].reshape(-1)]
    return None


def _axes(node: Node, args: list[np.ndarray]) -> list[int]:
    return [int(a) for a in (args[1].reshape(-1) if len(args) > 1 else node.attr("axes", []))]


def _unsqueeze(node: Node, args: list[np.ndarray]) -> np.ndarray:
    out, axes = args[0], _axes(node, args)
    rank = out.ndim + len(axes)
    for a in sorted(x % rank for x in axes):
        out = np.expand_dims(out, a)
    return out


def _squeeze(node: Node, args: list[np.ndarray]) -> np.ndarray:
    axes = _axes(node, args)
    return np.squeeze(args[0], axis=tuple(axes)) if axes else np.squeeze(args[0])


def _reshape(node: Node, args: list[np.ndarray]) -> np.ndarray:
    x, target = args[0], [int(d) for d in args[1].reshape(-1)]
    if not node.attr("allowzero", 0):
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return x.reshape(target)


def _cast(node: Node, args: list[np.ndarray]) -> np.ndarray:
    return args[0].astype(onnx.helper.tensor_dtype_to_np_dtype(int(node.attr("to"))))


_SHAPE_FOLDERS: dict[str, Any] = {
    "Identity": lambda node, args: args[0],
    "Cast": _cast,
    "Gather": lambda node, args: np.take(args[0], args[1], axis=int(node.attr("axis", 0))),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda node, args: np.concatenate(args, axis=int(node.attr("axis", 0))),
    "Reshape": _reshape,
    "Transpose": lambda node, args: np.transpose(args[0], node.attr("perm")),
}


def _infer_shapes(model: onnx.ModelProto) -> dict[str, Shape]:
    """Static shape of every value ONNX shape inference can tell; symbolic dims → None."""
    with contextlib.suppress(Exception):  # best effort: exporters store most shapes anyway
        model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    shapes: dict[str, Shape] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = tuple(
                d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim
            )
    return shapes


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]
