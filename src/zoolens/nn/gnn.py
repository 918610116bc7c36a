"""The equivariant neural-graph network: edge-conditioned message passing + layer readout."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoolens.graph import DOMAIN_FEATURES, EDGE_TYPES, KERNEL, NODE_FEATURES, GraphBatch
from zoolens.nn.edge_runs import Chunk, chunks

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
    The per-edge work (gathers, messages, their sum and max) runs on a `Chunk` of whole
    graphs, with and without autograd (`zoolens.nn.edge_runs`); ``act`` is SiLU there.

    Shapes:
        h: ``(N, d)``; e: ``(E, de)``, edges in the chunk's order.
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
        self, h: torch.Tensor, e: torch.Tensor, c: Chunk, update_edges: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """New node and edge states of the graphs of chunk `c`; the edge states are
        returned as they are unless `update_edges` (the last layer's are never read)."""
        d, de = h.shape[1], e.shape[1]
        hf, hb = self.node_proj(h).split(d, dim=1)  # (N, d) each
        w = self.edge_proj.weight  # (2d, de): forward, backward
        sum_f, max_f = c.messages(hf, e, w[:d])
        sum_b, max_b = c.messages(hb, e, w[d:], reverse=True)
        out_deg, in_deg = c.degree
        aggs = [h, sum_f, sum_f / in_deg, max_f, sum_b, sum_b / out_deg, max_b]
        h = self.norm_h(h + self.update(torch.cat(aggs, dim=1)))
        if not update_edges:
            return h, e
        hs, hd = self.edge_node_proj(h).split(de, dim=1)  # (N, de) each
        u = c.edge_inputs(hs + self.edge_self.bias, hd, e, self.edge_self.weight)  # (E, de)
        e = self.norm_e(e + self.edge_out(self.act(u)))
        return h, e


class NeuralGraphNet(nn.Module):
    """Neural graph → embedding, invariant to node permutations within each hidden layer.

    Message passing over the graph; each layer's node states pooled (mean, max) into a
    token; the tokens read by a Transformer (mean and last token kept). Beside them: the
    output nodes pooled one by one — each with its position and its probe values — so
    the readout sees *which* output computes what (output units are fixed by every
    symmetry, so this keeps invariance), and the graph's `domain` features (input size
    and rank, output count), which message passing sees only through positions.

    Args:
        config: the encoder's config: ``hidden`` (node width), ``edge_hidden``,
            ``layers`` (message-passing steps), ``heads``, ``readout_layers``,
            ``readout_hidden`` (width of the per-output MLP; 0 = ``2 * hidden``),
            ``n_probes`` (probe values per node; 0 = none), ``dim`` (output).
    """

    def __init__(self, config: Any) -> None:
        super().__init__()
        d, de = int(config.hidden), int(config.edge_hidden)
        n_probes = int(config.n_probes)
        self.node_in = nn.Linear(NODE_FEATURES + n_probes, d)
        self.edge_in = nn.Linear(KERNEL, de)
        self.edge_type = nn.Embedding(len(EDGE_TYPES), de)
        self.role = nn.Embedding(3, d)
        self.in_pos, self.out_pos = nn.Embedding(MAX_POSITION, d), nn.Embedding(MAX_POSITION, d)
        self.layer_pos = nn.Embedding(MAX_LAYERS, d)
        self.mp = nn.ModuleList(MessagePassing(d, de) for _ in range(int(config.layers)))
        self.token = nn.Linear(2 * d, d)
        layer = nn.TransformerEncoderLayer(
            d, int(config.heads), 2 * d, dropout=0.0, batch_first=True, norm_first=True
        )
        self.seq = nn.TransformerEncoder(
            layer, int(config.readout_layers), enable_nested_tensor=False
        )
        width = int(config.readout_hidden) or 2 * d
        self.out_read = mlp(d + n_probes, width, 2 * d)
        self.domain_in = mlp(DOMAIN_FEATURES, d, d)
        head_in = 5 * d  # mean, last token, outputs, domain
        self.head = nn.Sequential(nn.LayerNorm(head_in), nn.Linear(head_in, int(config.dim)))
        for m in self.modules():  # structural embeddings must not drown the weights' signal
            if isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.1)

    def embed_node_states(self, b: GraphBatch) -> torch.Tensor:
        feats = b.x if b.probes is None else torch.cat([b.x, b.probes], dim=1)
        pos = b.position.clamp_max(MAX_POSITION - 1)
        h: torch.Tensor = (
            self.node_in(symlog(feats))
            + self.role(b.role)
            + self.layer_pos(b.layer.clamp_max(MAX_LAYERS - 1))
        )
        h = h + torch.where((b.role == 0)[:, None], self.in_pos(pos), 0.0)
        h = h + torch.where((b.role == 2)[:, None], self.out_pos(pos), 0.0)
        return h

    def embed_edges(self, b: GraphBatch, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Initial edge states ``(E, de)``, of the edges `ids` only if given."""
        attr, kind = b.edge_attr, b.edge_type
        if ids is not None:
            attr, kind = attr.index_select(0, ids), kind.index_select(0, ids)
        e: torch.Tensor = self.edge_in(symlog(attr)) + self.edge_type(kind)
        return e

    def forward(self, b: GraphBatch) -> torch.Tensor:
        """Returns unnormalised embeddings ``(num_graphs, dim)``."""
        h = self.node_states(b)
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
        out = self.seq(seq, src_key_padding_mask=~mask)
        valid = mask[..., None].to(out.dtype)
        mean = (out * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        last = out[torch.arange(out.shape[0]), b.layers_per_graph - 1]  # the output layer
        if b.domain is None:
            raise ValueError("the neural-graph encoder reads domain features; the graphs have none")
        parts = [mean, last, self._read_outputs(h, b), self.domain_in(b.domain.to(h.dtype))]
        out_z: torch.Tensor = self.head(torch.cat(parts, dim=1))
        return out_z

    def node_states(self, b: GraphBatch) -> torch.Tensor:
        """Node states after message passing, ``(N, d)``: chunk by chunk of whole graphs,
        each chunk's index structures shared by all layers (`zoolens.nn.edge_runs`)."""
        h = self.embed_node_states(b)
        parts = list(chunks(b, h.dtype))
        per_chunk = torch.split(h, [nodes.stop - nodes.start for nodes, _, _ in parts])
        out = []
        for hc, (_, edges, c) in zip(per_chunk, parts, strict=True):
            e = self.embed_edges(b, c.order + edges.start)
            for i, layer in enumerate(self.mp):
                hc, e = layer(hc, e, c, update_edges=i < len(self.mp) - 1)
            out.append(hc)
        return torch.cat(out)

    def _read_outputs(self, h: torch.Tensor, b: GraphBatch) -> torch.Tensor:
        """Sum over each graph's output nodes of MLP(state + position, probe values),
        ``(G, 2d)``."""
        outs = b.role == 2
        pos, graph = b.position[outs], b.batch[outs]
        state = h[outs] + self.out_pos(pos.clamp_max(MAX_POSITION - 1))
        if b.probes is None:
            return scatter(self.out_read(state), graph, b.num_graphs, "sum")
        values = symlog(b.probes[outs])  # (n_outputs, P)
        return scatter(self.out_read(torch.cat([state, values], dim=1)), graph, b.num_graphs, "sum")

    def _pad(self, tokens: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g, longest = counts.numel(), int(counts.max())
        mask = torch.arange(longest)[None, :] < counts[:, None]  # (G, L)
        seq = tokens.new_zeros((g, longest, tokens.shape[1]))
        seq[mask] = tokens
        pos = self.layer_pos(torch.arange(longest).clamp_max(MAX_LAYERS - 1))
        return seq + pos[None], mask
