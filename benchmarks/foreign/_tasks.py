"""The shared-interface zoo: 8 tasks of 12 inputs → 4 classes from different data-generating
processes, and the MLPs / residual MLPs trained on them.

Every task shares one interface, so only what a network computes tells its task apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from _common import act_module
from sklearn.datasets import make_classification
from torch import nn

N_IN, N_OUT = 12, 4
N_TRAIN, N_TEST = 1200, 400


def _teacher(rng: np.random.Generator, act: str) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian inputs labelled by the argmax of a random MLP (12-32-32-4), logits centred."""
    x = rng.standard_normal((N_TRAIN + N_TEST, N_IN))
    f = np.tanh if act == "tanh" else (lambda v: np.maximum(v, 0.0))
    h = x
    for d_in, d_out in ((N_IN, 32), (32, 32)):
        h = f(h @ rng.standard_normal((d_in, d_out)) * (2.0 / d_in) ** 0.5 + 0.1)
    logits = h @ rng.standard_normal((32, N_OUT))
    return x, np.argmax(logits - logits.mean(0), axis=1)


def _mixture_isotropic(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One isotropic Gaussian blob per class, centres ~ N(0, 1.5²)."""
    y = rng.integers(0, N_OUT, N_TRAIN + N_TEST)
    centres = rng.standard_normal((N_OUT, N_IN)) * 1.5
    return centres[y] + rng.standard_normal((len(y), N_IN)), y


def _mixture_anisotropic(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three elongated Gaussian blobs per class sharing one random covariance, close centres."""
    n = N_TRAIN + N_TEST
    y = rng.integers(0, N_OUT, n)
    sub = rng.integers(0, 3, n)
    centres = rng.standard_normal((N_OUT, 3, N_IN)) * 1.2
    scales = np.geomspace(3.0, 0.2, N_IN)
    basis, _ = np.linalg.qr(rng.standard_normal((N_IN, N_IN)))
    noise = (rng.standard_normal((n, N_IN)) * scales) @ basis.T
    return centres[y, sub] + noise, y


def _sklearn(seed: int, **kw: object) -> Callable[[np.random.Generator], tuple]:
    def make(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x, y = make_classification(
            n_samples=N_TRAIN + N_TEST,
            n_features=N_IN,
            n_classes=N_OUT,
            random_state=seed + int(rng.integers(0, 10_000)),
            **kw,
        )
        return x, y

    return make


def _rule(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uniform inputs in [-1, 1]^12; class = 2·[x_a·x_b > 0] + [x_c + x_d > x_e] (random a..e)."""
    x = rng.uniform(-1.0, 1.0, (N_TRAIN + N_TEST, N_IN))
    a, b, c, d, e = rng.permutation(N_IN)[:5]
    y = 2 * (x[:, a] * x[:, b] > 0) + (x[:, c] + x[:, d] > x[:, e])
    return x, y.astype(np.int64)


def _quadratic_shells(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian inputs; class = quartile of a random indefinite quadratic form xᵀQx."""
    x = rng.standard_normal((N_TRAIN + N_TEST, N_IN))
    a = rng.standard_normal((N_IN, N_IN))
    q = np.einsum("ni,ij,nj->n", x, (a + a.T) / 2, x)
    return x, np.searchsorted(np.quantile(q, [0.25, 0.5, 0.75]), q)


TASKS: dict[str, Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "teacher-relu": lambda rng: _teacher(rng, "relu"),
    "teacher-tanh": lambda rng: _teacher(rng, "tanh"),
    "mixture-isotropic": _mixture_isotropic,
    "mixture-anisotropic": _mixture_anisotropic,
    "sklearn-a": _sklearn(11, n_informative=6, n_redundant=2, class_sep=1.0, flip_y=0.02),
    "sklearn-b": _sklearn(
        23, n_informative=10, n_redundant=0, n_clusters_per_class=1, class_sep=0.7
    ),
    "rule-xor": _rule,
    "quadratic-shells": _quadratic_shells,
}


@dataclass(frozen=True)
class TaskData:
    """One task's standardised train/test split (float32 inputs, int64 labels)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def make_task(name: str, seed: int) -> TaskData:
    """Draw task `name`'s data for `seed`; inputs z-scored with the train split's statistics."""
    rng = np.random.default_rng([seed, list(TASKS).index(name)])
    x, y = TASKS[name](rng)
    mu, sd = x[:N_TRAIN].mean(0), x[:N_TRAIN].std(0) + 1e-8
    x = ((x - mu) / sd).astype(np.float32)
    t = torch.from_numpy
    return TaskData(
        name, t(x[:N_TRAIN]), t(y[:N_TRAIN]).long(), t(x[N_TRAIN:]), t(y[N_TRAIN:]).long()
    )


class MLP(nn.Sequential):
    """Linear → act, `depth` times, then a linear classifier."""

    def __init__(self, width: int, depth: int, act: str) -> None:
        layers: list[nn.Module] = []
        d = N_IN
        for _ in range(depth):
            layers += [nn.Linear(d, width), act_module(act)]
            d = width
        super().__init__(*layers, nn.Linear(d, N_OUT))


class ResBlock(nn.Module):
    """Pre-norm residual block: x + W2 act(W1 LN(x))."""

    def __init__(self, width: int, act: str) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 2 * width)
        self.act = act_module(act)
        self.fc2 = nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class ResMLP(nn.Module):
    """Linear stem → `blocks` pre-norm residual blocks → LayerNorm → linear classifier."""

    def __init__(self, width: int, blocks: int, act: str) -> None:
        super().__init__()
        self.stem = nn.Linear(N_IN, width)
        self.blocks = nn.Sequential(*[ResBlock(width, act) for _ in range(blocks)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, N_OUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(self.stem(x))))


def draw_config(rng: np.random.Generator) -> dict[str, object]:
    """A random architecture and training recipe."""
    family = "resmlp" if rng.random() < 0.4 else "mlp"
    cfg: dict[str, object] = {
        "family": family,
        "activation": str(rng.choice(["relu", "tanh", "gelu"])),
        "width": int(rng.choice([16, 24, 32, 48, 64] if family == "mlp" else [16, 24, 32])),
        "depth": int(rng.integers(1, 4) if family == "mlp" else rng.integers(1, 3)),
        "lr": float(math.exp(rng.uniform(math.log(1e-3), math.log(1e-2)))),
        "weight_decay": float(rng.choice([0.0, 1e-4, 1e-3])),
        "batch": int(rng.choice([32, 64, 128])),
        "steps": int(rng.choice([200, 300, 400])),
    }
    return cfg


def build(cfg: dict[str, object]) -> nn.Module:
    width, depth, act = int(cfg["width"]), int(cfg["depth"]), str(cfg["activation"])
    return MLP(width, depth, act) if cfg["family"] == "mlp" else ResMLP(width, depth, act)


def arch_name(cfg: dict[str, object]) -> str:
    return f"{cfg['family']}-w{cfg['width']}-d{cfg['depth']}"


def train(cfg: dict[str, object], data: TaskData, seed: int) -> tuple[nn.Module, float]:
    """A net of `cfg` trained on `data` with Adam (seeded by `seed`); its test accuracy."""
    torch.manual_seed(seed)
    model = build(cfg)
    opt = torch.optim.Adam(
        model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"])
    )
    g = torch.Generator().manual_seed(seed)
    n, batch = len(data.x_train), int(cfg["batch"])
    model.train()
    for _ in range(int(cfg["steps"])):
        idx = torch.randint(0, n, (batch,), generator=g)
        loss = nn.functional.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(data.x_test).argmax(1) == data.y_test).float().mean())
    return model, acc
