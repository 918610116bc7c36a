"""`WeightStats`: per-tensor statistics of weights and biases, the classic accuracy-from-
weights baseline (a fixed-length vector, optionally standardised on a corpus)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from zoolens.ir import Net, TensorSet
from zoolens.nn.base import Encoder, Item, register_encoder
from zoolens.nn.baselines._common import load_models, model_tensors, to_tensor
from zoolens.nn.config import ConfigError, EncoderConfig, bounded

STATS = (
    "mean",
    "std",
    "q0",
    "q25",
    "q50",
    "q75",
    "q100",
    "l1",
    "l2",
    "skew",
    "kurtosis",
    "log_numel",
)
N_GLOBAL = 2  # log(1 + number of tensors), log(1 + number of parameters)


def tensor_stats(t: torch.Tensor) -> np.ndarray:
    """`STATS` of one tensor: mean, std, quantiles 0/25/50/75/100, size-normalised L1
    (mean |w|) and L2 (RMS) norms, skewness, excess kurtosis, log(1 + numel).

    Shapes:
        returns ``(len(STATS),)`` float64.
    """
    w = t.detach().reshape(-1).to(torch.float64).numpy()
    mean, std = float(w.mean()), float(w.std())
    q = np.quantile(w, [0.0, 0.25, 0.5, 0.75, 1.0])
    z = (w - mean) / std if std > 0 else np.zeros_like(w)
    skew, kurt = (float((z**3).mean()), float((z**4).mean()) - 3.0) if std > 0 else (0.0, 0.0)
    l1, l2 = float(np.abs(w).mean()), float(np.sqrt((w**2).mean()))
    return np.array([mean, std, *q, l1, l2, skew, kurt, np.log1p(w.size)])


@dataclass(frozen=True)
class WeightStatsConfig(EncoderConfig):
    """Args:
    n_first: leading tensors summarised.
    n_last: trailing tensors summarised.
    """

    n_first: int = bounded(4, 0)
    n_last: int = bounded(4, 0)

    def validate(self) -> None:
        if self.n_first + self.n_last < 1:
            raise ConfigError("WeightStatsConfig: n_first + n_last must be >= 1")


@register_encoder("weight-stats")
class WeightStats(Encoder):
    """`tensor_stats` of the first ``n_first`` and the last ``n_last`` tensors (every
    floating tensor in file order: weights, biases, norm parameters), concatenated, plus
    the log number of tensors and of parameters. A model with fewer tensors fills the
    first slots with its first half and right-aligns the rest in the last slots, so the
    input layer is always slot 0 and the output layer always the last slot; empty slots
    are zeros.

    `fit` learns a per-feature standardisation; unfitted, the raw statistics are used.

    Args:
        config: a `WeightStatsConfig` (or keyword overrides of its defaults).

    Attributes:
        mean_, scale_: ``(dim,)`` standardisation; None until fitted.

    Shapes:
        embeddings: ``(n, (n_first + n_last) · len(STATS) + 2)``.
    """

    config_class: ClassVar[type[EncoderConfig]] = WeightStatsConfig

    def __init__(self, config: EncoderConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.mean_: torch.Tensor | None = None
        self.scale_: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        slots = int(self.config.n_first) + int(self.config.n_last)
        return slots * len(STATS) + N_GLOBAL

    def features(self, model: Net | TensorSet) -> np.ndarray:
        """The raw (unstandardised) feature vector ``(dim,)`` of one model."""
        nf, nl = int(self.config.n_first), int(self.config.n_last)
        tensors = [t for t in model_tensors(model).values() if t.numel() > 0]
        n = len(tensors)
        if n >= nf + nl:
            first, last = list(range(nf)), list(range(n - nl, n))
        else:
            half = min(nf, (n + 1) // 2)
            first, last = list(range(half)), list(range(half, n))
        slots = np.zeros((nf + nl, len(STATS)))
        for s, i in enumerate(first):
            slots[s] = tensor_stats(tensors[i])
        for s, i in enumerate(last):
            slots[nf + nl - len(last) + s] = tensor_stats(tensors[i])
        total = sum(int(t.numel()) for t in tensors)
        return np.concatenate([slots.reshape(-1), [np.log1p(n), np.log1p(total)]])

    def fit(self, items: Sequence[Item]) -> WeightStats:
        """Learn the per-feature mean and standard deviation over `items`.

        Returns:
            self.
        """
        f = np.stack([self.features(m) for m in load_models(items)])  # (n, dim)
        std = f.std(axis=0)
        self.mean_ = to_tensor(f.mean(axis=0))
        self.scale_ = to_tensor(np.where(std > 1e-12, std, 1.0))
        return self

    def embed_batch(self, models: list[Net | TensorSet]) -> np.ndarray:
        f = np.stack([self.features(m) for m in models])
        if self.mean_ is not None and self.scale_ is not None:
            f = (f - self.mean_.double().numpy()) / self.scale_.double().numpy()
        return f

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.mean_ is None or self.scale_ is None:
            return {}
        return {"mean_": self.mean_, "scale_": self.scale_}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.mean_, self.scale_ = tensors.get("mean_"), tensors.get("scale_")
