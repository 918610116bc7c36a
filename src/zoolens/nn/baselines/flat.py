"""Flattened-weight baselines: `RawWeights` (the vector itself) and `FlatPCA`.

Both read a model's tensors concatenated in file order, zero-padded or truncated to a
fixed ``length``. They are *not* invariant to any weight symmetry — permuting hidden
units moves the vector — which is exactly what they measure against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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

FLAT_LENGTH = 16384


@register_encoder("raw-weights")
class RawWeights(Encoder):
    """The flattened, zero-padded weights as the embedding: after L2 normalisation the
    cosine of two embeddings is the cosine of the two raw weight vectors.

    Args:
        config: ``length`` (values kept, default 16384; also the dimension).

    Shapes:
        embeddings: ``(n, length)``.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__({"length": FLAT_LENGTH, **(config or {})})

    @property
    def dim(self) -> int:
        return int(self.config["length"])

    def embed_batch(self, models: list[Net | TensorSet]) -> np.ndarray:
        return flat_matrix(models, self.dim)


@register_encoder("flat-pca")
class FlatPCA(Encoder):
    """Flattened weights (zero-padded/truncated to ``length``) projected on their principal
    components, learned by `fit` on a corpus. With fewer components than ``dim`` (a
    corpus smaller than ``dim``) the embedding is zero-padded to ``dim``.

    Args:
        config: ``dim`` (components, default 256), ``length`` (default 16384), ``seed``
            (for the randomised SVD of large corpora).

    Attributes:
        mean_: ``(length,)`` corpus mean; components_: ``(k, length)``; None until fitted.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__({"dim": 256, "length": FLAT_LENGTH, "seed": 0, **(config or {})})
        self.mean_: torch.Tensor | None = None
        self.components_: torch.Tensor | None = None

    def fit(self, items: Sequence[Item]) -> FlatPCA:
        """Learn the mean and the top ``dim`` principal directions of `items`' weights.

        Returns:
            self.
        """
        from sklearn.decomposition import PCA

        x = flat_matrix(load_models(items), int(self.config["length"]))  # (n, L)
        if x.shape[0] < 2:
            raise NotFittedError("flat-pca: fit needs at least 2 models")
        k = min(self.dim, x.shape[0], x.shape[1])
        pca = PCA(n_components=k, random_state=int(self.config["seed"])).fit(x)
        self.mean_, self.components_ = to_tensor(pca.mean_), to_tensor(pca.components_)
        return self

    def embed_batch(self, models: list[Net | TensorSet]) -> np.ndarray:
        if self.mean_ is None or self.components_ is None:
            raise NotFittedError(
                "flat-pca is not fitted: call FlatPCA(...).fit(models) on a "
                "corpus first, or load a fitted one"
            )
        x = flat_matrix(models, int(self.config["length"]))
        mean, comps = self.mean_.double().numpy(), self.components_.double().numpy()
        return pad_columns((x - mean) @ comps.T, self.dim)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.mean_ is None or self.components_ is None:
            return {}
        return {"mean_": self.mean_, "components_": self.components_}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.mean_, self.components_ = tensors.get("mean_"), tensors.get("components_")
