"""Neural graphs of transformers: the vocabulary as input layer, token probes, typed
attention structure whose weights and codes move only with exact actions."""

from __future__ import annotations

import pytest
import torch

from zoolens.graph import EDGE_TYPES, KERNEL, ROLE_INPUT, default_probes, net_to_graph
from zoolens.graph.probes import token_probes
from zoolens.graph.seq import CODES
from zoolens.symmetry import random_exact_action
from zoolens.testing.seq_nets import SEQ_FAMILIES, SeqConfig, gpt2_like, seq_net


def _sorted_rows(t: torch.Tensor) -> torch.Tensor:
    t = t.double().round(decimals=6)
    for col in reversed(range(t.shape[1])):
        t = t[t[:, col].argsort(stable=True)]
    return t


@pytest.mark.parametrize("family", SEQ_FAMILIES)
def test_exact_action_gives_the_same_graph_up_to_node_order(family: str) -> None:
    g = torch.Generator().manual_seed(0)
    net = seq_net(family, g)
    a, b = net_to_graph(net), net_to_graph(random_exact_action(net, g))
    assert a.num_nodes == b.num_nodes and a.num_edges == b.num_edges
    assert torch.equal(a.layer, b.layer) and torch.equal(a.role, b.role)
    for t in range(len(EDGE_TYPES)):
        ea, eb = a.edge_attr[a.edge_type == t], b.edge_attr[b.edge_type == t]
        torch.testing.assert_close(_sorted_rows(ea), _sorted_rows(eb), atol=2e-6, rtol=0)
    torch.testing.assert_close(_sorted_rows(a.x), _sorted_rows(b.x), atol=2e-6, rtol=0)


def test_vocabulary_is_the_input_layer() -> None:
    c = SeqConfig(vocab=13, width=8, seq_len=4)
    net = gpt2_like(c, torch.Generator().manual_seed(1))
    graph = net_to_graph(net)
    inputs = (graph.role == ROLE_INPUT).nonzero().ravel()
    assert inputs.numel() == c.vocab
    from_inputs = torch.isin(graph.edge_index[0], inputs)
    assert int(from_inputs.sum()) == c.vocab * c.width
    assert bool((graph.edge_type[from_inputs] == EDGE_TYPES.index("dense")).all())


def test_token_probes_are_fixed_ids_in_the_vocabulary() -> None:
    probes = default_probes((6,), 32, kind="structured")
    ids = token_probes(probes, 11)
    assert ids.shape == (32, 6) and torch.equal(ids, ids.floor())
    assert int(ids.min()) == 0 and int(ids.max()) == 10
    assert len(torch.unique(ids)) == 11  # every token is probed
    assert torch.equal(token_probes(probes, None), probes)
    net = seq_net("gpt2", torch.Generator().manual_seed(0))
    graph = net_to_graph(net, probes=default_probes(net.input_shape, 8))
    assert graph.probes is not None and torch.isfinite(graph.probes).all()
    inputs = graph.role == ROLE_INPUT  # token frequencies: each probe's sum over tokens is 1
    torch.testing.assert_close(graph.probes[inputs].sum(0), torch.ones(8))


def test_rotary_units_are_marked_and_causality_is_coded() -> None:
    net = seq_net("llama", torch.Generator().manual_seed(0))  # head_dim 6, 4 rotary dims
    graph = net_to_graph(net)
    code = graph.edge_attr[:, KERNEL - 1]
    query = graph.edge_attr[code == CODES["query"]]
    assert query.shape[0] == 2 * 4 * 6  # two layers, 4 heads of 6 dims
    marked = query[:, 0] != 0  # inverse frequency of rotary dims, 0 for the others
    assert int(marked.sum()) == 2 * 4 * 4
    assert len(torch.unique(query[marked][:, :2], dim=0)) == 4  # 2 pairs x 2 halves
    assert int((code == CODES["head_out_causal"]).sum()) == 2 * 4 * 6
    bert = net_to_graph(seq_net("bert", torch.Generator().manual_seed(0)))
    codes = bert.edge_attr[:, KERNEL - 1]
    assert int((codes == CODES["head_out_causal"]).sum()) == 0
    assert int((codes == CODES["head_out"]).sum()) > 0
