"""Small torch models, one per architecture family the IR supports, shared by the ir tests."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[int], nn.Module]] = {
    "relu": lambda n: nn.ReLU(),
    "tanh": lambda n: nn.Tanh(),
    "gelu": lambda n: nn.GELU(),
    "gelu_tanh": lambda n: nn.GELU(approximate="tanh"),
    "silu": lambda n: nn.SiLU(),
    "sigmoid": lambda n: nn.Sigmoid(),
    "leaky": lambda n: nn.LeakyReLU(0.1),
    "softplus": lambda n: nn.Softplus(),
    "softplus_beta": lambda n: nn.Softplus(beta=2.0),
    "prelu": lambda n: nn.PReLU(n),
    "prelu_shared": lambda n: nn.PReLU(),
}


class Siren(nn.Module):
    """SIREN: ``sin(30 * Wx + b)`` hidden layers."""

    def __init__(self) -> None:
        super().__init__()
        self.l0, self.l1, self.l2 = nn.Linear(2, 16), nn.Linear(16, 16), nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.sin(30 * self.l0(x))
        h = torch.sin(30 * self.l1(h))
        return self.l2(h)


class ResMLP(nn.Module):
    """Pre-norm residual MLP: ``h = h + gelu(fc(ln(h)))``, then LayerNorm and a head."""

    def __init__(self, width: int = 16, depth: int = 2) -> None:
        super().__init__()
        self.stem = nn.Linear(6, width)
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.fcs = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.acts = nn.ModuleList(nn.GELU() for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for ln, fc, act in zip(self.norms, self.fcs, self.acts, strict=True):
            h = h + act(fc(ln(h)))
        return self.head(self.norm(h))


class FlattenByView(nn.Module):
    """A CNN flattening with ``x.view(x.size(0), -1)`` instead of nn.Flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.act = nn.ReLU()
        self.fc = nn.Linear(3 * 6 * 6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv(x))
        return self.fc(h.view(h.size(0), -1))


def mlp(act: str) -> nn.Module:
    make = ACTIVATIONS[act]
    return nn.Sequential(nn.Linear(5, 16), make(16), nn.Linear(16, 16), make(16), nn.Linear(16, 3))


def mlp_mixed() -> nn.Module:
    """Every activation once, in one chain."""
    layers: list[nn.Module] = [nn.Linear(5, 12)]
    for make in ACTIVATIONS.values():
        layers += [make(12), nn.Linear(12, 12)]
    return nn.Sequential(*layers, nn.Linear(12, 3))


def _families() -> dict[str, Callable[[], tuple[nn.Module, tuple[int, ...]]]]:
    fams: dict[str, Callable[[], tuple[nn.Module, tuple[int, ...]]]] = {
        f"mlp_{a}": (lambda a=a: (mlp(a), (5,)))
        for a in ACTIVATIONS  # type: ignore[misc]
    }
    fams.update(
        {
            "mlp_mixed": lambda: (mlp_mixed(), (5,)),
            "mlp_nobias": lambda: (
                nn.Sequential(nn.Linear(5, 8, bias=False), nn.Tanh(), nn.Linear(8, 3, bias=False)),
                (5,),
            ),
            "mlp_bn": lambda: (
                nn.Sequential(
                    nn.Linear(5, 12),
                    nn.BatchNorm1d(12),
                    nn.ReLU(),
                    nn.Dropout(0.2),
                    nn.Linear(12, 3),
                ),
                (5,),
            ),
            "cnn1d": lambda: (
                nn.Sequential(
                    nn.Conv1d(2, 6, 3, padding=1),
                    nn.PReLU(6),
                    nn.MaxPool1d(2),
                    nn.Conv1d(6, 6, 3, stride=2, dilation=2, padding=2),
                    nn.Tanh(),
                    nn.AvgPool1d(2),
                    nn.Conv1d(6, 4, 3, padding=1),
                    nn.GELU(),
                    nn.AdaptiveAvgPool1d(1),
                    nn.Flatten(),
                    nn.Linear(4, 8),
                    nn.ReLU(),
                    nn.Linear(8, 3),
                ),
                (2, 32),
            ),
            "cnn2d": lambda: (
                nn.Sequential(
                    nn.Conv2d(1, 4, 3, padding=1),
                    nn.ReLU(),
                    nn.MaxPool2d(2),
                    nn.Conv2d(4, 6, 3, stride=2, padding=1),
                    nn.SiLU(),
                    nn.AvgPool2d(2),
                    nn.Flatten(),
                    nn.Linear(24, 3),
                ),
                (1, 16, 16),
            ),
            "cnn2d_bn": lambda: (
                nn.Sequential(
                    nn.Conv2d(1, 4, 3, padding=1),
                    nn.BatchNorm2d(4),
                    nn.ReLU(),
                    nn.MaxPool2d(3, stride=2, padding=1),
                    nn.Conv2d(4, 8, 3),
                    nn.BatchNorm2d(8),
                    nn.LeakyReLU(0.2),
                    nn.AdaptiveAvgPool2d(1),
                    nn.Flatten(),
                    nn.Linear(8, 3),
                ),
                (1, 10, 10),
            ),
            "cnn2d_view": lambda: (FlattenByView(), (1, 8, 8)),
            "resmlp_ln": lambda: (ResMLP(), (6,)),
            "siren": lambda: (Siren(), (2,)),
        }
    )
    return fams


FAMILIES = _families()
#: Families whose ONNX export keeps every layer (no BatchNorm folding, no Dropout), so the
#: ONNX importer must give exactly the fx importer's ops.
SAME_OPS_AS_FX = tuple(f for f in FAMILIES if f not in ("mlp_bn", "cnn2d_bn"))


def build(family: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    """The model of `family` with random weights (and BatchNorm statistics), in eval mode."""
    torch.manual_seed(seed)
    model, shape = FAMILIES[family]()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))
            elif isinstance(m, (nn.PReLU, nn.LayerNorm)):
                for p in m.parameters():
                    p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.1)
    return model.eval(), shape


def inputs(shape: tuple[int, ...], n: int = 8, seed: int = 0) -> torch.Tensor:
    """Random float64 inputs ``(n, *shape)``."""
    return torch.randn(
        (n, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output in float64 (on a copy; `model` is left float32)."""
    with torch.no_grad():
        return copy.deepcopy(model).double()(x)


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def export_onnx(
    model: nn.Module, shape: tuple[int, ...], path: str, dynamo: bool, **kwargs: object
) -> str:
    """Export `model` (float32, batch 2) with the dynamo or the TorchScript exporter."""
    x = torch.randn(2, *shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, dynamo=dynamo, **kwargs)  # type: ignore[arg-type]
    return path


def op_signature(net: object) -> list[tuple[object, ...]]:
    """Kind, attrs and parameter shapes of each op, dropout left out."""
    return [
        (op.kind, sorted(op.attrs.items()), {r: tuple(t.shape) for r, t in op.params.items()})
        for op in net.ops
        if op.kind != "dropout"
    ]  # type: ignore[attr-defined]
