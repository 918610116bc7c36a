"""`Metadata`: TF-IDF over names and config strings — what a catalog without weights sees."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from zoolens.ir import Net, TensorSet
from zoolens.nn.base import Encoder, Item, register_encoder
from zoolens.nn.baselines._common import load_models, pad_columns, to_tensor
from zoolens.nn.config import EncoderConfig, bounded

_TOKEN = r"\S+"
_WORD = re.compile(r"[A-Za-z]+")


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape) or "scalar"


def _name_tokens(name: str) -> list[str]:
    """A tensor or op name as tokens: its words and its digit-free pattern."""
    return [
        f"name:{re.sub(r'[0-9]+', '#', name)}",
        *(f"word:{w.lower()}" for w in _WORD.findall(name)),
    ]


def _meta_tokens(meta: dict[str, Any]) -> list[str]:
    out = []
    for key, value in sorted(meta.items()):
        if isinstance(value, (str, int, float, bool)):
            out.append(f"{key}={value}".replace(" ", "_"))
        out += [f"word:{w.lower()}" for w in _WORD.findall(f"{key} {value}")]
    return out


def metadata_text(model: Net | TensorSet) -> str:
    """The words the metadata baseline reads, space-separated.

    A Net: op kinds, activations, parameter shapes per op kind, op names, input shape,
    depth; a TensorSet: tensor names (words and digit-free patterns) and shapes. Both:
    the ``meta`` dict (provenance, manifest fields) as ``key=value`` and words.
    """
    tokens: list[str] = []
    if isinstance(model, Net):
        tokens.append(f"input:{_shape(model.input_shape)}")
        tokens.append(f"depth:{len(model.dense_ops())}")
        for op in model.ops:
            tokens.append(f"op:{op.kind}")
            if op.kind == "act":
                tokens.append(f"act:{op.fn}")
            tokens += _name_tokens(op.name)
            tokens += [f"{op.kind}.{role}:{_shape(t.shape)}" for role, t in op.params.items()]
    else:
        for name, t in model.tensors.items():
            tokens += _name_tokens(name)
            tokens.append(f"shape:{_shape(t.shape)}")
    tokens += _meta_tokens(model.meta)
    return " ".join(tokens)


@dataclass(frozen=True)
class MetadataConfig(EncoderConfig):
    """Args:
    dim: embedding width (SVD components, or hashing buckets unfitted).
    max_features: vocabulary cap.
    seed: of the randomised SVD.
    """

    dim: int = bounded(256, 1)
    max_features: int = bounded(1 << 16, 1)
    seed: int = 0


@register_encoder("metadata")
class Metadata(Encoder):
    """TF-IDF over `metadata_text`, reduced to ``dim`` by truncated SVD; both learned by
    `fit` on a corpus. Unfitted, a stateless hashing vectoriser with ``dim`` buckets.
    It never looks at weight values: it is the "names and tags" baseline.

    Args:
        config: a `MetadataConfig` (or keyword overrides of its defaults).

    Attributes:
        vocab_: list of tokens; idf_: ``(V,)``; components_: ``(k, V)`` with k ≤ dim
        (identity when V ≤ dim); None until fitted.
    """

    config_class: ClassVar[type[EncoderConfig]] = MetadataConfig

    def __init__(self, config: EncoderConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.vocab_: list[str] | None = None
        self.idf_: torch.Tensor | None = None
        self.components_: torch.Tensor | None = None

    def fit(self, items: Sequence[Item]) -> Metadata:
        """Learn the vocabulary, IDF weights and SVD projection on `items`' metadata.

        Returns:
            self.
        """
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import CountVectorizer

        texts = [metadata_text(m) for m in load_models(items)]
        cv = CountVectorizer(
            token_pattern=_TOKEN, lowercase=False, max_features=int(self.config.max_features)
        )
        counts = cv.fit_transform(texts)
        self.vocab_ = [str(t) for t in cv.get_feature_names_out()]
        df = np.asarray((counts > 0).sum(axis=0)).ravel()
        self.idf_ = to_tensor(np.log((1 + len(texts)) / (1 + df)) + 1.0)
        v = len(self.vocab_)
        if v <= self.dim:
            self.components_ = to_tensor(np.eye(v))
        else:
            svd = TruncatedSVD(self.dim, algorithm="randomized", random_state=int(self.config.seed))
            self.components_ = to_tensor(svd.fit(self._tfidf(texts)).components_)
        return self

    def _tfidf(self, texts: list[str]) -> Any:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize

        assert self.vocab_ is not None and self.idf_ is not None
        cv = CountVectorizer(token_pattern=_TOKEN, lowercase=False, vocabulary=self.vocab_)
        x = cv.transform(texts).astype(np.float64).multiply(self.idf_.double().numpy()[None])
        return normalize(x.tocsr(), norm="l2")

    def embed_batch(self, models: list[Net | TensorSet]) -> np.ndarray:
        texts = [metadata_text(m) for m in models]
        if self.vocab_ is None or self.components_ is None:
            from sklearn.feature_extraction.text import HashingVectorizer

            hv = HashingVectorizer(
                n_features=self.dim,
                token_pattern=_TOKEN,
                lowercase=False,
                alternate_sign=False,
                norm="l2",
            )
            return np.asarray(hv.transform(texts).toarray(), dtype=np.float64)
        z = self._tfidf(texts) @ self.components_.double().numpy().T  # (n, k)
        return pad_columns(np.asarray(z), self.dim)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.vocab_ is None or self.idf_ is None or self.components_ is None:
            return {}
        vocab = np.frombuffer("\n".join(self.vocab_).encode(), dtype=np.uint8).copy()
        return {
            "vocab_": torch.from_numpy(vocab),
            "idf_": self.idf_,
            "components_": self.components_,
        }

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if "vocab_" not in tensors:
            return
        self.vocab_ = bytes(tensors["vocab_"].numpy().tobytes()).decode().split("\n")
        self.idf_, self.components_ = tensors["idf_"], tensors["components_"]
