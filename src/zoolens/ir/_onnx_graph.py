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
    """Nodes of one ONNX model's data path with everything that does not depend on the
    input's values folded into constants (`zoolens.ir._onnx_fold`).

    Args:
        model: a loaded, checked model.
        path: the file it came from (for messages).
        output: the graph output to read (default: the first).
    """

    def __init__(self, model: onnx.ModelProto, path: str, output: str | None = None) -> None:
        from zoolens.ir._onnx_fold import fold

        g = model.graph
        self.path = path
        self.initializers = {t.name: self._read_initializer(t) for t in g.initializer}
        self._check_finite(self.initializers)
        names = [o.name for o in g.output]
        if output is not None and output not in names:
            raise LoadError(f"{path}: no graph output {output!r}; it has {', '.join(names)}")
        self.output = output or names[0]
        #: graph outputs besides the one read
        self.other_outputs = [n for n in names if n != self.output]
        self.shapes = _infer_shapes(model)
        self.input = self._data_input(model)
        folded = fold(model, self.initializers, self.input, self.shape(self.input), self.output)
        self._check_finite({k: a for k, a in folded.consts.items() if k not in self.initializers})
        self.consts: dict[str, np.ndarray] = {**self.initializers, **folded.consts}
        for v, s in folded.shapes.items():
            old = self.shapes.get(v)
            if (
                old is None
                or len(old) != len(s)
                or sum(d is None for d in s) <= sum(d is None for d in old)
            ):
                self.shapes[v] = s
        self.nodes = [node_from_proto(n) for n in folded.nodes]
        self._check_defined()

    def _data_input(self, model: onnx.ModelProto) -> str:
        """The one graph input the chosen output depends on."""
        from zoolens.ir._onnx_fold import live_inputs

        inputs = [i.name for i in model.graph.input if i.name not in self.initializers]
        used = live_inputs(model, inputs, self.output)
        if len(used) != 1:
            raise Unsupported(
                ["<graph>"],
                f"output {self.output!r} is computed from {len(used)} inputs "
                f"({', '.join(used) or 'none'}); zoolens reads networks with one input",
            )
        return used[0]

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

    def _check_defined(self) -> None:
        defined = {self.input, *self.consts}
        for node in self.nodes:
            for v in node.inputs:
                if v and v not in defined:
                    raise LoadError(
                        f"{self.path}: {node.label} reads undefined value {v!r}; "
                        "the file is truncated or corrupt"
                    )
            defined.update(node.outputs)
        if self.output not in defined:
            raise LoadError(f"{self.path}: graph output {self.output!r} is never computed")


def reduce_axes(node: Node, consts: dict[str, np.ndarray]) -> list[int] | None:
    """Axes of a Reduce* node: the ``axes`` attribute (opset < 18) or its second input."""
    if "axes" in node.attrs:
        return [int(a) for a in node.attrs["axes"]]
    if len(node.inputs) > 1 and node.inputs[1] in consts:
        return [int(a) for a in consts[node.inputs[1]].reshape(-1)]
    return None


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
