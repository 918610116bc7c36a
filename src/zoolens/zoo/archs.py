"""Architecture families of generated zoos, built only from modules the IR imports exactly.

Every model ends in a ``head`` Linear so fine-tuning can swap it for a new task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

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
    # one activation each (`FIXED_ACTIVATION`), built as `mlp`
    "mlp-relu": (1, 2, 3),
    "mlp-tanh": (1, 2, 3),
    "mlp-gelu": (1, 2, 3),
    "mlp-sine": (1, 2, 3),
    # modern families (`zoolens.zoo.archs_modern`)
    "resnet": (3,),
    "mobilenet": (3,),
    "convnext": (3,),
    "vit": (3,),
    "mixer": (3,),
    "lstm": (2,),
    "gru": (2,),
    "bilstm": (2,),
    "bigru": (2,),
    "signal-transformer": (2,),
    "dwsep1d": (2,),
    "tf-encoder": (1,),
    "tf-decoder": (1,),
    "llama": (1,),
}

#: families whose input is token ids (they train only on tasks with a vocabulary).
TOKEN_FAMILIES = frozenset({"tf-encoder", "tf-decoder", "llama"})

#: families that fix their activation (the drawn one is replaced by this).
FIXED_ACTIVATION = {
    "mlp-relu": "relu",
    "mlp-tanh": "tanh",
    "mlp-gelu": "gelu",
    "mlp-sine": "sine",
    "convnext": "gelu",
    "vit": "gelu",
    "signal-transformer": "gelu",
    "tf-encoder": "gelu",
    "tf-decoder": "gelu",
    "llama": "silu",
}

_CLASSIC = ("mlp", "resmlp", "cnn1d", "cnn2d", "cnn2d-bn")


def accepts(family: str, rank: int, vocab: int) -> bool:
    """Whether `family` takes inputs of `rank` (token ids when `vocab` > 0)."""
    return rank in FAMILIES[family] and (family in TOKEN_FAMILIES) == (vocab > 0)


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
        vocab: number of token ids of a token input (0: real-valued input).
    """

    family: str
    input_shape: tuple[int, ...]
    n_outputs: int
    depth: int
    width: int
    activation: str
    dropout: float = 0.0
    vocab: int = 0

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

    def __init__(self, body: nn.Module, head: nn.Linear) -> None:
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


def build_model(spec: ArchSpec) -> nn.Module:
    """A freshly initialised model for `spec` (uses torch's global RNG: seed it first).

    Args:
        spec: the architecture.

    Returns:
        A model whose ``head`` is the final Linear (a `ZooModel` for the classic families).
    """
    if spec.family not in FAMILIES:
        raise ZoolensError(f"unknown family {spec.family!r}; known: {', '.join(FAMILIES)}")
    if not accepts(spec.family, len(spec.input_shape), spec.vocab):
        raise ZoolensError(f"family {spec.family!r} cannot take inputs of shape {spec.input_shape}")
    if spec.family.startswith("mlp-"):
        spec = replace(spec, family="mlp", activation=FIXED_ACTIVATION[spec.family])
    if spec.family not in _CLASSIC:
        from zoolens.zoo.archs_modern import build_modern  # it imports this module

        return build_modern(spec)
    if spec.family in ("mlp", "resmlp"):
        layers, n_feat = _mlp_body(spec, residual=spec.family == "resmlp")
    else:
        layers, n_feat = _cnn_body(spec)
    return ZooModel(nn.Sequential(*layers), nn.Linear(n_feat, spec.n_outputs))


def scale_init(model: nn.Module, factor: float) -> None:
    """Multiply every Linear / Conv weight by `factor` (biases and norms untouched)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)):
                m.weight.mul_(factor)


def new_head(model: nn.Module, n_outputs: int) -> None:
    """Replace the head by a freshly initialised Linear with `n_outputs` outputs."""
    head = model.head
    assert isinstance(head, nn.Linear)
    model.head = nn.Linear(head.in_features, n_outputs)


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
