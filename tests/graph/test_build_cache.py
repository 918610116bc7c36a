"""net_to_graph's shortcuts: an owned `GraphCache` (per-architecture wiring and value shapes,
probe sets) and the probe forward pass give exactly what building from scratch and a plain
forward pass give; nothing is kept at module level."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import sys

import pytest
import torch

import zoolens.graph.build as build
from ir.families import FAMILIES as IR_FAMILIES  # tests/ir (tests/ is on the path)
from ir.families import build as build_module
from zoolens.graph import GraphCache, NeuralGraph, default_probes, net_to_graph
from zoolens.ir import Net, load_net
from zoolens.testing import FAMILIES, random_net, reweighted


def _same_graph(a: NeuralGraph, b: NeuralGraph) -> bool:
    for field in dataclasses.fields(NeuralGraph):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if not (
            (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
        ):
            return False
    return True


def _nets() -> dict[str, Net]:
    nets = {f: random_net(f, torch.Generator().manual_seed(11)) for f in FAMILIES}
    for name in IR_FAMILIES:
        model, shape = build_module(name, seed=3)
        nets[f"ir:{name}"] = load_net(model, input_shape=shape)
    return nets


NETS = _nets()


@pytest.mark.parametrize("name", list(NETS))
def test_a_warm_cache_gives_the_graph_built_from_scratch(name: str) -> None:
    net = NETS[name]
    other = reweighted(net, 12)
    probes = default_probes(net.input_shape, 4)
    fresh = net_to_graph(other, probes=probes)  # no cache
    cache = GraphCache()
    net_to_graph(net, probes=probes, cache=cache)  # warm with another net of the arch
    cached = net_to_graph(other, probes=probes, cache=cache)
    assert cache.stats() == {"hits": 1, "misses": 1, "architectures": 1, "probe_sets": 0}
    assert _same_graph(cached, fresh)
    # sensitivity: through the warm cache, other weights give another graph
    assert not _same_graph(net_to_graph(net, probes=probes, cache=cache), cached)
    cached.edge_index.zero_()  # a caller's graph does not alias the cache
    assert _same_graph(net_to_graph(other, probes=probes, cache=cache), fresh)


@pytest.mark.parametrize("canonical", [True, False])
@pytest.mark.parametrize("flatten", ["grid", "flat"])
def test_cached_graphs_equal_fresh_ones_for_every_option(canonical: bool, flatten: str) -> None:
    net = NETS["cnn2d"]
    other = reweighted(net, 5)
    cache = GraphCache()
    net_to_graph(net, canonical, flatten=flatten, cache=cache)
    fresh = net_to_graph(other, canonical, flatten=flatten)
    assert _same_graph(net_to_graph(other, canonical, flatten=flatten, cache=cache), fresh)


def test_the_cache_keeps_its_bound_dropping_the_least_recently_used() -> None:
    nets = [NETS[f] for f in ("mlp", "cnn1d", "siren")]
    cache = GraphCache(max_architectures=2)
    for net in nets:
        net_to_graph(net, cache=cache)
    assert len(cache) == 2 and cache.misses == 3
    net_to_graph(nets[2], cache=cache)  # kept: a hit
    net_to_graph(nets[1], cache=cache)  # kept: a hit, now the most recently used
    net_to_graph(nets[0], cache=cache)  # dropped: built again, dropping nets[2]
    assert (cache.hits, cache.misses, len(cache)) == (2, 4, 2)
    net_to_graph(nets[1], cache=cache)
    assert cache.hits == 3
    net_to_graph(nets[2], cache=cache)
    assert cache.misses == 5
    cache.clear()
    assert cache.stats() == {"hits": 0, "misses": 0, "architectures": 0, "probe_sets": 0}
    none = GraphCache(max_architectures=0)  # holds nothing, still builds
    assert _same_graph(net_to_graph(nets[0], cache=none), net_to_graph(nets[0]))
    assert len(none) == 0
    with pytest.raises(ValueError, match="cache size"):
        GraphCache(max_architectures=-1)


def test_two_caches_share_nothing() -> None:
    a, b = GraphCache(), GraphCache()
    net_to_graph(NETS["mlp"], cache=a)
    assert (len(a), len(b)) == (1, 0)
    net_to_graph(NETS["mlp"], cache=b)
    assert b.misses == 1 and b.hits == 0


def test_probe_sets_are_drawn_once_and_handed_out_as_copies() -> None:
    cache = GraphCache(max_probe_sets=2)
    x = cache.probes((3, 8, 8), 6, kind="smooth")
    assert torch.equal(x, default_probes((3, 8, 8), 6, kind="smooth"))
    assert not torch.equal(cache.probes((3, 8, 8), 6, seed=1, kind="smooth"), x)  # sensitivity
    x.zero_()
    assert torch.equal(
        cache.probes((3, 8, 8), 6, kind="smooth"), default_probes((3, 8, 8), 6, kind="smooth")
    )
    cache.probes((2,), 4)
    assert cache.stats()["probe_sets"] == 2


def test_building_graphs_leaves_no_module_level_state() -> None:
    modules = [m for name, m in sys.modules.items() if name.startswith("zoolens.") and m]
    before = {id(m): _mutable_globals(m) for m in modules}
    cache = GraphCache()
    unseen = torch.nn.Sequential(torch.nn.Linear(7, 13), torch.nn.Tanh(), torch.nn.Linear(13, 5))
    nets = [load_net(unseen, input_shape=(7,)), *list(NETS.values())[:3]]  # new arch, shapes
    for net in nets:
        net_to_graph(net, probes=cache.probes(net.input_shape, 3), cache=cache)
        net_to_graph(net, probes=default_probes(net.input_shape, 2))
    assert len(cache) == 4
    assert {id(m): _mutable_globals(m) for m in modules} == before
    for package in ("zoolens.graph", "zoolens.ir", "zoolens.symmetry"):  # no memoised functions
        path = importlib.import_module(package).__path__
        for info in pkgutil.iter_modules(path, f"{package}."):
            module = importlib.import_module(info.name)
            memoised = [k for k, v in vars(module).items() if hasattr(v, "cache_info")]
            assert not memoised, (info.name, memoised)


def _mutable_globals(module: object) -> dict[str, int]:
    """Sizes of a module's dict / list / set globals (tables that a cache would grow)."""
    return {
        k: len(v)
        for k, v in vars(module).items()
        if isinstance(v, (dict, list, set)) and not k.startswith("__")
    }


def test_value_infos_are_kept_on_the_net_and_follow_in_place_changes() -> None:
    net = NETS["mlp"].clone()
    infos = net.value_infos()
    assert net.value_infos() is infos  # kept while the architecture holds
    assert net.clone().value_infos() is infos  # a clone has the same architecture
    last = net.ops[-1]
    out = last.params["weight"].shape[0]
    last.params = {k: torch.cat([v, v[:1]]) for k, v in last.params.items()}  # one more unit
    assert net.value_infos()[net.output].units == out + 1


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
