"""Flattened-weight baselines: `RawWeights` (the vector itself) and `FlatPCA`.

Both read a model's tensors concatenated in file order, zero-padded or truncated to a
fixed ``length``. They are *not* invariant to any weight symmetry — permuting hidden
units moves the vector — which is exactly what they measure against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from zoolens.ir import Net, TensorSet
from zoolens.nn.base import Encoder, Item, register_encoder
from zoolens.nn.baselines._common import (
    NotFittedError,
    flat_matrix,
    load_models,
    pad_columns,
    to_tensor,
)
from zoolens.nn.config import EncoderConfig, bounded

FLAT_LENGTH = 16384


@dataclass(frozen=True)
class RawWeightsConfig(EncoderConfig):
    """Args:
    length: values kept (zero-padded); also the dimension.
    """

    length: int = bounded(FLAT_LENGTH, 1)


@dataclass(frozen=True)
class FlatPCAConfig(EncoderConfig):
    """Args:
    dim: principal components kept.
    length: flattened values read (zero-padded / truncated).
    seed: of the randomised SVD of large corpora.
    """

    dim: int = bounded(256, 1)
    length: int = bounded(FLAT_LENGTH, 1)
    seed: int = 0


@register_encoder("raw-weights")
class RawWeights(Encoder):
    """The flattened, zero-padded weights as the embedding: after L2 normalisation the
    cosine of two embeddings is the cosine of the two raw weight vectors.

    Args:
        config: a `RawWeightsConfig` (or keyword overrides of its defaults).

    Shapes:
        embeddings: ``(n, length)``.
    """

    config_class: ClassVar[type[EncoderConfig]] = RawWeightsConfig

    def __init__(self, config: EncoderConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__(config)

    @property
    def dim(self) -> int:
        return int(self.config.length)

    def embed_batch(self, models: list[Net | TensorSet]) -> np.ndarray:
        return flat_matrix(models, self.dim)


@register_encoder("flat-pca")
class FlatPCA(Encoder):
    """Flattened weights (zero-padded/truncated to ``length``) projected on their principal
    components, learned by `fit` on a corpus. With fewer components than ``dim`` (a
    corpus smaller than ``dim``) the embedding is zero-padded to ``dim``.

    Args:
        config: a `FlatPCAConfig` (or keyword overrides of its defaults).

    Attributes:
        mean_: ``(length,)`` corpus mean; components_: ``(k, length)``; None until fitted.
    """

    config_class: ClassVar[type[EncoderConfig]] = FlatPCAConfig

    def __init__(self, config: EncoderConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.mean_: torch.Tensor | None = None
        self.components_: torch.Tensor | None = None

    def fit(self, items: Sequence[Item]) -> FlatPCA:
        """Learn the mean and the top ``dim`` principal directions of `items`' weights.

        Returns:
            self.
        """
        from sklearn.decomposition import PCA

        x = flat_matrix(load_models(items), int(self.config.length))  # (n, L)
        if x.shape[0] < 2:
            raise NotFittedError("flat-pca: fit needs at least 2 models")
        k = min(self.dim, x.shape[0], x.shape[1])
        pca = PCA(n_components=k, random_state=int(self.config.seed)).fit(x)
        self.mean_, self.components_ = to_tensor(pca.mean_), to_tensor(pca.components_)
        return self

    def embed_batch(self, models: list[Net | TensorSet]) -> np.ndarray:
        if self.mean_ is None or self.components_ is None:
            raise NotFittedError(
                "flat-pca is not fitted: call FlatPCA(...).fit(models) on a "
                "corpus first, or load a fitted one"
            )
        x = flat_matrix(models, int(self.config.length))
        mean, comps = self.mean_.double().numpy(), self.components_.double().numpy()
        return pad_columns((x - mean) @ comps.T, self.dim)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.mean_ is None or self.components_ is None:
            return {}
        return {"mean_": self.mean_, "components_": self.components_}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.mean_, self.components_ = tensors.get("mean_"), tensors.get("components_")
