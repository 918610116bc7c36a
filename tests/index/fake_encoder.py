"""A tiny deterministic encoder for index tests: a fixed random projection of weight statistics.

Importing this module registers it as ``"test-stats"``; subprocesses import it by putting
this directory on ``PYTHONPATH``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from zoolens.ir import Net, TensorSet
from zoolens.nn.base import Encoder, register_encoder
from zoolens.nn.config import EncoderConfig, bounded

N_QUANTILES = 16


@dataclass(frozen=True)
class StatsConfig(EncoderConfig):
    dim: int = bounded(16, 1)
    seed: int = 0


@register_encoder("test-stats")
class StatsEncoder(Encoder):
    """Sorted-weight quantiles and moments, projected to ``dim`` by a seeded Gaussian matrix."""

    config_class: ClassVar[type[EncoderConfig]] = StatsConfig

    def __init__(self, config: EncoderConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        rng = np.random.default_rng(self.config.seed)
        self.projection = rng.standard_normal((N_QUANTILES + 3, self.config.dim))

    def embed_batch(self, models: list[Net | TensorSet]) -> np.ndarray:
        return np.stack([self._features(m) for m in models]) @ self.projection

    @staticmethod
    def _features(model: Net | TensorSet) -> np.ndarray:
        tensors = model.state_dict() if isinstance(model, Net) else model.tensors
        w = torch.cat([t.detach().double().flatten() for t in tensors.values()]).numpy()
        q = np.quantile(w, np.linspace(0.0, 1.0, N_QUANTILES))
        return np.concatenate([q, [w.mean(), w.std(), np.abs(w).mean()]])


def tiny_net(seed: int) -> Net:
    """A 4→8→2 MLP with weights from `seed`."""
    from zoolens.ir import load_net

    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    net = load_net(module)
    assert isinstance(net, Net)
    return net
