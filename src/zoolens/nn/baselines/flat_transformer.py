"""`FlatTransformer`: a Transformer over the flattened weight sequence, cut into chunks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from zoolens.ir import Net, TensorSet
from zoolens.nn.base import register_encoder
from zoolens.nn.baselines._common import flatten_weights
from zoolens.nn.config import ConfigError, EncoderConfig, bounded
from zoolens.nn.gnn import symlog
from zoolens.nn.torch_encoder import TorchEncoder, TorchEncoderConfig


@dataclass(frozen=True)
class FlatTransformerConfig(TorchEncoderConfig):
    """Args:
    dim: embedding width.
    chunk: flattened values per token.
    max_chunks: tokens read (the rest of the weights is cut).
    hidden: token width.
    heads: attention heads (divides ``hidden``).
    layers: Transformer layers.
    """

    dim: int = bounded(256, 1)
    chunk: int = bounded(64, 1)
    max_chunks: int = bounded(256, 1)
    hidden: int = bounded(64, 1)
    heads: int = bounded(4, 1)
    layers: int = bounded(2, 1)

    def validate(self) -> None:
        if self.hidden % self.heads:
            raise ConfigError(
                f"FlatTransformerConfig: hidden {self.hidden} is not a multiple of heads "
                f"{self.heads}"
            )


class FlatTransformerNet(nn.Module):
    """Chunks of the flattened weights → tokens → Transformer → (CLS ‖ mean) → ``dim``.

    Args:
        config: the encoder's `FlatTransformerConfig`.

    Shapes:
        chunks: ``(B, M, chunk)``; mask: ``(B, M)`` True for real chunks → ``(B, dim)``.
    """

    def __init__(self, config: FlatTransformerConfig) -> None:
        super().__init__()
        d = config.hidden
        self.embed = nn.Linear(config.chunk, d)
        self.position = nn.Embedding(config.max_chunks, d)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.normal_(self.position.weight, std=0.1)
        nn.init.normal_(self.cls, std=0.1)
        layer = nn.TransformerEncoderLayer(
            d, config.heads, 2 * d, dropout=0.0, batch_first=True, norm_first=True
        )
        self.seq = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(2 * d), nn.Linear(2 * d, config.dim))

    def forward(self, chunks: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, m, _ = chunks.shape
        tokens = self.embed(symlog(chunks)) + self.position.weight[:m][None]  # (B, M, d)
        seq = torch.cat([self.cls.expand(b, 1, -1), tokens], dim=1)  # (B, 1 + M, d)
        keep = torch.cat([torch.ones(b, 1, dtype=torch.bool), mask], dim=1)
        out = self.seq(seq, src_key_padding_mask=~keep)
        valid = mask[..., None].to(out.dtype)
        mean = (out[:, 1:] * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        z: torch.Tensor = self.head(torch.cat([out[:, 0], mean], dim=1))  # (B, dim)
        return z


@register_encoder("flat-transformer")
class FlatTransformer(TorchEncoder):
    """The seeds' sequence baseline: the weights, flattened in file order and cut into
    chunks of ``chunk`` values (at most ``max_chunks``; the rest is truncated), read by a
    Transformer. Not invariant to any weight symmetry. Untrained it is a fixed-seed
    random encoder; train it through `forward` like `NeuralGraphEncoder`.

    Args:
        config: a `FlatTransformerConfig` (or keyword overrides of its defaults).
    """

    config_class: ClassVar[type[EncoderConfig]] = FlatTransformerConfig

    def build_module(self) -> nn.Module:
        return FlatTransformerNet(self.config)

    def chunks(self, models: list[Net | TensorSet]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded chunk sequences and their mask.

        Shapes:
            returns ``(B, M, chunk)`` float32 and ``(B, M)`` bool, M = longest model's
            number of chunks (≤ ``max_chunks``).
        """
        c, m_max = int(self.config.chunk), int(self.config.max_chunks)
        rows, counts = [], []
        for model in models:
            flat, n = flatten_weights(model, c * m_max)
            rows.append(flat.float().reshape(m_max, c))
            counts.append(max(1, -(-n // c)))
        m = max(counts)
        mask = torch.arange(m)[None, :] < torch.tensor(counts)[:, None]
        return torch.stack(rows)[:, :m], mask

    def train_forward(self, models: list[Net | TensorSet]) -> torch.Tensor:
        return self.forward(models)

    def forward(self, models: list[Net | TensorSet]) -> torch.Tensor:
        """Differentiable embeddings ``(len(models), dim)`` (unnormalised), for training."""
        z: torch.Tensor = self.module(*self.chunks(models))
        return z
