"""`LayerwiseEncoder`: any checkpoint, wiring unknown → one GNN per weight tensor → Transformer.

For bare weights (LSTMs, attention, anything with ≥2-D tensors) the whole-network graph is
unknown, so each weight tensor is embedded on its own as a bipartite graph (rows × columns,
kernel axes as edge features, see `zoolens.graph.tensors_to_layer_graphs`) and the tensors'
tokens are read, in file order, by a small Transformer.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoolens.errors import LoadError
from zoolens.graph import LayerGraph, tensors_to_layer_graphs
from zoolens.ir import Net, TensorSet
from zoolens.nn.base import register_encoder
from zoolens.nn.config import ConfigError, EncoderConfig, bounded
from zoolens.nn.gnn import mlp, symlog
from zoolens.nn.torch_encoder import TorchEncoder, TorchEncoderConfig


@dataclass(frozen=True)
class LayerwiseConfig(TorchEncoderConfig):
    """Hyper-parameters of `LayerwiseEncoder`.

    Args:
        dim: embedding width.
        hidden: layer-token width.
        edge_hidden: edge / row / column width of the per-tensor GNN.
        heads: attention heads of the token Transformer (divides ``hidden``).
        readout_layers: its layers.
        max_kernel: kernel slots per edge (longer kernels are pooled).
        max_positions: file positions with their own embedding.
        chunk_edges: edges per chunk (bounds memory on huge tensors).
    """

    dim: int = bounded(256, 1)
    hidden: int = bounded(64, 1)
    edge_hidden: int = bounded(16, 1)
    heads: int = bounded(4, 1)
    readout_layers: int = bounded(2, 1)
    max_kernel: int = bounded(9, 1)
    max_positions: int = bounded(512, 1)
    chunk_edges: int = bounded(1 << 18, 1)

    def validate(self) -> None:
        if self.hidden % self.heads:
            raise ConfigError(
                f"LayerwiseConfig: hidden {self.hidden} is not a multiple of heads {self.heads}"
            )


N_STATS = 7  # tensor-level features of a layer token, see `_tensor_stats`


def _tensor_stats(w: torch.Tensor, bias: torch.Tensor | None, k_max: int) -> torch.Tensor:
    """Permutation-invariant summary of a stacked group of same-shape tensors.

    Shapes:
        w: ``(B, R, C, k)``; bias: ``(B, R)`` or None → ``(B, N_STATS)``.
    """
    b, r, c, k = w.shape
    rms = w.square().mean(dim=(1, 2, 3)).sqrt()  # (B,)
    mean = w.mean(dim=(1, 2, 3))
    cols = [rms.clamp_min(1e-12).log(), mean / rms.clamp_min(1e-12)]
    shape = torch.tensor([np.log1p(r), np.log1p(c), k / k_max], dtype=w.dtype)
    cols += list(shape[None, :].expand(b, 3).unbind(1))
    if bias is None:
        cols += [w.new_zeros(b), w.new_zeros(b)]
    else:
        cols += [w.new_ones(b), symlog(bias.square().mean(1).sqrt())]
    return torch.stack(cols, dim=1)


class BipartiteGNN(nn.Module):
    """One weight tensor (a bipartite graph) → one layer token.

    Edge features x_ij are the kernel values, normalised by the tensor's RMS and raw, both
    symlog'd. Edge states ``silu(V x_ij)`` are averaged over columns into row states and
    over rows into column states (plus each row's / column's mean, RMS and max |w|); one
    round of messages ``silu(U x_ij + R r_i + C c_j)`` updates rows and columns; rows and
    columns are pooled (mean, max) into the token. Every per-edge step is elementwise or
    a mean, so huge tensors stream in row chunks of at most ``chunk_edges`` edges with
    memory bounded by the largest tensor; the MLPs act on rows and columns only.

    Args:
        k_max: kernel slots (longer kernels were pooled by `tensors_to_layer_graphs`).
        h: edge / row / column width.
        d: token width.
        chunk_edges: edges per chunk.

    Shapes:
        w: ``(B, R, C, k)`` with k ≤ k_max; bias: ``(B, R)`` or None → ``(B, d)``.
    """

    def __init__(self, k_max: int, h: int, d: int, chunk_edges: int) -> None:
        super().__init__()
        self.k_max, self.chunk_edges = k_max, chunk_edges
        self.edge, self.msg = nn.Linear(2 * k_max, h), nn.Linear(2 * k_max, h)
        self.row_in, self.col_in = mlp(h + 5, h, h), mlp(h + 3, h, h)
        self.msg_r, self.msg_c = nn.Linear(h, h, bias=False), nn.Linear(h, h, bias=False)
        self.row_up, self.col_up = mlp(h, h, h), mlp(h, h, h)
        self.norm_r, self.norm_c = nn.LayerNorm(h), nn.LayerNorm(h)
        self.token = mlp(4 * h + N_STATS, d, d)

    def _sweep(
        self,
        w: torch.Tensor,
        scale: torch.Tensor,
        lin: nn.Linear,
        row_add: torch.Tensor | None = None,
        col_add: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``silu(lin(x_ij) + row_add_i + col_add_j)`` averaged per row and per column.

        Shapes:
            w: ``(B, R, C, k)``; row_add: ``(B, R, h)``; col_add: ``(B, C, h)`` →
            ``(B, R, h)``, ``(B, C, h)``.
        """
        b, r, c, k = w.shape
        idx = torch.cat([torch.arange(k), self.k_max + torch.arange(k)])  # = zero padding
        weight = lin.weight[:, idx]  # (h, 2k)
        inplace = not torch.is_grad_enabled()
        step = max(1, self.chunk_edges // max(b * c, 1))
        rows, col_sum = [], None
        for s in range(0, r, step):
            x = w[:, s : s + step]  # (B, r', C, k)
            e = F.linear(torch.cat([symlog(x / scale), symlog(x)], dim=-1), weight, lin.bias)
            if row_add is not None and col_add is not None:
                ra, ca = row_add[:, s : s + step, None], col_add[:, None]
                e = e.add_(ra).add_(ca) if inplace else e + ra + ca
            e = F.silu(e, inplace=inplace)  # (B, r', C, h)
            rows.append(e.mean(2))
            col_sum = e.sum(1) if col_sum is None else col_sum + e.sum(1)
        assert col_sum is not None
        return torch.cat(rows, dim=1), col_sum / r

    def forward(self, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        scale = w.square().mean(dim=(1, 2, 3)).sqrt().clamp_min(1e-12)[:, None, None, None]
        e_rows, e_cols = self._sweep(w, scale, self.edge)  # (B, R, h), (B, C, h)
        if bias is None:
            bfeat = w.new_zeros((*w.shape[:2], 2))
        else:
            bfeat = torch.stack([symlog(bias / scale[:, :, 0, 0]), symlog(bias)], dim=-1)
        wn = w / scale
        r = self.norm_r(self.row_in(torch.cat([e_rows, _axis_stats(wn, (2, 3)), bfeat], -1)))
        c = self.norm_c(self.col_in(torch.cat([e_cols, _axis_stats(wn, (1, 3))], -1)))
        m_rows, m_cols = self._sweep(w, scale, self.msg, self.msg_r(r), self.msg_c(c))
        r = self.norm_r(r + self.row_up(m_rows))  # (B, R, h)
        c = self.norm_c(c + self.col_up(m_cols))  # (B, C, h)
        pooled = [r.mean(1), r.amax(1), c.mean(1), c.amax(1)]
        token: torch.Tensor = self.token(
            torch.cat([*pooled, _tensor_stats(w, bias, self.k_max)], dim=1)
        )  # (B, d)
        return token


def _axis_stats(wn: torch.Tensor, dims: tuple[int, int]) -> torch.Tensor:
    """Mean, RMS and max |·| of the normalised weights over `dims`: ``(B, n, 3)``."""
    return torch.stack([wn.mean(dims), wn.square().mean(dims).sqrt(), wn.abs().amax(dims)], -1)


class LayerwiseNet(nn.Module):
    """Layer graphs of many models → embeddings ``(n_models, dim)``.

    Args:
        config: the encoder's `LayerwiseConfig`.
    """

    def __init__(self, config: LayerwiseConfig) -> None:
        super().__init__()
        d = config.hidden
        self.gnn = BipartiteGNN(config.max_kernel, config.edge_hidden, d, config.chunk_edges)
        self.max_positions = config.max_positions
        self.position = nn.Embedding(self.max_positions, d)
        nn.init.normal_(self.position.weight, std=0.1)
        layer = nn.TransformerEncoderLayer(
            d, config.heads, 2 * d, dropout=0.0, batch_first=True, norm_first=True
        )
        self.seq = nn.TransformerEncoder(layer, config.readout_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(2 * d), nn.Linear(2 * d, config.dim))

    def tokens(self, graphs: list[list[LayerGraph]]) -> torch.Tensor:
        """Layer tokens of every model, concatenated in (model, file position) order.

        Tensors of equal shape (across models) go through the GNN as one batch of at
        most ``chunk_edges`` edges (huge tensors: one at a time, never stacked).
        """
        groups: dict[tuple[Any, ...], list[tuple[int, LayerGraph]]] = defaultdict(list)
        flat = [lg for gs in graphs for lg in gs]
        for i, lg in enumerate(flat):
            groups[(tuple(lg.weight.shape), lg.bias is not None)].append((i, lg))
        order, outs = [], []
        for same_shape in groups.values():
            edges = same_shape[0][1].weight.shape[0] * same_shape[0][1].weight.shape[1]
            per_batch = max(1, self.gnn.chunk_edges // max(edges, 1))
            for s in range(0, len(same_shape), per_batch):
                members = same_shape[s : s + per_batch]
                w = torch.stack([lg.weight for _, lg in members])  # (B, R, C, k)
                biases = [lg.bias for _, lg in members if lg.bias is not None]
                b = torch.stack(biases) if biases else None  # (B, R)
                outs.append(self.gnn(w, b))  # (B, d)
                order += [i for i, _ in members]
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return torch.cat(outs)[inverse]  # (T, d)

    def forward(self, graphs: list[list[LayerGraph]]) -> torch.Tensor:
        """Returns unnormalised embeddings ``(len(graphs), dim)``."""
        counts = torch.tensor([len(gs) for gs in graphs], dtype=torch.long)
        tokens = self.tokens(graphs)
        g, longest = len(graphs), int(counts.max())
        mask = torch.arange(longest)[None, :] < counts[:, None]  # (G, L)
        seq = tokens.new_zeros((g, longest, tokens.shape[1]))
        seq[mask] = tokens
        seq = seq + self.position(torch.arange(longest).clamp_max(self.max_positions - 1))[None]
        out = self.seq(seq, src_key_padding_mask=~mask)  # (G, L, d)
        valid = mask[..., None].to(out.dtype)
        mean = (out * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        last = out[torch.arange(g), counts - 1]
        z: torch.Tensor = self.head(torch.cat([mean, last], dim=1))  # (G, dim)
        return z


@register_encoder("layerwise")
class LayerwiseEncoder(TorchEncoder):
    """Embeds any checkpoint — Nets and bare TensorSets of any architecture — tensor by tensor.

    Each ≥2-D floating tensor, in file order, is a bipartite graph embedded by a
    permutation-invariant GNN (`BipartiteGNN`); the layer tokens plus a file-position
    embedding go through a small Transformer, pooled (mean ‖ last) and projected to
    ``dim``. A following 1-D tensor of matching length is the tensor's bias.

    Invariance — larger than the network's symmetry group: the embedding is invariant
    to *independent* permutations of the rows (with their bias) and of the columns of
    every tensor. The neural-graph encoder keeps the coupling "layer ℓ's rows are layer
    ℓ+1's columns"; this one does not, so two networks whose layers are each permuted
    differently — not a symmetry, a different function — get the same embedding. That
    is the price of needing no wiring. It is not invariant to scale/sign symmetries.

    Memory is bounded by the largest tensor: edges are processed in row chunks of at
    most ``chunk_edges``. Initialisation is deterministic from ``config.seed``
    without touching the global RNG.

    Args:
        config: a `LayerwiseConfig` (or keyword overrides of its defaults).
    """

    config_class: ClassVar[type[EncoderConfig]] = LayerwiseConfig
    config: LayerwiseConfig

    def build_module(self) -> nn.Module:
        return LayerwiseNet(self.config)

    def layer_graphs(self, model: Net | TensorSet) -> list[LayerGraph]:
        """The model's non-empty ≥2-D tensors as bipartite graphs, in file order.

        Raises:
            LoadError: when the model holds no ≥2-D floating tensor.
        """
        tensors = model.state_dict() if isinstance(model, Net) else model.tensors
        ts = TensorSet({k: v for k, v in tensors.items() if v.numel() > 0}, dict(model.meta))
        graphs = tensors_to_layer_graphs(ts, self.config.max_kernel)
        if not graphs:
            src = ts.meta.get("source", "a model")
            raise LoadError(
                f"{src}: no weight tensor with 2 or more dimensions; the "
                "layerwise encoder has nothing to embed"
            )
        return graphs

    def train_forward(self, models: list[Net | TensorSet]) -> torch.Tensor:
        return self.forward(models)

    def forward(self, models: list[Net | TensorSet]) -> torch.Tensor:
        """Differentiable embeddings ``(len(models), dim)`` (unnormalised), for training.

        Shapes:
            returns ``(len(models), dim)`` float32.
        """
        z: torch.Tensor = self.module([self.layer_graphs(m) for m in models])
        return z
