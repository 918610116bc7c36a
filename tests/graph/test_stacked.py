"""`stack_graphs` and `batch_stacks` against the obvious route: `net_to_graph` per net, then
`batch_graphs` — the same graphs, each from its own net's weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import zoolens.graph.stacked as stacked
from zoolens.graph import GraphBatch, GraphCache, batch_graphs, default_probes, net_to_graph
from zoolens.graph.stacked import (
    GraphStack,
    batch_stacks,
    group_by_architecture,
    stack_graphs,
    stackable,
)
from zoolens.ir import Net
from zoolens.testing import FAMILIES, random_net, reweighted

STACKED = [f for f in FAMILIES if stackable(random_net(f, torch.Generator().manual_seed(0)))]


def _group(family: str, seed: int, n: int = 4) -> list[Net]:
    base = random_net(family, torch.Generator().manual_seed(seed))
    return [base] + [reweighted(base, seed * 100 + i) for i in range(1, n)]


def _assert_same_batch(a: GraphBatch, b: GraphBatch, atol: float = 1e-5) -> None:
    for field in dataclasses.fields(GraphBatch):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if not torch.is_tensor(x):
            assert x == y, field.name
            continue
        assert x.shape == y.shape and x.dtype == y.dtype, field.name
        if x.is_floating_point():
            torch.testing.assert_close(x, y, rtol=0, atol=atol, msg=field.name)
        else:
            assert torch.equal(x, y), field.name


def test_the_mlp_families_are_stacked_and_convolutions_not() -> None:
    assert {"mlp", "mlp_image", "resmlp_ln", "siren"} <= set(STACKED)
    assert not {"cnn1d", "cnn2d", "cnn2d_bn"} & set(STACKED)


@pytest.mark.parametrize("family", STACKED)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n_probes", [0, 8])
def test_stack_equals_one_graph_per_net(family: str, seed: int, n_probes: int) -> None:
    nets = _group(family, seed)
    probes = default_probes(nets[0].input_shape, n_probes, kind="structured") if n_probes else None
    expected = [net_to_graph(n, probes=probes) for n in nets]
    stack = stack_graphs(nets, probes=probes, cache=GraphCache())
    assert len(stack) == len(nets)
    _assert_same_batch(batch_stacks([stack]), batch_graphs(expected))
    for i, graph in enumerate(expected):  # graph by graph too
        _assert_same_batch(batch_graphs([stack.graph(i)]), batch_graphs([graph]))


@pytest.mark.parametrize("family", STACKED)
def test_each_graph_reads_its_own_net(family: str) -> None:
    """The sensitivity twin: the graphs of a stack differ as their nets' weights do."""
    stack = stack_graphs(_group(family, 3), cache=GraphCache())
    for i in range(1, len(stack)):
        assert (stack.edge_attr[i] - stack.edge_attr[0]).abs().max() > 1e-3


def test_batch_of_mixed_stacks_equals_batch_graphs() -> None:
    """Stacks of several architectures and single graphs, in order, as `batch_graphs` lays
    out their graphs (node, edge, layer and graph offsets)."""
    cache, graphs, stacks = GraphCache(), [], []
    for family, seed in (("mlp", 0), ("cnn2d", 1), ("resmlp_ln", 2), ("mlp", 3)):
        nets = _group(family, seed, n=3)
        probes = default_probes(nets[0].input_shape, 8)
        graphs += [net_to_graph(n, probes=probes) for n in nets]
        if stackable(nets[0]):
            stacks.append(stack_graphs(nets, probes=probes, cache=cache))
        else:
            stacks += [GraphStack.of(g) for g in graphs[-3:]]
    _assert_same_batch(batch_stacks(stacks), batch_graphs(graphs))


def test_refuses_mixed_or_unstackable_architectures() -> None:
    mlp, other = random_net("mlp", torch.Generator().manual_seed(0)), _group("mlp", 5)[0]
    if mlp.arch_key() != other.arch_key():
        with pytest.raises(ValueError, match="more than one architecture"):
            stack_graphs([mlp, other])
    with pytest.raises(ValueError, match="weight dtype"):
        stack_graphs([mlp, mlp.to(torch.float32)])
    with pytest.raises(ValueError, match="not stackable"):
        stack_graphs(_group("cnn2d", 0, n=2))
    with pytest.raises(ValueError, match="no nets"):
        stack_graphs([])


def test_group_by_architecture_keeps_first_appearance_order() -> None:
    a, b = _group("mlp", 0, n=2), _group("siren", 1, n=2)
    groups = group_by_architecture([a[0], b[0], a[1], b[1], a[0].to(torch.float32)])
    assert [ids for _, ids in groups] == [[0, 2], [1, 3], [4]]  # a dtype of its own
    assert groups[0][0] == a[0].arch_key()


def test_chunks_of_the_stack_give_the_same_graphs(monkeypatch: pytest.MonkeyPatch) -> None:
    """vmap in chunks of one net (a tiny memory budget) or all at once: the same values."""
    nets = _group("resmlp_ln", 4, n=5)
    probes = default_probes(nets[0].input_shape, 8)
    whole = stack_graphs(nets, probes=probes)
    monkeypatch.setattr(stacked, "CHUNK_BYTES", 1)
    for name in ("x", "edge_attr", "probes"):
        assert torch.equal(getattr(stack_graphs(nets, probes=probes), name), getattr(whole, name))
