"""Tiny zoos for the benchmark-script tests: sign-ambiguous regressors and edge INRs."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from zoolens.ir import Net, load_net
from zoolens.zoo.importers import write_zoo

SMALL = {"hidden": 8, "dim": 16, "layers": 1, "readout_layers": 1, "n_probes": 32, "seed": 1}

# the direction of an INR's edge: along x, along y, along the diagonal
_EDGES = ((1.0, 0.0), (0.0, 1.0), (0.7, 0.7))


def regressor(task: int, g: torch.Generator) -> Net:
    """A one-output net of 3 inputs that mostly follows ``± tanh(b * x[task])``: the
    sign is random, so same-task nets have fingerprints of cosine near -1 or +1."""
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    with torch.no_grad():
        model[0].weight.copy_(0.2 * torch.randn(8, 3, generator=g))
        model[0].weight[0, task] = 1.0 + 2.0 * torch.rand(1, generator=g)
        model[0].bias.copy_(0.2 * torch.randn(8, generator=g))
        model[2].weight.copy_(0.05 * torch.randn(1, 8, generator=g))
        model[2].weight[0, 0] = torch.sign(torch.randn(1, generator=g)) * 2.0
    net = load_net(model.eval(), input_shape=(3,))
    assert isinstance(net, Net)
    return net


def inr(label: int, g: torch.Generator) -> Net:
    """A coordinate net drawing a soft edge across the image in direction `_EDGES[label]`,
    at a random offset and sharpness, over small random clutter."""
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    with torch.no_grad():
        model[0].weight.copy_(0.3 * torch.randn(8, 2, generator=g))
        model[0].weight[0] = (2.0 + 2.0 * torch.rand(1, generator=g)) * torch.tensor(_EDGES[label])
        model[0].bias.copy_(0.5 * torch.randn(8, generator=g))
        model[2].weight.copy_(0.1 * torch.randn(1, 8, generator=g))
        model[2].weight[0, 0] = 2.0
    net = load_net(model.eval(), input_shape=(2,))
    assert isinstance(net, Net)
    return net


def write_signs_zoo(
    out: str, n: int, family: Callable[[int], str], split: Callable[[int], str], seed: int
) -> str:
    """A zoo of `n` `regressor` nets, model i of task ``x{i % 3}``, family and split by i."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        row = {
            "id": f"m{i:03d}",
            "task": f"x{i % 3}",
            "kind": "regression",
            "family": family(i),
            "r2": 0.5,
            "split": split(i),
            "index": i,
        }
        items.append((regressor(i % 3, g), row))
    write_zoo(items, out)
    return out
