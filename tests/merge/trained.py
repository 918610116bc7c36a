"""Small nets trained on sklearn's bundled digits (offline), shared by the merge tests."""

from __future__ import annotations

from collections.abc import Callable

import torch
from sklearn.datasets import load_digits
from torch import nn

from zoolens.ir import Net, load_net


def digits(image: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test), inputs scaled to [0, 1] (``(n, 64)`` or images
    ``(n, 1, 8, 8)``), a fixed split."""
    x, y = load_digits(return_X_y=True)
    xt = torch.as_tensor(x / 16.0, dtype=torch.float32)
    if image:
        xt = xt.reshape(-1, 1, 8, 8)
    yt = torch.as_tensor(y, dtype=torch.long)
    perm = torch.randperm(len(yt), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1300], perm[1300:]
    return xt[tr], yt[tr], xt[te], yt[te]


def train(
    make: Callable[[], nn.Module], seed: int, x: torch.Tensor, y: torch.Tensor, steps: int = 300
) -> Net:
    """Train ``make()`` from seed `seed` with full-batch Adam; return it as a float64 `Net`."""
    torch.manual_seed(seed)
    model = make()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    net = load_net(model.eval(), input_shape=tuple(x.shape[1:]))
    assert isinstance(net, Net)
    return net.to(torch.float64)


def accuracy(net: Net, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(x.to(torch.float64)).argmax(1) == y).float().mean())


def mlp(width: int = 64) -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )
