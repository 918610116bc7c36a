"""NeuralGraphNet's no-grad path (chunked, run-sorted reductions) against the straightforward
one it replaces for embedding: the same function, in float64, on every family."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import zoolens.nn.edge_runs as edge_runs
from zoolens.graph import GraphBatch, batch_graphs, default_probes, net_to_graph
from zoolens.nn import NeuralGraphEncoder
from zoolens.nn.edge_runs import _runs
from zoolens.nn.gnn import NeuralGraphNet, scatter
from zoolens.testing import FAMILIES, random_net


def _batch(seeds: range, copies: int = 1) -> GraphBatch:
    """Every family at every seed, each `copies` times in a row, as one float64 batch."""
    graphs = []
    for family in FAMILIES:
        for s in seeds:
            net = random_net(family, torch.Generator().manual_seed(s))
            graph = net_to_graph(net, probes=default_probes(net.input_shape, 16))
            graphs += [graph] * copies
    b = batch_graphs(graphs)
    floats = {f.name: getattr(b, f.name) for f in dataclasses.fields(b)}
    return GraphBatch(
        **{
            k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in floats.items()
        }
    )


def _net(config: dict[str, object] | None = None) -> NeuralGraphNet:
    module = NeuralGraphEncoder(config).module
    assert isinstance(module, NeuralGraphNet)
    return module.double().eval()


def _both_paths(module: NeuralGraphNet, b: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        reference = module(b).detach()  # the plain path: autograd needs it
    with torch.no_grad():
        fast = module(b)
    return reference, fast


def test_runs_reduce_like_scatter() -> None:
    g = torch.Generator().manual_seed(0)
    n = 40
    index = torch.randint(0, n - 5, (300,), generator=g)  # the last nodes get no edges
    m = torch.randn(300, 8, generator=g, dtype=torch.float64)
    order, runs = _runs(index, n)
    total, top = runs.reduce(m[order])
    torch.testing.assert_close(total, scatter(m, index, n, "sum"), rtol=1e-12, atol=1e-12)
    assert torch.equal(top, scatter(m, index, n, "amax"))
    assert torch.equal(total[n - 5 :], torch.zeros(5, 8, dtype=torch.float64))


@pytest.mark.parametrize("chunk_edges", [1 << 14, 300])
@pytest.mark.parametrize("config", [None, {"readout": "gru", "n_probes": 16, "seed": 3}])
def test_no_grad_path_matches_reference(
    monkeypatch: pytest.MonkeyPatch, chunk_edges: int, config: dict[str, object] | None
) -> None:
    """Small chunks split the batch many times and reuse one chunk's index structures for
    the repeated graphs; the default puts many graphs into one chunk."""
    monkeypatch.setattr(edge_runs, "CHUNK_EDGES", chunk_edges)
    reference, fast = _both_paths(_net(config), _batch(range(3), copies=3))
    torch.testing.assert_close(fast, reference, rtol=1e-10, atol=1e-10)


def test_nodes_out_of_graph_order_fall_back_to_one_chunk() -> None:
    """A batch whose nodes are not stored graph by graph: the same union of graphs, so the
    same embeddings, from both paths."""
    b = _batch(range(2))
    perm = torch.randperm(b.x.shape[0], generator=torch.Generator().manual_seed(1))
    where = torch.empty_like(perm)
    where[perm] = torch.arange(perm.numel())  # old node id → new node id
    shuffled = dataclasses.replace(
        b,
        **{k: getattr(b, k)[perm] for k in ("x", "role", "position", "layer", "batch", "layer_id")},
        probes=None if b.probes is None else b.probes[perm],
        edge_index=where[b.edge_index],
    )
    module = _net()
    with torch.no_grad():
        expected = module(b)
    for out in _both_paths(module, shuffled):
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_training_path_stays_differentiable() -> None:
    encoder = NeuralGraphEncoder()
    g = torch.Generator().manual_seed(5)
    nets = [random_net(f, g) for f in FAMILIES]
    encoder.module.train()
    encoder.train_forward(nets).square().sum().backward()
    for name, p in encoder.module.mp[0].named_parameters():  # the last edge update is unused
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
