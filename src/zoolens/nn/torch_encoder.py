"""`TorchEncoder`: the shared shell of encoders whose learned state is one torch module."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from zoolens.ir import Net, TensorSet
from zoolens.nn.base import Encoder, as_model
from zoolens.nn.config import EncoderConfig

QUALITY_PREFIX = "quality_head."  # state-dict prefix of the quality head


@dataclass(frozen=True)
class TorchEncoderConfig(EncoderConfig):
    """What every `TorchEncoder` config holds.

    Args:
        seed: initialisation seed of the module and heads.
        quality_head: carry the quality head (`predict_quality`).
    """

    seed: int = 0
    quality_head: bool = True


class TorchEncoder(Encoder):
    """An encoder with a fixed-seed module built from its config.

    The module is initialised from ``config.seed`` without touching the caller's
    global RNG; `train_forward` is the differentiable path the trainer uses, and
    `embed_batch` runs it in eval mode without gradients. With ``quality_head`` (the
    default) the encoder also carries the small MLP that training fits from the
    normalised embedding to a model's quality (the seeds' metric loss), saved with it, so
    `predict_quality` works on any loaded encoder.

    Args:
        config: the subclass's config (or keyword overrides of its defaults).
    """

    config_class: ClassVar[type[EncoderConfig]] = TorchEncoderConfig

    def __init__(self, config: EncoderConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self.module = self.build_module().eval()
            self.quality: nn.Module | None = None
            if self.config.quality_head:
                self.quality = self.new_quality_head()

    @property
    def module_dim(self) -> int:
        """Width of the module's output: the leading columns of an embedding (an encoder
        may append features it does not learn, as `NeuralGraphEncoder`'s fingerprint)."""
        return int(self.config.dim)

    @property
    def quality_extra_dim(self) -> int:
        """Columns the quality head reads beside the learned embedding (see
        `quality_inputs`); 0 here."""
        return 0

    def new_quality_head(self) -> nn.Module:
        """An untrained quality head for this configuration: an MLP from the normalised
        learned embedding (and the `quality_extra_dim` extra columns, standardised by
        statistics fitted with it) to a logit."""
        d = self.module_dim + self.quality_extra_dim
        first = [Standardise(d)] if self.quality_extra_dim else []
        return nn.Sequential(*first, nn.Linear(d, 64), nn.SiLU(), nn.Linear(64, 1))

    def quality_logits(self, z: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Quality logits ``(n,)`` of unnormalised learned embeddings `z` and, for a head
        that reads them, the extra columns `extra` (differentiable)."""
        if self.quality is None:
            raise ValueError(f"encoder {self.name!r} was saved without a quality head")
        x = nn.functional.normalize(z, dim=1)
        if self.quality_extra_dim:
            if extra is None or extra.shape != (len(z), self.quality_extra_dim):
                raise ValueError(
                    f"encoder {self.name!r}: the quality head also reads "
                    f"{self.quality_extra_dim} columns of `quality_inputs`"
                )
            x = torch.cat([x, extra.to(x.dtype)], dim=1)
        out: torch.Tensor = self.quality(x)[:, 0]
        return out

    def quality_inputs(
        self, items: list[Net | TensorSet], batch_size: int = 64
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the quality head reads: the learned embeddings ``(n, module_dim)`` and the
        extra columns ``(n, quality_extra_dim)``, or None when it reads none."""
        parts = [
            self.quality_batch([as_model(i) for i in items[s : s + batch_size]])
            for s in range(0, len(items), batch_size)
        ]
        z = torch.cat([p[0] for p in parts]).float() if parts else torch.zeros(0, self.module_dim)
        if not self.quality_extra_dim:
            return z, None
        extra = [p[1] for p in parts if p[1] is not None]
        return z, torch.cat(extra) if extra else torch.zeros(0, self.quality_extra_dim)

    def quality_batch(
        self, models: list[Net | TensorSet]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`quality_inputs` of one batch of loaded models (here: the learned columns of
        `embed_batch`, no extra ones)."""
        return torch.from_numpy(self.embed_batch(models)[:, : self.module_dim]), None

    def predict_quality(self, items: list[Net | TensorSet], batch_size: int = 64) -> np.ndarray:
        """Predicted normalised quality in [0, 1] (test accuracy; R² for regressors) of
        each item, from what the encoder computes of it alone.
        """
        z, extra = self.quality_inputs(items, batch_size)
        with torch.no_grad():
            out: np.ndarray = torch.sigmoid(self.quality_logits(z, extra)).double().numpy()
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

    def heads(self) -> dict[str, nn.Module]:
        """The small modules saved beside the main one, by state-dict prefix (here the
        quality head, when there is one)."""
        return {QUALITY_PREFIX: self.quality} if self.quality is not None else {}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        state = dict(self.module.state_dict())
        for prefix, head in self.heads().items():
            state.update({f"{prefix}{k}": v for k, v in head.state_dict().items()})
        return state

    def adopt(self, other: TorchEncoder, keep: str) -> None:
        """Load `other`'s main module and heads into this encoder, all but the head at
        state-dict prefix `keep`, which stays this encoder's own (the one a fit replaces).
        The two must share their configuration apart from that head."""
        own = {k: v for k, v in self.state_tensors().items() if k.startswith(keep)}
        theirs = {k: v for k, v in other.state_tensors().items() if not k.startswith(keep)}
        self.load_state_tensors(theirs | own)

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        heads = self.heads()
        for prefix, head in heads.items():
            head.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
        self.module.load_state_dict(
            {k: v for k, v in tensors.items() if not k.startswith((QUALITY_PREFIX, *heads))}
        )


class Standardise(nn.Module):
    """``(x - mean) / std`` with fixed statistics (buffers, saved with the module).

    Shapes:
        x: ``(n, d)`` → ``(n, d)``.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, d: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("std", torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
