"""Random torch models of every architecture family the IR supports, for tests."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

FAMILIES = ("mlp", "mlp_image", "cnn1d", "cnn2d", "cnn2d_bn", "resmlp_ln", "siren")
_ACTS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "prelu": nn.PReLU,
    "identity": nn.Identity,
}


class Sine(nn.Module):
    """SIREN activation ``sin(w0 * x)``."""

    def __init__(self, w0: float = 30.0) -> None:
        super().__init__()
        self.w0 = w0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)


class ResBlock(nn.Module):
    """Pre-LayerNorm residual MLP block: ``x + W2 act(W1 LN(x))``."""

    def __init__(self, width: int, hidden: int, act: str = "relu") -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)
        self.act = _ACTS[act]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.fc2(self.act(self.fc1(self.norm(x))))
        return out


def _ri(g: torch.Generator, lo: int, hi: int) -> int:
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def _pick(g: torch.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[_ri(g, 0, len(options) - 1)]


def random_module(family: str, generator: torch.Generator) -> tuple[nn.Module, tuple[int, ...]]:
    """A random torch model of `family` (see `FAMILIES`) and its input shape (no batch)."""
    g = generator
    if family == "mlp":
        dims = [_ri(g, 2, 6)] + [_ri(g, 3, 10) for _ in range(_ri(g, 1, 3))] + [_ri(g, 1, 4)]
        act = _pick(g, list(_ACTS))
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(_ACTS[act]())
        model: nn.Module = nn.Sequential(*layers)
        shape: tuple[int, ...] = (dims[0],)
    elif family == "mlp_image":  # each unit's weights are an image map wider than 3 x 3
        c_in, h, w = _ri(g, 1, 2), _ri(g, 4, 9), _ri(g, 4, 9)
        act = _pick(g, ("relu", "tanh", "gelu", "leaky_relu"))
        model = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * h * w, _ri(g, 3, 8)),
            _ACTS[act](),
            nn.LazyLinear(_ri(g, 2, 4)),
        )
        shape = (c_in, h, w)
    elif family == "cnn1d":
        c_in, c1, c2, length = _ri(g, 1, 3), _ri(g, 2, 6), _ri(g, 2, 6), _ri(g, 12, 20)
        act = _pick(g, ("relu", "tanh", "gelu", "leaky_relu"))
        model = nn.Sequential(
            nn.Conv1d(c_in, c1, 3, padding=1),
            _ACTS[act](),
            nn.MaxPool1d(2),
            nn.Conv1d(c1, c2, 3, stride=2),
            _ACTS[act](),
            nn.Flatten(),
            nn.LazyLinear(_ri(g, 2, 4)),
        )
        shape = (c_in, length)
    elif family in ("cnn2d", "cnn2d_bn"):
        bn = family == "cnn2d_bn"
        c_in, c1, c2, hw = _ri(g, 1, 3), _ri(g, 2, 6), _ri(g, 2, 6), _ri(g, 10, 14)
        act = _pick(g, ("relu", "leaky_relu")) if bn else _pick(g, ("relu", "tanh", "silu"))
        head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if bn else [nn.Flatten()]
        model = nn.Sequential(
            nn.Conv2d(c_in, c1, 3, padding=1),
            *([nn.BatchNorm2d(c1)] if bn else []),
            _ACTS[act](),
            nn.MaxPool2d(2) if bn else nn.AvgPool2d(2),
            nn.Conv2d(c1, c2, 3, dilation=1 + int(not bn)),
            *([nn.BatchNorm2d(c2)] if bn else []),
            _ACTS[act](),
            *head,
            nn.LazyLinear(_ri(g, 2, 4)),
        )
        shape = (c_in, hw, hw)
    elif family == "resmlp_ln":
        d_in, width = _ri(g, 2, 6), _ri(g, 3, 8)
        blocks = [ResBlock(width, _ri(g, 3, 10), _pick(g, ("relu", "gelu"))) for _ in range(2)]
        model = nn.Sequential(
            nn.Linear(d_in, width), *blocks, nn.LayerNorm(width), nn.Linear(width, _ri(g, 1, 4))
        )
        shape = (d_in,)
    elif family == "siren":
        d_in, w = 2, _ri(g, 4, 12)
        model = nn.Sequential(
            nn.Linear(d_in, w), Sine(30.0), nn.Linear(w, w), Sine(1.0), nn.Linear(w, 1)
        )
        shape = (d_in,)
    else:
        raise ValueError(f"unknown family {family!r}; known: {FAMILIES}")
    model(torch.zeros(2, *shape))  # materialise lazy layers
    randomise_(model, g, small=family == "siren")
    return model.eval(), shape


def randomise_(model: nn.Module, g: torch.Generator, small: bool = False) -> None:
    """Overwrite every parameter and BatchNorm statistic from `g` (non-trivial values)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 4
            scale = (0.1 if small else 1.0) / max(fan_in, 1) ** 0.5 * 1.5
            p.copy_(torch.randn(p.shape, generator=g) * scale)
            if name.endswith("norm.weight") or (p.dim() == 1 and "bn" in name):
                p.add_(1.0)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                if m.weight is not None:
                    m.weight.add_(1.0)
