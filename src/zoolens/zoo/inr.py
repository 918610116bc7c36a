"""Implicit neural representations: many small MLPs, each fitted to one image, trained at once.

A batch of same-architecture INRs is one batched tensor program: the weights of layer ``l``
are one ``(B, out, in)`` tensor, the forward pass is a chain of ``baddbmm``, and the loss is
the sum of the per-INR mean squared errors, so each INR receives exactly its own gradient
(Adam is element-wise, hence identical to B separate optimisers). The trained batch is then
split into B individual `Net`s.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import nn

from zoolens.ir import Net
from zoolens.ir.fx_import import import_module

W0 = 30.0  # SIREN frequency of every sine layer


@dataclass(frozen=True)
class INRArch:
    """Architecture of an INR: ``2 → width (× depth hidden layers) → 1``.

    Args:
        depth: hidden layers.
        width: units per hidden layer.
        activation: ``relu`` or ``sine`` (``sin(30 (W x + b))``, SIREN).
    """

    depth: int
    width: int
    activation: str

    def __str__(self) -> str:
        w0 = f",w0={W0:g}" if self.activation == "sine" else ""
        return f"inr(in=2,depth={self.depth},width={self.width},act={self.activation}{w0},out=1)"

    def layer_sizes(self) -> list[tuple[int, int]]:
        """``(n_in, n_out)`` of every Linear layer."""
        dims = [2] + [self.width] * self.depth + [1]
        return list(itertools.pairwise(dims))


class INRModel(nn.Module):
    """One INR as a module, for import into a `Net` (``layers.N`` Linear layers)."""

    def __init__(self, arch: INRArch) -> None:
        super().__init__()
        self.sine = arch.activation == "sine"
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in arch.layer_sizes())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.sin(W0 * layer(x)) if self.sine else torch.relu(layer(x))
        out: torch.Tensor = self.layers[-1](x)
        return out


def init_batch(
    arch: INRArch, batch: int, gen: torch.Generator
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Initial ``(weight (B, out, in), bias (B, 1, out))`` of every layer.

    SIREN layers use the SIREN initialisation (first layer ``U(±1/n_in)``, later layers
    ``U(±sqrt(6/n_in)/30)``); ReLU layers use PyTorch's default Linear initialisation.
    """
    params = []
    for k, (n_in, n_out) in enumerate(arch.layer_sizes()):
        if arch.activation == "sine":
            bound = 1.0 / n_in if k == 0 else math.sqrt(6.0 / n_in) / W0
        else:
            bound = 1.0 / math.sqrt(n_in)
        w = (torch.rand(batch, n_out, n_in, generator=gen) * 2 - 1) * bound
        b = (torch.rand(batch, 1, n_out, generator=gen) * 2 - 1) / math.sqrt(n_in)
        params.append((w.requires_grad_(), b.requires_grad_()))
    return params


def forward_batch(
    arch: INRArch, params: list[tuple[torch.Tensor, torch.Tensor]], coords: torch.Tensor
) -> torch.Tensor:
    """Run B INRs on shared coordinates.

    Shapes:
        coords: ``(P, 2)`` → output ``(B, P, 1)``.
    """
    h = coords.expand(params[0][0].shape[0], -1, -1)  # (B, P, 2)
    for k, (w, b) in enumerate(params):
        h = torch.baddbmm(b, h, w.transpose(1, 2))  # (B, P, n_out)
        if k < len(params) - 1:
            h = torch.sin(W0 * h) if arch.activation == "sine" else torch.relu(h)
    return h


def fit_batch(
    arch: INRArch,
    images: torch.Tensor,
    coords: torch.Tensor,
    steps: int,
    lr: float,
    seed: int,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fit one INR per image with full-batch Adam, all at once.

    Args:
        arch: the shared architecture.
        images: ``(B, H, W)`` targets in [0, 1].
        coords: ``(H * W, 2)`` pixel coordinates (row-major).
        steps: Adam steps.
        lr: Adam learning rate.
        seed: seeds the initialisation.

    Returns:
        Trained ``(weight, bias)`` per layer, detached.
    """
    gen = torch.Generator().manual_seed(seed)
    params = init_batch(arch, images.shape[0], gen)
    target = images.reshape(images.shape[0], -1, 1)  # (B, P, 1)
    opt = torch.optim.Adam([t for pair in params for t in pair], lr=lr)
    for _ in range(steps):
        loss = ((forward_batch(arch, params, coords) - target) ** 2).mean(dim=(1, 2)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return [(w.detach(), b.detach()) for w, b in params]


def split_batch(arch: INRArch, params: list[tuple[torch.Tensor, torch.Tensor]]) -> list[Net]:
    """One `Net` per INR of a trained batch (imported once with torch.fx, then refilled).

    Returns:
        B nets whose ``k``-th Linear holds ``params[k]`` of that INR.
    """
    template = import_module(INRModel(arch).eval(), (2,))
    linear_ops = [op for op in template.ops if op.kind == "linear"]
    if len(linear_ops) != len(params):
        raise RuntimeError(f"INR template has {len(linear_ops)} linear ops, expected {len(params)}")
    nets = []
    for i in range(params[0][0].shape[0]):
        for op, (w, b) in zip(linear_ops, params, strict=True):
            op.params = {"weight": w[i].clone(), "bias": b[i, 0].clone()}
        nets.append(template.clone())
    return nets


def psnr(pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """``(psnr, mse)`` of a reconstruction of an image with values in [0, 1]."""
    mse = float(((pred.double().reshape(-1) - target.double().reshape(-1)) ** 2).mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-12)), mse
