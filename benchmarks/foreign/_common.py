"""Shared bits of the foreign-zoo generator: ONNX export, manifest writing, seeding.

Imports no zoolens code on purpose: the foreign zoos must be made independently of the
project's own zoo generator (issue 25, protocol (a)).
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Sequence

import torch
from torch import nn

#: The exporter and opset the project's tests use (`torch.onnx.export(..., dynamo=False)`,
#: the TorchScript exporter at its default opset).
EXPORT_KW = {"dynamo": False}

MANIFEST_COLUMNS = (
    "id",
    "path",
    "task",
    "family",
    "arch",
    "activation",
    "seed",
    "hparams",
    "test_accuracy",
    "psnr",
    "input_shape",
    "n_outputs",
)


def export_onnx(model: nn.Module, input_shape: Sequence[int], path: str) -> None:
    """Write `model` (eval mode, float32) to `path` as ONNX with a dynamic batch axis."""
    model = model.eval()
    x = torch.zeros(2, *input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            path,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            **EXPORT_KW,
        )


def write_manifest(rows: list[dict[str, object]], out_dir: str) -> str:
    """`rows` as ``out_dir/manifest.csv`` (columns `MANIFEST_COLUMNS`)."""
    path = os.path.join(out_dir, "manifest.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow({k: row.get(k, "") for k in MANIFEST_COLUMNS})
    return path


def act_module(name: str) -> nn.Module:
    """The activation module of a name: relu, tanh or gelu."""
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}[name]()
