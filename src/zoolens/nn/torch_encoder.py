"""`TorchEncoder`: the shared shell of encoders whose learned state is one torch module."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from zoolens.ir import Net, TensorSet
from zoolens.nn.base import Encoder


class TorchEncoder(Encoder):
    """An encoder built from ``DEFAULTS`` + config, with a fixed-seed module.

    The module is initialised from ``config["seed"]`` without touching the caller's
    global RNG; `train_forward` is the differentiable path the trainer uses, and
    `embed_batch` runs it in eval mode without gradients.

    Args:
        config: overrides of the subclass's ``DEFAULTS``.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__({**self.DEFAULTS, **(config or {})})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.config["seed"]))
            self.module = self.build_module().eval()

    @abstractmethod
    def build_module(self) -> nn.Module:
        """The module for ``self.config``."""

    @abstractmethod
    def train_forward(self, models: list[Net | TensorSet]) -> torch.Tensor:
        """Differentiable, unnormalised embeddings ``(len(models), dim)``."""

    def embed_batch(self, models: list[Net | TensorSet]) -> np.ndarray:
        self.module.eval()
        with torch.no_grad():
            out: np.ndarray = self.train_forward(models).double().numpy()
        return out

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.module.state_dict())

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(tensors)
