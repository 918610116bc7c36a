"""Neural-graph pieces of the sequence ops (transformers).

Every op here maps onto the existing `EDGE_TYPES` slots, so the shipped encoder (whose
edge-type table has one row per slot) loads and reads these graphs unchanged; what the
slot does not say, a constant *code* in the last edge-attribute slot does (`CODES`):

* ``embedding``: the vocabulary is the input layer (V nodes) → D units, ``dense`` edges.
* ``rmsnorm`` / ``channel_scale``: a layer of D nodes, one ``layernorm`` / ``batchnorm``
  edge per unit holding its weight. ``posembed``: one ``residual`` edge per unit holding
  its table row (resampled to 8 slots; a padding-aware table from its first token's row);
  ``prepend``: one holding 1, the token as bias.
* ``mul``: a layer of units, one ``residual`` edge from each input unit i to unit i.
* ``sdpa``: a node per query head (its log scale as a prescale feature), a layer for the
  output units, ``residual`` edges q(h, j) → head h, k(g, j) → each head h of group g,
  q(h, j) → k(g, j) (pairing), head h → out(h, j), v(g, j) → out(h, j). Rotary units carry
  their frequency and pair half on their head edges, so no automorphism moves them; ALiBi
  slopes ride on the head → out edges, so heads of different slopes are told apart; the
  graph's automorphisms on these layers are then exactly `zoolens.symmetry.attention`'s.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from zoolens.graph.neural_graph import KERNEL
from zoolens.ir import Op
from zoolens.ir.ops_seq import rope_frequencies
from zoolens.symmetry.attention import attention_shape

if TYPE_CHECKING:
    from zoolens.graph.build import _Builder

#: Structural codes in edge slot ``KERNEL - 1`` (0: an ordinary weight edge).
CODES = {
    "mul": 1.0,
    "posembed": 2.0,
    "prepend": 3.0,
    "query": 4.0,
    "key": 5.0,
    "head_out": 6.0,
    "head_out_causal": 7.0,
    "value": 8.0,
    "pair": 9.0,
    "rmsnorm": 10.0,
}
SEQ_GRAPH_KINDS = frozenset(
    {"embedding", "rmsnorm", "channel_scale", "posembed", "prepend", "mul", "sdpa"}
)


def _coded(n: int, code: str, data: torch.Tensor | None = None) -> torch.Tensor:
    """Edge attributes ``(n, KERNEL)``: `data` ``(n, m ≤ KERNEL - 1)`` then the code."""
    attr = torch.zeros((n, KERNEL), dtype=torch.float64)
    if data is not None:
        attr[:, : data.shape[1]] = data.to(torch.float64)
    attr[:, KERNEL - 1] = CODES[code]
    return attr


def _per_unit(b: _Builder, nodes: torch.Tensor, attr: torch.Tensor, kind: str) -> torch.Tensor:
    out = b.new_layer(nodes.numel(), 1)
    b.connect(nodes, out, attr, kind)
    return out


#: Vocabularies larger than this many tokens enter the graph as this many contiguous bins.
VOCAB_BINS = 256


def embedding(b: _Builder, op: Op, inputs: list[torch.Tensor]) -> torch.Tensor:
    """The vocabulary is the input layer → D units, ``dense`` edges holding the weights.

    A vocabulary of more than `VOCAB_BINS` tokens is coarsened: its token order is fixed (the
    input's identity, never permuted), so it is cut into `VOCAB_BINS` contiguous bins, each an
    input node, and the edge from a bin to unit d holds the mean, standard deviation, min and
    max of unit d's weights over the bin's tokens. Permuting the D units moves these edges
    with them: exact invariance is kept; the edge count no longer grows with the vocabulary.
    """
    w = op.params["weight"].to(torch.float64)  # (D, V)
    d, v = w.shape
    out = b.new_layer(d, 1)
    if v <= VOCAB_BINS:
        b.connect(inputs[0], out, w.reshape(-1, 1), "dense", all_pairs=True)
        return out
    bins = vocab_bins(v)
    stats = torch.stack(
        [
            torch.stack([c.mean(1), c.std(1, correction=0), c.amin(1), c.amax(1)], dim=1)
            for c in (w[:, lo:hi] for lo, hi in bins)
        ],
        dim=1,
    )  # (D, bins, 4)
    # edges target-major as `connect(all_pairs=True)` orders them: edge (bin i → unit j)
    b.connect(inputs[0], out, stats.reshape(-1, 4), "dense", all_pairs=True)
    return out


def vocab_nodes(v: int) -> int:
    """Input nodes of a vocabulary of `v` tokens (`VOCAB_BINS` bins above that many)."""
    return min(v, VOCAB_BINS)


def binned(freq: torch.Tensor) -> torch.Tensor:
    """Token frequencies ``(P, V)`` summed per input node ``(P, vocab_nodes(V))``."""
    v = freq.shape[1]
    if v <= VOCAB_BINS:
        return freq
    return torch.stack([freq[:, lo:hi].sum(1) for lo, hi in vocab_bins(v)], dim=1)


def vocab_bins(v: int) -> list[tuple[int, int]]:
    """`VOCAB_BINS` contiguous token ranges covering ``range(v)``."""
    edges = torch.linspace(0, v, VOCAB_BINS + 1).round().long().tolist()
    return list(itertools.pairwise(edges))


def unitwise(b: _Builder, op: Op, inputs: list[torch.Tensor]) -> torch.Tensor:
    """rmsnorm, channel_scale, posembed, prepend: one new node per unit."""
    nodes, n = inputs[0], inputs[0].numel()
    w = op.params["weight"].to(torch.float64)
    if op.kind == "rmsnorm":
        return _per_unit(b, nodes, _coded(n, "rmsnorm", w[:, None]), "layernorm")
    if op.kind == "channel_scale":
        return _per_unit(b, nodes, w[:, None], "batchnorm")
    if op.kind == "posembed":
        if op.attrs.get("pad") is not None:  # rows from the first token's: as BERT's table
            w = w[:, int(op.attrs["pad"]) + 1 :]
        rows = (
            w if w.shape[1] <= KERNEL - 1 else F.adaptive_avg_pool1d(w[:, None], KERNEL - 1)[:, 0]
        )
        return _per_unit(b, nodes, _coded(n, "posembed", rows), "residual")
    from zoolens.graph.build import F_BIAS

    out = _per_unit(b, nodes, _coded(n, "prepend", torch.ones(n, 1)), "residual")
    b.x[out, F_BIAS] = w  # the token as the units' bias
    return out


def mul(b: _Builder, op: Op, inputs: list[torch.Tensor]) -> torch.Tensor:
    n = inputs[0].numel()
    out = b.new_layer(n, 1)
    for nodes in inputs:
        b.connect(nodes, out, _coded(n, "mul", torch.ones(n, 1)), "residual")
    return out


def _rotary(op: Op, hd: int, rot: int) -> torch.Tensor:
    """Per head dim: (inverse frequency, ±1 pair half) for rotary dims, zeros else,
    ``(hd, 2)``."""
    data = torch.zeros((hd, 2), dtype=torch.float64)
    if rot:
        inv = rope_frequencies(op.attrs["rope"], torch.float64)
        data[:rot, 0] = torch.cat([inv, inv])
        data[:rot, 1] = torch.cat([torch.ones(rot // 2), -torch.ones(rot // 2)])
    return data


def sdpa(b: _Builder, op: Op, inputs: list[torch.Tensor]) -> torch.Tensor:
    from zoolens.graph.build import F_PRESCALE

    q, k, v = inputs
    h, g, hd, rot = attention_shape(op, q.numel())
    r = h // g
    heads = b.new_layer(h, 1)
    scale = op.attrs.get("scale")
    b.x[heads, F_PRESCALE] = math.log(1.0 / math.sqrt(hd) if scale is None else abs(float(scale)))
    out = b.new_layer(h * hd, 1)
    head_of_q = torch.arange(h).repeat_interleave(hd)  # (h*hd,) query head of each q unit
    dim = torch.arange(hd).repeat(h)  # (h*hd,) dim of each q / out unit
    k_of_q = (head_of_q // r) * hd + dim  # the k (and v) unit paired with each q unit
    rotary = _rotary(op, hd, rot)
    b.connect(q, heads[head_of_q], _coded(h * hd, "query", rotary[dim]), "residual")
    k_unit = torch.arange(g * hd).repeat(r)  # every k unit once per query head of its group
    k_head = ((k_unit // hd) * r + torch.arange(r).repeat_interleave(g * hd)).reshape(-1)
    b.connect(
        k[k_unit], heads[k_head], _coded(k_unit.numel(), "key", rotary[k_unit % hd]), "residual"
    )
    b.connect(q, k[k_of_q], _coded(h * hd, "pair"), "residual")
    code = "head_out_causal" if op.attrs.get("causal") else "head_out"
    alibi = op.attrs.get("alibi")  # a fixed slope per head: heads with different ones differ
    slope = None if alibi is None else torch.tensor(alibi, dtype=torch.float64)[head_of_q, None]
    b.connect(heads[head_of_q], out, _coded(h * hd, code, slope), "residual")
    b.connect(v[k_of_q], out, _coded(h * hd, "value", torch.ones(h * hd, 1)), "residual")
    return out


SEQ_GRAPH = {
    "embedding": embedding,
    "rmsnorm": unitwise,
    "channel_scale": unitwise,
    "posembed": unitwise,
    "prepend": unitwise,
    "mul": mul,
    "sdpa": sdpa,
}


def token_vocab(net_input_readers: list[Op]) -> int | None:
    """Vocabulary size when the net's input is token ids read by embeddings only (and by
    padding-aware position embeddings, which count them)."""
    readers = [op for op in net_input_readers if op.kind != "posembed"]
    if readers and all(op.kind == "embedding" for op in readers):
        return int(readers[0].params["weight"].shape[1])
    return None
