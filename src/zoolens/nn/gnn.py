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
    """One layer: messages along and against each edge, PNA-style aggregation (sum, mean,
    max), node and edge updates with residual connections and LayerNorm.

    Edges carry narrow states (width ``de``) and every per-edge computation is kept to
    ``O(E · d · de)``: a message is ``act(P h_src + Q e)`` — the node part computed once per
    node and gathered — and its output map is applied after aggregation, per node (it
    commutes with sum and mean; for max it is a different but equally invariant function).

    Shapes:
        h: ``(N, d)``; e: ``(E, de)``; edge_index: ``(2, E)``.
    """

    def __init__(self, d: int, de: int) -> None:
        super().__init__()
        self.node_proj = nn.Linear(d, 2 * d)  # message parts: forward, backward
        self.edge_proj = nn.Linear(de, 2 * d, bias=False)
        self.update = mlp(7 * d, d, d)
        self.edge_node_proj = nn.Linear(d, 2 * de)  # edge-update parts: source, target
        self.edge_self = nn.Linear(de, de)
        self.edge_out = nn.Linear(de, de)
        self.norm_h, self.norm_e = nn.LayerNorm(d), nn.LayerNorm(de)
        self.act = nn.SiLU()

    def forward(
        self,
        h: torch.Tensor,
        e: torch.Tensor,
        edge_index: torch.Tensor,
        degree: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        src, dst = edge_index
        n, d = h.shape
        hf, hb = self.node_proj(h).split(d, dim=1)  # (N, d) each
        ef, eb = self.edge_proj(e).split(d, dim=1)  # (E, d) each
        aggs = [h]
        for m, at, deg in (
            (self.act(hf[src] + ef), dst, degree[1]),
            (self.act(hb[dst] + eb), src, degree[0]),
        ):
            total = scatter(m, at, n, "sum")  # (N, d)
            aggs += [total, total / deg, scatter(m, at, n, "amax")]
        h = self.norm_h(h + self.update(torch.cat(aggs, dim=1)))
        hs, hd = self.edge_node_proj(h).split(e.shape[1], dim=1)  # (N, de) each
        e = self.norm_e(e + self.edge_out(self.act(hs[src] + hd[dst] + self.edge_self(e))))
        return h, e


def _degrees(
    edge_index: torch.Tensor, n: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Out- and in-degree of every node, ``(N, 1)`` each, at least 1."""
    ones = torch.ones(edge_index.shape[1], dtype=dtype)
    out_deg = torch.zeros(n, dtype=dtype).index_add_(0, edge_index[0], ones)
    in_deg = torch.zeros(n, dtype=dtype).index_add_(0, edge_index[1], ones)
    return out_deg.clamp_min(1)[:, None], in_deg.clamp_min(1)[:, None]


class NeuralGraphNet(nn.Module):
    """Neural graph → embedding, invariant to node permutations within each hidden layer.

    Args:
        config: ``hidden`` (node/edge width), ``layers`` (message-passing steps),
            ``dim`` (output), ``heads``, ``readout_layers``, ``readout`` ("transformer" or
            "gru"), ``n_probes`` (0 = no probe features).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        d, de = int(config["hidden"]), int(config["edge_hidden"])
        self.node_in = nn.Linear(NODE_FEATURES + int(config["n_probes"]), d)
        self.edge_in = nn.Linear(KERNEL, de)
        self.edge_type = nn.Embedding(len(EDGE_TYPES), de)
        self.role = nn.Embedding(3, d)
        self.in_pos, self.out_pos = nn.Embedding(MAX_POSITION, d), nn.Embedding(MAX_POSITION, d)
        self.layer_pos = nn.Embedding(MAX_LAYERS, d)
        self.mp = nn.ModuleList(MessagePassing(d, de) for _ in range(int(config["layers"])))
        self.token = nn.Linear(2 * d, d)
        self.readout_kind = str(config["readout"])
        if self.readout_kind == "gru":
            self.seq: nn.Module = nn.GRU(d, d, batch_first=True)
        else:
            layer = nn.TransformerEncoderLayer(
                d, int(config["heads"]), 2 * d, dropout=0.0, batch_first=True, norm_first=True
            )
            self.seq = nn.TransformerEncoder(
                layer, int(config["readout_layers"]), enable_nested_tensor=False
            )
        self.head = nn.Sequential(nn.LayerNorm(2 * d), nn.Linear(2 * d, int(config["dim"])))
        for m in self.modules():  # structural embeddings must not drown the weights' signal
            if isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.1)

    def embed_nodes(self, b: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        feats = b.x if b.probes is None else torch.cat([b.x, b.probes], dim=1)
        pos = b.position.clamp_max(MAX_POSITION - 1)
        h = (
            self.node_in(symlog(feats))
            + self.role(b.role)
            + self.layer_pos(b.layer.clamp_max(MAX_LAYERS - 1))
        )
        h = h + torch.where((b.role == 0)[:, None], self.in_pos(pos), 0.0)
        h = h + torch.where((b.role == 2)[:, None], self.out_pos(pos), 0.0)
        e = self.edge_in(symlog(b.edge_attr)) + self.edge_type(b.edge_type)
        return h, e

    def forward(self, b: GraphBatch) -> torch.Tensor:
        """Returns unnormalised embeddings ``(num_graphs, dim)``."""
        h, e = self.embed_nodes(b)
        degree = _degrees(b.edge_index, h.shape[0], h.dtype)
        for layer in self.mp:
            h, e = layer(h, e, b.edge_index, degree)
        n_tokens = int(b.layers_per_graph.sum())
        tokens = self.token(
            torch.cat(
                [
                    scatter(h, b.layer_id, n_tokens, "mean"),
                    scatter(h, b.layer_id, n_tokens, "amax"),
                ],
                dim=1,
            )
        )
        seq, mask = self._pad(tokens, b.layers_per_graph)  # (G, L, d), (G, L)
        if self.readout_kind == "gru":
            out, _ = self.seq(seq)
        else:
            out = self.seq(seq, src_key_padding_mask=~mask)
        valid = mask[..., None].to(out.dtype)
        mean = (out * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        last = out[torch.arange(out.shape[0]), b.layers_per_graph - 1]  # the output layer
        out_z: torch.Tensor = self.head(torch.cat([mean, last], dim=1))
        return out_z

    def _pad(self, tokens: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g, longest = counts.numel(), int(counts.max())
        mask = torch.arange(longest)[None, :] < counts[:, None]  # (G, L)
        seq = tokens.new_zeros((g, longest, tokens.shape[1]))
        seq[mask] = tokens
        pos = self.layer_pos(torch.arange(longest).clamp_max(MAX_LAYERS - 1))
        return seq + pos[None], mask
