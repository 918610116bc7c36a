"""Refit a trained encoder's quality head on a frozen encoder.

Training fits the quality head jointly, at weight ``1 - lam`` beside the contrastive loss,
from the learned embedding alone. `fit_quality_head` fits a fresh head afterwards, with the
encoder frozen, on the zoo's train split, choosing its weight decay by validation R²;
a neural-graph encoder's head can also read its function's `output_statistics`
(``stats=True``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from zoolens.nn.torch_encoder import QUALITY_PREFIX, Standardise, TorchEncoder
from zoolens.train.data import load_split
from zoolens.zoo import Zoo

log = logging.getLogger(__name__)

WEIGHT_DECAYS = (1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0, 10.0)


@dataclass
class QualityFit:
    """A refit quality head.

    Args:
        encoder: the encoder with the new head (same learned module).
        weight_decay: the chosen one.
        val_r2: validation R² of every weight decay tried.
        n_train, n_val: models with a quality target in each split.
    """

    encoder: TorchEncoder
    weight_decay: float
    val_r2: dict[float, float] = field(default_factory=dict)
    n_train: int = 0
    n_val: int = 0


def _inputs(
    enc: TorchEncoder, zoo: Zoo, split: str
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    data = load_split(zoo, split)
    keep = np.flatnonzero(np.isfinite(data.targets))  # INRs have no quality
    if len(keep) < 2:
        raise ValueError(f"{zoo.path}: fewer than 2 {split} models with a quality target")
    z, extra = enc.quality_inputs([data.nets[i] for i in keep])
    return z.float(), None if extra is None else extra.float(), torch.tensor(data.targets[keep])


def _r2(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float(1.0 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum().clamp_min(1e-12))


def fit_quality_head(
    encoder: TorchEncoder,
    zoo_dir: str,
    stats: bool = False,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    steps: int = 2000,
    lr: float = 3e-3,
    seed: int = 0,
) -> QualityFit:
    """Fit a new quality head on the frozen `encoder` (a copy; the argument is untouched).

    Full-batch AdamW on the mean squared error of the sigmoid output against the
    normalised quality (`zoolens.train.data.quality_targets`) of the train split's
    models; the head's inputs are standardised with the train split's statistics; one
    head per weight decay, the best on validation R² kept.

    Args:
        encoder: a trained encoder.
        zoo_dir: the zoo it was trained on (its ``train`` and ``val`` splits are read).
        stats: the head also reads the function's `output_statistics` (neural-graph
            encoders only: sets their ``quality_stats``).
        weight_decays: the candidates.
        steps, lr: optimiser steps and learning rate of each fit.
        seed: initialisation seed of each head.

    Raises:
        ValueError: `stats` for an encoder without them, or a split without targets.
    """
    if not weight_decays:
        raise ValueError("no weight decay to try")
    has_stats = hasattr(encoder.config, "quality_stats")
    if stats and not has_stats:
        raise ValueError(f"encoder {encoder.name!r} has no function statistics for its head")
    changes: dict[str, object] = {"quality_head": True}
    if has_stats:
        changes["quality_stats"] = stats
    enc = type(encoder)(encoder.config.replace(**changes))
    enc.adopt(encoder, keep=QUALITY_PREFIX)  # the module and other heads as they are
    zoo = Zoo.open(zoo_dir)
    (zt, et, yt), (zv, ev, yv) = (_inputs(enc, zoo, s) for s in ("train", "val"))
    best: tuple[float, float, nn.Module] | None = None
    val_r2 = {}
    for wd in weight_decays:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            enc.quality = head = enc.new_quality_head()
        first = head[0] if isinstance(head, nn.Sequential) else None
        if isinstance(first, Standardise) and et is not None:  # what the head reads, train split
            x = torch.cat([nn.functional.normalize(zt, dim=1), et], 1)
            first.mean.copy_(x.mean(0))
            first.std.copy_(x.std(0).clamp_min(1e-6))
        opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=wd)
        for _ in range(steps):
            loss = ((torch.sigmoid(enc.quality_logits(zt, et)) - yt.float()) ** 2).mean()
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        with torch.no_grad():
            val_r2[wd] = _r2(torch.sigmoid(enc.quality_logits(zv, ev)).double(), yv)
        log.info("quality head, weight decay %g: validation R² %.3f", wd, val_r2[wd])
        if best is None or val_r2[wd] > best[0]:
            best = (val_r2[wd], wd, head)
    assert best is not None  # weight_decays is not empty
    enc.quality = best[2].eval()
    return QualityFit(enc, best[1], val_r2, len(yt), len(yv))
