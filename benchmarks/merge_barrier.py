"""Loss and accuracy barriers along the linear path between two independently trained nets,
naive vs aligned (weight matching, activation matching), per architecture family.

    python benchmarks/merge_barrier.py [--pairs 3] [--steps 300]

Offline data only: scikit-learn's bundled digits (MLP, CNN with BatchNorm, residual MLP with
LayerNorm: 10-way classification, 1300 train / 497 test) and a SIREN fitted to one digit
upsampled to 16 x 16 (an INR; MSE loss, no accuracy). For each family, `--pairs` pairs of
nets are trained from different seeds; B is aligned to A (`zoolens.merge.align`), and at
alpha in {0, 0.1, ..., 1} the interpolated net (BatchNorm statistics reset on the train
inputs, as `zoolens.merge.merge` does; REPAIR on the train inputs in the last row) is
scored on the test split. The barrier is the
largest rise of the test loss above the straight line between the endpoint losses; the
accuracy barrier the largest drop below the line between endpoint accuracies.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from zoolens.ir import Net, load_net
from zoolens.merge import align, interpolate, reset_batchnorm
from zoolens.merge.merge import has_batchnorm
from zoolens.merge.repair import repair

ALPHAS = np.round(np.linspace(0, 1, 11), 2)


@dataclass
class Task:
    make: Callable[[], nn.Module]
    x: torch.Tensor  # train inputs
    y: torch.Tensor
    xt: torch.Tensor  # test inputs
    yt: torch.Tensor
    classify: bool = True


class ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm, self.fc = nn.LayerNorm(width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.fc(self.norm(x)))


class Sine(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(30.0 * x)


def siren() -> nn.Module:
    """SIREN with its initialisation (first layer U(-1/n, 1/n), then U(-√(6/n)/30, ·))."""
    model = nn.Sequential(nn.Linear(2, 32), Sine(), nn.Linear(32, 32), Sine(), nn.Linear(32, 1))
    with torch.no_grad():
        for i, layer in enumerate(m for m in model if isinstance(m, nn.Linear)):
            n = layer.in_features
            bound = 1 / n if i == 0 else (6 / n) ** 0.5 / 30
            layer.weight.uniform_(-bound, bound)
    return model


def _digits() -> tuple[torch.Tensor, ...]:
    x, y = load_digits(return_X_y=True)
    xt, yt = torch.as_tensor(x / 16.0, dtype=torch.float32), torch.as_tensor(y)
    perm = torch.randperm(len(yt), generator=torch.Generator().manual_seed(0))
    return xt[perm[:1300]], yt[perm[:1300]], xt[perm[1300:]], yt[perm[1300:]]


def tasks() -> dict[str, Task]:
    x, y, xt, yt = _digits()
    img = lambda v: v.reshape(-1, 1, 8, 8)  # noqa: E731
    side = 16
    pixels = F.interpolate(img(x[:1]), size=(side, side), mode="bilinear").reshape(-1, 1)
    axis = torch.linspace(-1, 1, side)
    coords = torch.cartesian_prod(axis, axis)  # (256, 2)
    return {
        "mlp": Task(
            lambda: nn.Sequential(
                nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)
            ),
            x, y, xt, yt,
        ),
        "cnn_bn": Task(
            lambda: nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                nn.Flatten(), nn.Linear(32 * 16, 10),
            ),
            img(x), y, img(xt), yt,
        ),
        "resmlp_ln": Task(
            lambda: nn.Sequential(
                nn.Linear(64, 32), ResBlock(32), ResBlock(32), nn.LayerNorm(32), nn.Linear(32, 10)
            ),
            x, y, xt, yt,
        ),
        "siren": Task(siren, coords, pixels, coords, pixels, classify=False),
    }  # fmt: skip


def train(task: Task, seed: int, steps: int) -> Net:
    torch.manual_seed(seed)
    model = task.make()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2 if task.classify else 1e-3)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        out = model(task.x)
        loss = F.cross_entropy(out, task.y) if task.classify else F.mse_loss(out, task.y)
        loss.backward()
        opt.step()
    net = load_net(model.eval(), input_shape=tuple(task.x.shape[1:]))
    assert isinstance(net, Net)
    return net.to(torch.float64)


def evaluate(net: Net, task: Task) -> tuple[float, float]:
    """(test loss, test accuracy or nan)."""
    with torch.no_grad():
        out = net(task.xt.double())
    if not task.classify:
        return float(F.mse_loss(out, task.yt.double())), float("nan")
    return float(F.cross_entropy(out, task.yt)), float((out.argmax(1) == task.yt).double().mean())


def path(a: Net, b: Net, task: Task, repaired: bool = False) -> np.ndarray:
    """(len(ALPHAS), 2): loss and accuracy of the interpolated nets (REPAIRed on the train
    inputs when `repaired`)."""
    rows = []
    for alpha in ALPHAS:
        net = interpolate(a, b, float(alpha))
        if repaired:
            net = repair(net, a, b, float(alpha), task.x.double())
        if has_batchnorm(net):
            net = reset_batchnorm(net, task.x.double())
        rows.append(evaluate(net, task))
    return np.array(rows)


def barriers(curve: np.ndarray) -> tuple[float, float]:
    """(loss barrier, accuracy barrier) of one path."""
    line = (1 - ALPHAS)[:, None] * curve[0] + ALPHAS[:, None] * curve[-1]
    return float((curve[:, 0] - line[:, 0]).max()), float((line[:, 1] - curve[:, 1]).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--families", nargs="*", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cols = ("loss barrier", "acc barrier", "acc at 0.5", "endpoint acc", "endpoint loss")
    print("| family | method | " + " | ".join(cols) + " |")
    print("|---|---|---|---|---|---|---|")
    for name, task in tasks().items():
        if args.families and name not in args.families:
            continue
        steps = args.steps * (5 if not task.classify else 1)
        results: dict[str, list[tuple[float, float, float, float]]] = {}
        for p in range(args.pairs):
            a, b = train(task, 2 * p, steps), train(task, 2 * p + 1, steps)
            x = task.x.double()
            by_weights = align(a, b)
            for method, other, repaired in (
                ("naive", b, False),
                ("aligned: weights", by_weights, False),
                ("aligned: activations", align(a, b, method="activations", data=x), False),
                ("aligned: weights + REPAIR", by_weights, True),
            ):
                curve = path(a, other, task, repaired)
                lb, ab = barriers(curve)
                ends = np.mean(curve[[0, -1]], axis=0)
                row = (lb, ab, float(curve[5, 1]), float(ends[1]), float(ends[0]))
                results.setdefault(method, []).append(row)
        for method, rows in results.items():
            r = np.array(rows)
            cells = [
                f"{m:.3f} ± {s:.3f}" if np.isfinite(m) else "–"
                for m, s in zip(r.mean(0), r.std(0), strict=True)
            ]
            print(f"| {name} | {method} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
