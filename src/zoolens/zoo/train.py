"""Training one zoo model: data perturbation (subset, label noise), optimiser, loop, metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoolens.zoo.tasks import TaskData


@dataclass(frozen=True)
class HParams:
    """Training hyper-parameters of one model (all recorded in the manifest).

    Args:
        lr: learning rate.
        optimizer: ``sgd`` (momentum 0.9), ``adam`` or ``adamw``.
        weight_decay: L2 (sgd/adam) or decoupled (adamw) weight decay.
        epochs: passes over the (sub-sampled) training set, capped by ``max_steps``.
        batch_size: mini-batch size.
        init_scale: factor on the default initialisation of every weight.
        label_noise: fraction of training labels replaced by random classes
            (classification) or noise std in target units (regression).
        train_fraction: fraction of the training split used.
        max_steps: hard cap on optimiser steps.
    """

    lr: float
    optimizer: str
    weight_decay: float
    epochs: int
    batch_size: int
    init_scale: float = 1.0
    label_noise: float = 0.0
    train_fraction: float = 1.0
    max_steps: int = 10_000


def perturb_training_set(
    data: TaskData, hp: HParams, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training inputs and targets a model actually sees (subset + label noise).

    Args:
        data: the task.
        hp: uses ``train_fraction`` and ``label_noise``.
        rng: seeded generator of this model.

    Returns:
        ``(x, y)`` with the shapes of ``data.x_train`` / ``data.y_train``.
    """
    n = len(data.y_train)
    keep = max(8, round(hp.train_fraction * n))
    idx = torch.as_tensor(np.sort(rng.permutation(n)[:keep]))
    x, y = data.x_train[idx], data.y_train[idx].clone()
    if hp.label_noise > 0 and data.spec.kind == "classification":
        flip = torch.as_tensor(rng.random(len(y)) < hp.label_noise)
        random_labels = torch.as_tensor(rng.integers(0, data.spec.n_outputs, len(y)))
        y = torch.where(flip, random_labels, y)
    elif hp.label_noise > 0:
        y = y + hp.label_noise * torch.as_tensor(rng.standard_normal(y.shape), dtype=y.dtype)
    return x, y


def make_optimizer(params: list[nn.Parameter], hp: HParams) -> torch.optim.Optimizer:
    """The optimiser named by ``hp.optimizer``."""
    if hp.optimizer == "sgd":
        return torch.optim.SGD(params, lr=hp.lr, momentum=0.9, weight_decay=hp.weight_decay)
    if hp.optimizer == "adam":
        return torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
    if hp.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
    raise ValueError(f"unknown optimizer {hp.optimizer!r} (sgd, adam, adamw)")


def task_loss(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """Cross-entropy for classification, mean squared error otherwise."""
    return F.cross_entropy(out, y) if kind == "classification" else F.mse_loss(out, y)


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    kind: str,
    hp: HParams,
    seed: int,
) -> int | None:
    """Train `model` in place with mini-batch gradient descent.

    Args:
        model: the network (left in train mode).
        x: training inputs; y: training targets.
        kind: ``classification`` or ``regression``.
        hp: hyper-parameters.
        seed: seeds the batch order.

    Returns:
        The number of optimiser steps taken, or None if the loss became non-finite.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], hp)
    model.train()
    steps, n = 0, len(y)
    bs = min(hp.batch_size, n)
    for _ in range(hp.epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n - bs + 1, bs):  # drop the ragged last batch
            idx = order[start : start + bs]
            loss = task_loss(model(x[idx]), y[idx], kind)
            if not torch.isfinite(loss):
                return None
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            steps += 1
            if steps >= hp.max_steps:
                return steps
    return steps


def metrics(out: torch.Tensor, y: torch.Tensor, kind: str) -> dict[str, float]:
    """Test metrics from outputs: ``accuracy`` and ``test_loss``; plus ``r2`` for regression.

    Args:
        out: ``(N, n_outputs)`` network outputs.
        y: targets.
        kind: ``classification`` or ``regression``.
    """
    out = out.double()
    if kind == "classification":
        acc = (out.argmax(1) == y).double().mean().item()
        loss = F.cross_entropy(out, y).item()
        return {"accuracy": acc, "test_loss": loss, "r2": math.nan}
    y = y.double()
    sse = ((out - y) ** 2).sum().item()
    sst = ((y - y.mean(0)) ** 2).sum().item()
    return {"accuracy": math.nan, "test_loss": sse / y.numel(), "r2": 1.0 - sse / sst}
