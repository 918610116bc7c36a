"""Reusable checks: same function, exact invariance of an encoder, random nets."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from zoolens.ir import Net, load_net
from zoolens.testing.models import random_module


def random_net(family: str, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> Net:
    """A random `Net` of `family` (see `zoolens.testing.FAMILIES`), imported with torch.fx."""
    model, shape = random_module(family, generator)
    net = load_net(model, input_shape=shape)
    assert isinstance(net, Net)
    return net.to(dtype)


def random_input(net: Net, generator: torch.Generator, n: int = 16) -> torch.Tensor:
    p = next(net.parameters())
    return torch.randn((n, *net.input_shape), generator=generator, dtype=torch.float64).to(p.dtype)


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max(max |a|, tiny)."""
    scale = float(a.abs().max().clamp_min(1e-12))
    return float((a - b).abs().max()) / scale


def assert_same_function(a: Net, b: Net, x: torch.Tensor, rtol: float = 1e-6) -> None:
    """Raise AssertionError unless `a` and `b` give the same outputs on `x` (relative)."""
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == yb.shape, f"output shapes differ: {ya.shape} vs {yb.shape}"
    d = max_rel_diff(ya, yb)
    assert d <= rtol, f"outputs differ: max relative difference {d:.3g} > {rtol:.1g}"


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    u, v = np.asarray(u, np.float64).ravel(), np.asarray(v, np.float64).ravel()
    return float(u @ v) / max(float(np.linalg.norm(u) * np.linalg.norm(v)), 1e-300)


def assert_invariant(
    encoder: Any, net: Net, generator: torch.Generator, min_cos: float = 0.9999, n_actions: int = 3
) -> None:
    """Raise AssertionError unless `encoder` gives `net` and random exact transforms of it
    embeddings with cosine ≥ `min_cos`. Pair it with a sensitivity check: a constant
    encoder passes this one.
    """
    from zoolens.symmetry import random_exact_action

    nets = [net] + [random_exact_action(net, generator) for _ in range(n_actions)]
    z = encoder.encode(nets)
    for i in range(1, len(nets)):
        c = cosine(z[0], z[i])
        assert c >= min_cos, f"embedding changed under an exact action: cosine {c:.6f}"


def reweighted(net: Net, seed: int) -> Net:
    """A copy of `net` with other weights, same architecture: every tensor times factors
    drawn in [0.5, 1.5) (positive, so BatchNorm variances stay valid)."""
    g = torch.Generator().manual_seed(seed)
    out = net.clone()
    for op in out.ops:
        op.params = {
            k: v * (0.5 + torch.rand(v.shape, generator=g, dtype=v.dtype))
            for k, v in op.params.items()
        }
    return out
