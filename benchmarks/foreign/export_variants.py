"""Do the foreign zoos' families load and embed whatever exporter wrote them?

    PYTHONPATH=src python benchmarks/foreign/export_variants.py [--encoder default]

Five small nets of the foreign zoos' families (gelu and tanh MLPs, relu and gelu pre-norm
residual MLPs with LayerNorm, a sine INR with ``sin(w0 · x)``), each exported by the TorchScript
exporter at its default opset, at opset 13 and at opset 20, and by the dynamo exporter. Prints,
per file, whether `zoolens.load_net(strict=True)` reads it, the largest output difference from
the torch module, and whether the encoder embeds it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _shapes
import _tasks

import zoolens

EXPORTERS = {
    "torchscript, default opset": {"dynamo": False},
    "torchscript, opset 13": {"dynamo": False, "opset_version": 13},
    "torchscript, opset 20": {"dynamo": False, "opset_version": 20},
    "dynamo": {"dynamo": True},
}


def _models() -> dict[str, tuple[torch.nn.Module, tuple[int, ...]]]:
    torch.manual_seed(0)
    return {
        "mlp-gelu": (_tasks.MLP(16, 2, "gelu"), (12,)),
        "mlp-tanh": (_tasks.MLP(16, 2, "tanh"), (12,)),
        "resmlp-relu-layernorm": (_tasks.ResMLP(16, 2, "relu"), (12,)),
        "resmlp-gelu-layernorm": (_tasks.ResMLP(16, 1, "gelu"), (12,)),
        "sine-inr-w0-30": (_shapes.SineINR(16, 2, 30.0), (2,)),
    }


def _export(model: torch.nn.Module, shape: tuple[int, ...], path: str, kw: dict) -> None:
    dyn = (
        {"dynamic_shapes": ({0: torch.export.Dim("batch")},)}
        if kw.get("dynamo")
        else {"dynamic_axes": {"x": {0: "batch"}, "y": {0: "batch"}}}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), (torch.zeros(2, *shape),), path, input_names=["x"],
            output_names=["y"], **dyn, **kw,
        )  # fmt: skip


def check(exporter: str, name: str, model, shape, encoder, tmp: str) -> str:
    path = os.path.join(tmp, f"{name}-{len(os.listdir(tmp))}.onnx")
    try:
        _export(model, shape, path, EXPORTERS[exporter])
    except Exception as e:
        return f"export failed: {type(e).__name__}: {e}"
    try:
        net = zoolens.load_net(path, strict=True)
        x = torch.randn(8, *shape)
        with torch.no_grad():
            diff = float((net(x) - model(x)).abs().max())
        encoder.encode([net])
    except Exception as e:
        return f"FAILS: {type(e).__name__}: {e}"
    return f"loads, max abs output diff {diff:.1e}, embeds"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--encoder", default="default")
    args = ap.parse_args()
    torch.set_num_threads(1)
    encoder = zoolens.load_encoder(args.encoder)
    with tempfile.TemporaryDirectory() as tmp:
        for exporter in EXPORTERS:
            for name, (model, shape) in _models().items():
                result = check(exporter, name, model, shape, encoder, tmp)
                print(f"| {exporter} | {name} | {result} |")


if __name__ == "__main__":
    main()
