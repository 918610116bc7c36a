"""Coarse neural graphs of large nets: the kept edges commute with unit permutations, the
encoder stays exactly invariant and sensitive on them, and zoo-sized nets are untouched."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from zoolens.graph import net_to_graph
from zoolens.graph.coarsen import KEEP, coarse_edges, strongest_pairs, worth_coarsening
from zoolens.ir import Net, load_net
from zoolens.nn import NeuralGraphEncoder, load_encoder
from zoolens.symmetry import random_exact_action
from zoolens.testing import assert_invariant, cosine, max_rel_diff, random_net
from zoolens.testing.models import FAMILIES
from zoolens.testing.seq_nets import SeqConfig, seq_input, seq_net

WIDE_SEQ = SeqConfig(vocab=300, width=64, heads=4, kv_heads=4, head_dim=16, ffn=128)


def _wide_mlp(g: torch.Generator) -> Net:
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
    model = nn.Sequential(
        nn.Linear(6, 96), nn.ReLU(), nn.Linear(96, 80), nn.Tanh(), nn.Linear(80, 3)
    )
    net = load_net(model, input_shape=(6,))
    assert isinstance(net, Net)
    return net.to(torch.float64)


def _wide_nets(seed: int) -> list[Net]:
    g = torch.Generator().manual_seed(seed)
    return [_wide_mlp(g), seq_net("bert", g, WIDE_SEQ)]


@pytest.fixture(scope="module", params=["untrained", "shipped"])
def coarse_encoder(request: pytest.FixtureRequest) -> NeuralGraphEncoder:
    enc = NeuralGraphEncoder() if request.param == "untrained" else load_encoder("neural-graph")
    assert isinstance(enc, NeuralGraphEncoder)
    enc.coarsen_above = 0  # every net gets a coarse graph
    return enc


def test_strongest_pairs_keeps_enough_at_both_ends(gen: torch.Generator) -> None:
    s = torch.rand((30, 50), generator=gen, dtype=torch.float64)
    mask = strongest_pairs(s, 4)
    assert (mask.sum(1) >= 4).all() and (mask.sum(0) >= 4).all()
    assert int(mask.sum()) <= 4 * (30 + 50)  # no ties in random floats
    top_row = s.argmax(1)
    assert mask[torch.arange(30), top_row].all()  # the strongest edge of each target is kept


def test_strongest_pairs_commute_with_permutations(gen: torch.Generator) -> None:
    s = torch.rand((30, 50), generator=gen, dtype=torch.float64)
    p, q = torch.randperm(30, generator=gen), torch.randperm(50, generator=gen)
    assert torch.equal(strongest_pairs(s[p][:, q]), strongest_pairs(s)[p][:, q])


def test_strongest_pairs_commute_with_permutations_despite_ties(gen: torch.Generator) -> None:
    s = torch.randint(0, 3, (30, 50), generator=gen).to(torch.float64)  # many exact ties
    p, q = torch.randperm(30, generator=gen), torch.randperm(50, generator=gen)
    mask = strongest_pairs(s, 4)
    assert torch.equal(strongest_pairs(s[p][:, q], 4), mask[p][:, q])
    assert (mask.sum(1) >= 4).all() and not mask.all()


def test_coarse_edges_are_the_masked_all_pairs(gen: torch.Generator) -> None:
    n_in, n_out = 20, 30
    w = torch.randn((n_out, n_in, 2), generator=gen, dtype=torch.float64)
    src, dst = torch.arange(n_in) + 100, torch.arange(n_out) + 500
    s, d, a = coarse_edges(src, dst, w.reshape(-1, 2))
    mask = strongest_pairs(w.norm(dim=2))
    assert s.numel() == d.numel() == a.shape[0] == int(mask.sum())
    assert torch.equal(a, w[d - 500, s - 100])  # each kept edge holds its own weights


def test_coarse_graph_is_smaller_and_keeps_the_nodes(gen: torch.Generator) -> None:
    net = _wide_mlp(gen)
    full, coarse = net_to_graph(net), net_to_graph(net, coarsen_above=0)
    assert coarse.num_nodes == full.num_nodes
    assert torch.equal(coarse.x, full.x)
    assert coarse.num_edges < full.num_edges
    assert coarse.num_edges <= full.num_edges - 96 * 80 + KEEP * (96 + 80)
    assert worth_coarsening(96, 80) and not worth_coarsening(6, 96)
    assert worth_coarsening(WIDE_SEQ.width, WIDE_SEQ.ffn)


@pytest.mark.parametrize("family", FAMILIES)
def test_zoo_sized_nets_keep_their_full_graph(family: str) -> None:
    net = random_net(family, torch.Generator().manual_seed(0))
    default, full = net_to_graph(net), net_to_graph(net, coarsen_above=sys.maxsize)
    assert torch.equal(default.edge_index, full.edge_index)
    assert torch.equal(default.edge_attr, full.edge_attr)


@pytest.mark.parametrize("seed", range(2))
def test_coarse_embedding_is_exactly_invariant(
    coarse_encoder: NeuralGraphEncoder, seed: int
) -> None:
    for net in _wide_nets(seed):
        g = torch.Generator().manual_seed(seed + 10)
        assert_invariant(coarse_encoder, net, g, min_cos=0.9999, n_actions=2)


def _uncoupled(net: Net) -> Net:
    """The first linear's output units rolled without its readers: a non-symmetry."""
    twin = net.clone()
    op = next(o for o in twin.ops if o.kind == "linear")
    roll = torch.roll(torch.arange(op.params["weight"].shape[0]), 1)
    op.params = {r: t.index_select(0, roll) for r, t in op.params.items()}
    return twin


def test_coarse_embedding_is_sensitive(coarse_encoder: NeuralGraphEncoder) -> None:
    g = torch.Generator().manual_seed(5)
    for net in _wide_nets(0):
        twin = _uncoupled(net)
        x = seq_input(net, g)
        assert max_rel_diff(net(x), twin(x)) > 1e-2
        z = coarse_encoder.encode([net, random_exact_action(net, g), twin])
        exact, c = cosine(z[0], z[1]), cosine(z[0], z[2])
        assert c < 0.9999 and 1 - c > 100 * (1 - exact), f"cosine {c:.6f}"


def test_coarse_graphs_are_not_cached_across_weights(coarse_encoder: NeuralGraphEncoder) -> None:
    g = torch.Generator().manual_seed(7)
    a, b = _wide_mlp(g), _wide_mlp(g)
    assert a.arch_key() == b.arch_key()
    together = coarse_encoder.encode([a, b])
    alone = [coarse_encoder.encode([n])[0] for n in (b, a)]
    assert cosine(together[1], alone[0]) > 0.99999
    assert cosine(together[0], alone[1]) > 0.99999
