"""`TorchEncoder`: the shared shell of encoders whose learned state is one torch module."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from zoolens.ir import Net, TensorSet
from zoolens.nn.base import Encoder

_QUALITY = "quality_head."  # state-dict prefix of the quality head


class TorchEncoder(Encoder):
    """An encoder built from ``DEFAULTS`` + config, with a fixed-seed module.

    The module is initialised from ``config["seed"]`` without touching the caller's
    global RNG; `train_forward` is the differentiable path the trainer uses, and
    `embed_batch` runs it in eval mode without gradients. With ``quality_head`` (the
    default) the encoder also carries the small MLP that training fits from the
    normalised embedding to a model's quality (the seeds' metric loss), saved with it, so
    `predict_quality` works on any loaded encoder.

    Args:
        config: overrides of the subclass's ``DEFAULTS``.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {}
    OLD_DEFAULTS: ClassVar[dict[str, Any]] = {"quality_head": False}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__({"quality_head": True, **self.DEFAULTS, **(config or {})})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.config["seed"]))
            self.module = self.build_module().eval()
            self.quality: nn.Module | None = None
            if self.config["quality_head"]:
                d = self.module_dim
                self.quality = nn.Sequential(nn.Linear(d, 64), nn.SiLU(), nn.Linear(64, 1))

    @property
    def module_dim(self) -> int:
        """Width of the module's output: the leading columns of an embedding (an encoder
        may append features it does not learn, as `NeuralGraphEncoder`'s fingerprint)."""
        return int(self.config["dim"])

    def quality_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Quality logits ``(n,)`` of unnormalised embeddings `z` (differentiable)."""
        if self.quality is None:
            raise ValueError(f"encoder {self.name!r} was saved without a quality head")
        out: torch.Tensor = self.quality(nn.functional.normalize(z, dim=1))[:, 0]
        return out

    def predict_quality(self, items: list[Net | TensorSet], batch_size: int = 64) -> np.ndarray:
        """Predicted normalised quality in [0, 1] (test accuracy; R² for regressors) of
        each item, from its embedding alone.
        """
        z = torch.from_numpy(self.encode(items, batch_size=batch_size)[:, : self.module_dim])
        with torch.no_grad():
            out: np.ndarray = torch.sigmoid(self.quality_logits(z)).double().numpy()
        return out

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

    def parameters(self) -> list[nn.Parameter]:
        """Every trainable parameter: the module's, then the quality head's."""
        extra = list(self.quality.parameters()) if self.quality is not None else []
        return [*self.module.parameters(), *extra]

    def state_tensors(self) -> dict[str, torch.Tensor]:
        state = dict(self.module.state_dict())
        if self.quality is not None:
            state.update({f"{_QUALITY}{k}": v for k, v in self.quality.state_dict().items()})
        return state

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        head = {k[len(_QUALITY) :]: v for k, v in tensors.items() if k.startswith(_QUALITY)}
        self.module.load_state_dict(
            {k: v for k, v in tensors.items() if not k.startswith(_QUALITY)}
        )
        if self.quality is not None:
            self.quality.load_state_dict(head)
