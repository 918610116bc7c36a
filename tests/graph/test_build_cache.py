"""net_to_graph's shortcuts: the per-architecture structure cache and the probe forward pass
give exactly what building from scratch and a plain forward pass give."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import zoolens.graph.build as build
from zoolens.graph import NeuralGraph, default_probes, net_to_graph
from zoolens.ir import Net
from zoolens.testing import FAMILIES, random_net


def _reweighted(net: Net, seed: int) -> Net:
    """Same architecture, other weights (positive factors keep BatchNorm variances valid)."""
    g = torch.Generator().manual_seed(seed)
    out = net.clone()
    for op in out.ops:
        op.params = {
            k: v * (0.5 + torch.rand(v.shape, generator=g, dtype=v.dtype))
            for k, v in op.params.items()
        }
    return out


def _assert_same_graph(a: NeuralGraph, b: NeuralGraph) -> None:
    for field in dataclasses.fields(NeuralGraph):
        x, y = getattr(a, field.name), getattr(b, field.name)
        assert (x is None and y is None) or torch.equal(x, y), field.name


@pytest.mark.parametrize("family", FAMILIES)
def test_cached_structure_gives_the_graph_built_from_scratch(
    monkeypatch: pytest.MonkeyPatch, family: str
) -> None:
    net = random_net(family, torch.Generator().manual_seed(11))
    other = _reweighted(net, 12)
    probes = default_probes(net.input_shape, 4)
    monkeypatch.setattr(build, "_STRUCTURES", {})
    fresh = net_to_graph(other, probes=probes)
    net_to_graph(net, probes=probes)  # now the structure comes from the cache
    cached = net_to_graph(other, probes=probes)
    assert len(build._STRUCTURES) == 1
    _assert_same_graph(cached, fresh)
    cached.edge_index.zero_()  # a caller's graph does not alias the cache
    _assert_same_graph(net_to_graph(other, probes=probes), fresh)


@pytest.mark.parametrize("family", FAMILIES)
def test_probe_features_are_the_units_mean_activations(family: str) -> None:
    net = random_net(family, torch.Generator().manual_seed(13))
    probes = default_probes(net.input_shape, 5)
    graph = net_to_graph(net, canonical=False, probes=probes)
    assert graph.probes is not None
    _, units = build._walk(net)
    env = {net.input: probes}
    for op in net.ops:  # plain contiguous forward pass
        env[op.output] = op.run([env[v] for v in op.inputs])
    expected = torch.zeros(graph.num_nodes, 5, dtype=torch.float64)
    for value, u in units.items():  # in walk order: later values overwrite earlier ones
        if u.block == 1:
            a = env[value]
            expected[u.nodes] = (a.mean(dim=tuple(range(2, a.dim()))) if a.dim() > 2 else a).T
    torch.testing.assert_close(graph.probes, expected.float())
