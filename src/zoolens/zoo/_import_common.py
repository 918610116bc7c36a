"""Helpers shared by the zoo importers (private)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoolens.errors import LoadError, UnsupportedOpError

Row = dict[str, Any]

_ACTS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leakyrelu": nn.LeakyReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def activation_module(name: str, where: str) -> nn.Module:
    if name.lower() not in _ACTS:
        raise UnsupportedOpError(
            f"{where}: activation {name!r} is not supported by the IR "
            f"(supported: {', '.join(_ACTS)})"
        )
    return _ACTS[name.lower()]()


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt / unsafe pickles
        raise LoadError(f"{path}: cannot read a weights-only torch state dict ({e})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise LoadError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}


class SequentialModel(nn.Module):
    """Layers applied in order, kept in ``module_list`` (the key prefix of the checkpoints)."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.module_list = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.module_list:
            x = layer(x)
        return x


def safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.") or "model"
