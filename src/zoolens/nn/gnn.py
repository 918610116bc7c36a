"""The equivariant neural-graph network: edge-conditioned message passing + layer readout."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoolens.graph import EDGE_TYPES, KERNEL, NODE_FEATURES, GraphBatch

MAX_POSITION = 1024  # input/output units beyond this share the last position embedding
MAX_LAYERS = 64


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) · log(1 + |x|): keeps small weights linear and tames large ones."""
    return torch.sign(x) * torch.log1p(x.abs())


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.SiLU(), nn.Linear(d_hidden, d_out))


def scatter(src: torch.Tensor, index: torch.Tensor, n: int, reduce: str) -> torch.Tensor:
    """Reduce rows of `src` ``(E, d)`` into ``(n, d)`` by `index` (sum, mean or amax)."""
    out = torch.zeros((n, src.shape[1]), dtype=src.dtype, device=src.device)
    idx = index[:, None].expand_as(src)
    return out.scatter_reduce(0, idx, src, reduce=reduce, include_self=False)


class MessagePassing(nn.Module):
    """One layer: messages along and against each edge, PNA-style aggregation, node and
    edge updates with residual connections and LayerNorm.

    Shapes:
        h: ``(N, d)``; e: ``(E, d)``; edge_index: ``(2, E)``.
    """

    def __init__(self, d: int) -> None:
        super().__init__()
        self.msg_fwd, self.msg_bwd = mlp(2 * d, d, d), mlp(2 * d, d, d)
        self.update = mlp(7 * d, d, d)
        self.edge_update = mlp(3 * d, d, d)
        self.norm_h, self.norm_e = nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, h: torch.Tensor, e: torch.Tensor, edge_index: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        src, dst = edge_index
        n = h.shape[0]
        fwd = self.msg_fwd(torch.cat([h[src], e], dim=1))  # (E, d)
        bwd = self.msg_bwd(torch.cat([h[dst], e], dim=1))  # (E, d)
        aggs = [h]
        for m, at in ((fwd, dst), (bwd, src)):
            aggs += [scatter(m, at, n, "sum"), scatter(m, at, n, "mean"), scatter(m, at, n, "amax")]
        h = self.norm_h(h + self.update(torch.cat(aggs, dim=1)))
        e = self.norm_e(e + self.edge_update(torch.cat([h[src], h[dst], e], dim=1)))
        return h, e


class NeuralGraphNet(nn.Module):
    """Neural graph → embedding, invariant to node permutations within each hidden layer.

    Args:
        config: ``hidden`` (node/edge width), ``layers`` (message-passing steps),
            ``dim`` (output), ``heads``, ``readout_layers``, ``readout`` ("transformer" or
            "gru"), ``n_probes`` (0 = no probe features).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        d = int(config["hidden"])
        self.node_in = nn.Linear(NODE_FEATURES + int(config["n_probes"]), d)
        self.edge_in = nn.Linear(KERNEL, d)
        self.edge_type = nn.Embedding(len(EDGE_TYPES), d)
        self.role = nn.Embedding(3, d)
        self.in_pos, self.out_pos = nn.Embedding(MAX_POSITION, d), nn.Embedding(MAX_POSITION, d)
        self.layer_pos = nn.Embedding(MAX_LAYERS, d)
        self.mp = nn.ModuleList(MessagePassing(d) for _ in range(int(config["layers"])))
        self.token = nn.Linear(2 * d, d)
        self.readout_kind = str(config["readout"])
        if self.readout_kind == "gru":
            self.seq: nn.Module = nn.GRU(d, d, batch_first=True)
        else:
            layer = nn.TransformerEncoderLayer(d, int(config["heads"]), 2 * d, dropout=0.0,
                                               batch_first=True, norm_first=True)
            self.seq = nn.TransformerEncoder(layer, int(config["readout_layers"]),
                                             enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(2 * d), nn.Linear(2 * d, int(config["dim"])))
        for m in self.modules():  # structural embeddings must not drown the weights' signal
            if isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.1)

    def embed_nodes(self, b: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        feats = b.x if b.probes is None else torch.cat([b.x, b.probes], dim=1)
        pos = b.position.clamp_max(MAX_POSITION - 1)
        h = self.node_in(symlog(feats)) + self.role(b.role) + self.layer_pos(
            b.layer.clamp_max(MAX_LAYERS - 1))
        h = h + torch.where((b.role == 0)[:, None], self.in_pos(pos), 0.0)
        h = h + torch.where((b.role == 2)[:, None], self.out_pos(pos), 0.0)
        e = self.edge_in(symlog(b.edge_attr)) + self.edge_type(b.edge_type)
        return h, e

    def forward(self, b: GraphBatch) -> torch.Tensor:
        """Returns unnormalised embeddings ``(num_graphs, dim)``."""
        h, e = self.embed_nodes(b)
        for layer in self.mp:
            h, e = layer(h, e, b.edge_index)
        n_tokens = int(b.layers_per_graph.sum())
        tokens = self.token(torch.cat([scatter(h, b.layer_id, n_tokens, "mean"),
                                       scatter(h, b.layer_id, n_tokens, "amax")], dim=1))
        seq, mask = self._pad(tokens, b.layers_per_graph)  # (G, L, d), (G, L)
        if self.readout_kind == "gru":
            out, _ = self.seq(seq)
        else:
            out = self.seq(seq, src_key_padding_mask=~mask)
        valid = mask[..., None].to(out.dtype)
        mean = (out * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        last = out[torch.arange(out.shape[0]), b.layers_per_graph - 1]  # the output layer
        return self.head(torch.cat([mean, last], dim=1))

    def _pad(self, tokens: torch.Tensor, counts: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        g, longest = counts.numel(), int(counts.max())
        mask = torch.arange(longest)[None, :] < counts[:, None]  # (G, L)
        seq = tokens.new_zeros((g, longest, tokens.shape[1]))
        seq[mask] = tokens
        pos = self.layer_pos(torch.arange(longest).clamp_max(MAX_LAYERS - 1))
        return seq + pos[None], mask
