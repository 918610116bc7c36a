"""A tiny model family for lineage tests: a trained parent, fine-tunes of it made by short
training on other targets, an unrelated model, and exact permuted / rescaled copies."""

from __future__ import annotations

import functools

import torch

from zoolens.ir import Net, load_net
from zoolens.symmetry import random_exact_action


def _mlp(seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 24),
        torch.nn.ReLU(),
        torch.nn.Linear(24, 24),
        torch.nn.ReLU(),
        torch.nn.Linear(24, 3),
    )


def _train(module: torch.nn.Module, task: int, steps: int, lr: float) -> None:
    g = torch.Generator().manual_seed(100 + task)
    x = torch.randn(64, 6, generator=g)
    w = torch.randn(6, 3, generator=g)
    y = (x @ w).argmax(dim=1)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(module(x), y).backward()
        opt.step()


def _net(module: torch.nn.Module) -> Net:
    net = load_net(module)
    assert isinstance(net, Net)
    return net


def family(n_children: int = 3) -> tuple[dict[str, Net], list[tuple[str, str]]]:
    """``({id: net}, [(parent, child), ...])``: ``p`` and its fine-tunes ``c1..cN``
    (``c2`` stored with its hidden units permuted and rescaled), and an unrelated ``u``.
    Trained once per process (a few seconds); callers get a new dict of copies."""
    nets, truth = _family(n_children)
    return {k: v.clone() for k, v in nets.items()}, list(truth)


@functools.lru_cache(maxsize=2)
def _family(n_children: int) -> tuple[dict[str, Net], list[tuple[str, str]]]:
    parent = _mlp(0)
    _train(parent, task=0, steps=60, lr=1e-2)
    nets = {"p": _net(parent)}
    for k in range(1, n_children + 1):
        child = _mlp(0)
        child.load_state_dict(parent.state_dict())
        _train(child, task=k, steps=15, lr=3e-3)
        nets[f"c{k}"] = _net(child)
    nets["c2"] = random_exact_action(nets["c2"], torch.Generator().manual_seed(7))
    other = _mlp(1)
    _train(other, task=0, steps=60, lr=1e-2)
    nets["u"] = _net(other)
    return nets, [("p", f"c{k}") for k in range(1, n_children + 1)]
