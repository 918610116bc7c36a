"""Write a `Net` as an ONNX file: the net's own forward, traced by torch's ONNX exporter.

The IR's ops are torch code (`Net.forward`), so tracing that forward gives an ONNX graph that
computes exactly the net's function, for every op kind, with a dynamic batch axis; its tensors
become the file's initializers.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn

from zoolens.errors import ZoolensError
from zoolens.ir.net import Net


class _NetModule(nn.Module):
    """`net` as an ``nn.Module`` holding its tensors as buffers."""

    def __init__(self, net: Net) -> None:
        super().__init__()
        self.net = net.clone()
        for i, op in enumerate(self.net.ops):
            for role, t in op.params.items():
                name = f"t{i}_{role}"
                self.register_buffer(name, t.detach().clone())
                op.params[role] = getattr(self, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def export_onnx(net: Net, path: str, opset: int = 17) -> None:
    """Write `net` to `path` (``.onnx``); input ``"input"`` with a dynamic batch axis, output
    ``"output"``. Token-id nets take int64 ids.

    Raises:
        ZoolensError: the exporter cannot trace an op (its message names it), or the net
            reads extra inputs (an attention mask), which the export does not write.
    """
    if net.extra_inputs:
        raise ZoolensError(
            f"{path}: a net reading {', '.join(net.extra_inputs)} is not exported to ONNX; "
            "export the net imported without inputs= (no mask)"
        )
    p = next(net.parameters(), None)
    dtype = p.dtype if p is not None else torch.float32
    tokens = any(op.kind == "embedding" for op in net.consumers(net.input))
    shape = (2, *net.input_shape)
    x = torch.zeros(shape, dtype=torch.long) if tokens else torch.zeros(shape, dtype=dtype)
    module = _NetModule(net).eval()
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (x,),
                path,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                opset_version=opset,
                do_constant_folding=False,  # keep BatchNorm apart (the net's own tensors)
                dynamo=False,
            )
    except Exception as e:  # the exporter raises many types
        first = (str(e).splitlines() or [""])[0][:200]
        raise ZoolensError(f"{path}: the net could not be exported to ONNX ({first})") from None
