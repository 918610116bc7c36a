"""Architecture families of generated zoos, built only from modules the IR imports exactly.

Every model ends in a ``head`` Linear so fine-tuning can swap it for a new task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from zoolens.errors import ZoolensError

#: family → the input ranks it accepts (1: vectors, 2: (C, L) signals, 3: (C, H, W) images).
FAMILIES: dict[str, tuple[int, ...]] = {
    "mlp": (1, 2, 3),
    "resmlp": (1, 2, 3),
    "cnn1d": (2,),
    "cnn2d": (3,),
    "cnn2d-bn": (3,),
}


@dataclass(frozen=True)
class ArchSpec:
    """Everything that fixes a model's architecture.

    Args:
        family: one of `FAMILIES`.
        input_shape: one input without the batch axis.
        n_outputs: size of the head.
        depth: hidden layers (MLP), residual blocks (resmlp) or conv layers (CNNs).
        width: hidden units or channels.
        activation: relu, leaky_relu, gelu, tanh, sigmoid or sine.
        dropout: dropout probability after hidden layers (identity at eval time).
    """

    family: str
    input_shape: tuple[int, ...]
    n_outputs: int
    depth: int
    width: int
    activation: str
    dropout: float = 0.0

    def __str__(self) -> str:
        shape = "x".join(str(s) for s in self.input_shape)
        drop = f",dropout={self.dropout:g}" if self.dropout else ""
        return (
            f"{self.family}(in={shape},depth={self.depth},width={self.width},"
            f"act={self.activation}{drop},out={self.n_outputs})"
        )


class Sine(nn.Module):
    """``sin(w0 * x)``; traced by torch.fx into a ``scale`` op (if w0 != 1) and ``sin``."""

    def __init__(self, w0: float = 1.0) -> None:
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x) if self.w0 != 1.0 else torch.sin(x)


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for `name`."""
    table: dict[str, type[nn.Module]] = {
        "relu": nn.ReLU,
        "leaky_relu": nn.LeakyReLU,
        "gelu": nn.GELU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "sine": Sine,
    }
    if name not in table:
        raise ZoolensError(f"unknown activation {name!r}; known: {', '.join(table)}")
    return table[name]()


class ResidualBlock(nn.Module):
    """Pre-norm residual MLP block: ``x + fc2(act(fc1(norm(x))))``."""

    def __init__(self, width: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.act = make_activation(activation)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.fc2(self.drop(self.act(self.fc1(self.norm(x)))))
        return out


class ZooModel(nn.Module):
    """``head(body(x))``: the common shape of every generated classifier / regressor."""

    def __init__(self, body: nn.Sequential, head: nn.Linear) -> None:
        super().__init__()
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.body(x))
        return out


def _mlp_body(spec: ArchSpec, residual: bool) -> tuple[list[nn.Module], int]:
    layers: list[nn.Module] = [nn.Flatten()] if len(spec.input_shape) > 1 else []
    n_in = math.prod(spec.input_shape)
    if residual:
        layers.append(nn.Linear(n_in, spec.width))
        layers += [
            ResidualBlock(spec.width, spec.activation, spec.dropout) for _ in range(spec.depth)
        ]
        layers.append(nn.LayerNorm(spec.width))
        return layers, spec.width
    for _ in range(spec.depth):
        layers += [nn.Linear(n_in, spec.width), make_activation(spec.activation)]
        if spec.dropout:
            layers.append(nn.Dropout(spec.dropout))
        n_in = spec.width
    return layers, n_in


def _cnn_body(spec: ArchSpec) -> tuple[list[nn.Module], int]:
    dims = len(spec.input_shape) - 1
    conv = nn.Conv1d if dims == 1 else nn.Conv2d
    pool = nn.MaxPool1d if dims == 1 else nn.MaxPool2d
    kernel = 5 if dims == 1 else 3
    layers: list[nn.Module] = []
    channels, size = spec.input_shape[0], min(spec.input_shape[1:])
    for _ in range(spec.depth):
        layers.append(conv(channels, spec.width, kernel, padding=kernel // 2))
        if spec.family == "cnn2d-bn":
            layers.append(nn.BatchNorm2d(spec.width))
        layers.append(make_activation(spec.activation))
        if size >= 4:
            layers.append(pool(2))
            size //= 2
        channels = spec.width
    gap = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
    layers += [gap, nn.Flatten()]
    if spec.dropout:
        layers.append(nn.Dropout(spec.dropout))
    return layers, spec.width


def build_model(spec: ArchSpec) -> ZooModel:
    """A freshly initialised model for `spec` (uses torch's global RNG: seed it first).

    Args:
        spec: the architecture.

    Returns:
        A `ZooModel` whose ``head`` is the final Linear.
    """
    if spec.family not in FAMILIES:
        raise ZoolensError(f"unknown family {spec.family!r}; known: {', '.join(FAMILIES)}")
    if len(spec.input_shape) not in FAMILIES[spec.family]:
        raise ZoolensError(f"family {spec.family!r} cannot take inputs of shape {spec.input_shape}")
    if spec.family in ("mlp", "resmlp"):
        layers, n_feat = _mlp_body(spec, residual=spec.family == "resmlp")
    else:
        layers, n_feat = _cnn_body(spec)
    return ZooModel(nn.Sequential(*layers), nn.Linear(n_feat, spec.n_outputs))


def scale_init(model: nn.Module, factor: float) -> None:
    """Multiply every Linear / Conv weight by `factor` (biases and norms untouched)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                m.weight.mul_(factor)


def new_head(model: ZooModel, n_outputs: int) -> None:
    """Replace the head by a freshly initialised Linear with `n_outputs` outputs."""
    model.head = nn.Linear(model.head.in_features, n_outputs)


def load_from_net(model: nn.Module, net: object) -> None:
    """Copy the tensors of an imported `Net` back into `model` (the inverse of the import).

    The fx importer names each op after its module path with dots replaced by
    underscores, and the op's tensor roles are the module's parameter/buffer names.
    """
    from zoolens.ir import Net

    assert isinstance(net, Net)
    modules = {name.replace(".", "_"): m for name, m in model.named_modules()}
    with torch.no_grad():
        for op in net.ops:
            if not op.params:
                continue
            target = modules.get(op.name)
            if target is None:
                raise ZoolensError(f"op {op.name!r} has no module in {type(model).__name__}")
            state = dict(target.named_parameters(recurse=False))
            state.update(dict(target.named_buffers(recurse=False)))
            for role, tensor in op.params.items():
                state[role].copy_(tensor)
