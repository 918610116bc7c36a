"""Every float weight an ONNX file holds, also inside ``If``/``Loop``/``Scan`` subgraphs.

Private to `zoolens.ir.onnx_import`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from zoolens.errors import LoadError
from zoolens.ir._onnx_graph import is_float, to_tensor


def file_weights(model: onnx.ModelProto, path: str = "") -> dict[str, torch.Tensor]:
    """Float initializers and non-scalar float ``Constant`` tensors of every graph of
    `model`, in file order; a subgraph's are named ``<node>/<attribute>/<name>``.

    Raises:
        LoadError: a tensor cannot be read.
    """
    out: dict[str, torch.Tensor] = {}
    for name, t in _tensors(model.graph, ""):
        try:
            a = numpy_helper.to_array(t)
        except Exception as e:  # external data missing, bad raw_data length, unknown dtype
            raise LoadError(
                f"{path}: cannot read tensor {name!r} ({e}); the file is corrupt"
            ) from None
        if is_float(a):
            out[name] = to_tensor(a)
    return out


def _tensors(g: onnx.GraphProto, prefix: str) -> Iterator[tuple[str, onnx.TensorProto]]:
    for t in g.initializer:
        yield prefix + t.name, t
    for node in g.node:
        if node.op_type == "Constant" and not node.domain:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None and int(np.prod(value.dims, dtype=np.int64)) > 1:
                yield prefix + node.output[0], value
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for i, sub in enumerate(subs):
                tag = attr.name if len(subs) == 1 else f"{attr.name}[{i}]"
                yield from _tensors(sub, f"{prefix}{node.name or node.output[0]}/{tag}/")
