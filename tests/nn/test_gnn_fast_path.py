"""NeuralGraphNet's message passing (chunks of whole graphs, edges in runs per node, blocks
of runs; custom backward passes) against a slow, obvious reference built from scatters:
the same function and the same gradients, in float64, on every family."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import zoolens.nn.edge_runs as edge_runs
from zoolens.graph import GraphBatch, batch_graphs, default_probes, net_to_graph
from zoolens.nn import NeuralGraphEncoder
from zoolens.nn.edge_runs import _chunk, _runs, degrees
from zoolens.nn.gnn import MessagePassing, NeuralGraphNet, scatter
from zoolens.nn.neural_graph_encoder import NeuralGraphConfig
from zoolens.testing import FAMILIES, random_net

CONFIGS = [None, {"readout_hidden": 24, "seed": 3}]


# -- the reference --------------------------------------------------------------------------
def reference_layer(
    layer: MessagePassing,
    h: torch.Tensor,
    e: torch.Tensor,
    edge_index: torch.Tensor,
    degree: tuple[torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """`MessagePassing` on a whole batch with scatters and plain autograd."""
    src, dst = edge_index
    n, d = h.shape
    hf, hb = layer.node_proj(h).split(d, dim=1)  # (N, d) each
    ef, eb = layer.edge_proj(e).split(d, dim=1)  # (E, d) each
    aggs = [h]
    for m, at, deg in (
        (layer.act(hf[src] + ef), dst, degree[1]),
        (layer.act(hb[dst] + eb), src, degree[0]),
    ):
        total = scatter(m, at, n, "sum")  # (N, d)
        aggs += [total, total / deg, scatter(m, at, n, "amax")]
    h = layer.norm_h(h + layer.update(torch.cat(aggs, dim=1)))
    hs, hd = layer.edge_node_proj(h).split(e.shape[1], dim=1)  # (N, de) each
    e = layer.norm_e(e + layer.edge_out(layer.act(hs[src] + hd[dst] + layer.edge_self(e))))
    return h, e


def reference_embeddings(module: NeuralGraphNet, b: GraphBatch) -> torch.Tensor:
    """`module(b)` with its node states from `reference_layer`s."""

    def node_states(b: GraphBatch) -> torch.Tensor:
        h, e = module.embed_node_states(b), module.embed_edges(b)
        degree = degrees(b.edge_index, h.shape[0], h.dtype)
        for layer in module.mp:
            assert isinstance(layer, MessagePassing)
            h, e = reference_layer(layer, h, e, b.edge_index, degree)
        return h

    module.node_states = node_states  # type: ignore[method-assign]
    try:
        return module(b)
    finally:
        del module.node_states


N_PROBES = NeuralGraphConfig().n_probes  # graphs of the default module


# -- helpers --------------------------------------------------------------------------------
def _batch(seeds: range, copies: int = 1) -> GraphBatch:
    """Every family at every seed, each `copies` times in a row, as one float64 batch."""
    graphs = []
    for family in FAMILIES:
        for s in seeds:
            net = random_net(family, torch.Generator().manual_seed(s))
            graph = net_to_graph(net, probes=default_probes(net.input_shape, N_PROBES))
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


def _output_and_grads(
    module: NeuralGraphNet, b: GraphBatch, reference: bool = False
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Embeddings and the gradients of a fixed random projection of them."""
    module.zero_grad(set_to_none=True)
    z = reference_embeddings(module, b) if reference else module(b)
    weights = torch.randn(z.shape, generator=torch.Generator().manual_seed(7), dtype=z.dtype)
    (z * weights).sum().backward()
    grads = {k: p.grad for k, p in module.named_parameters() if p.grad is not None}
    return z.detach(), grads


def _assert_same_grads(grads: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert grads.keys() == expected.keys()
    for k, g in expected.items():  # relative to the parameter's largest gradient
        torch.testing.assert_close(grads[k], g, rtol=1e-8, atol=1e-8 * float(g.abs().max()))


# -- the runs -------------------------------------------------------------------------------
def test_runs_sum_like_scatter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge_runs, "BLOCK_EDGES", 7)  # blocks of a few runs, or of one
    g = torch.Generator().manual_seed(0)
    n = 40
    index = torch.randint(0, n - 5, (300,), generator=g)  # the last nodes get no edges
    m = torch.randn(300, 8, generator=g, dtype=torch.float64)
    order, runs = _runs(index, n)
    expected = scatter(m, index, n, "sum")
    torch.testing.assert_close(runs.sum(m[order]), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(runs.sum(m, order), expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(expected[n - 5 :], torch.zeros(5, 8, dtype=torch.float64))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("block_edges", [1 << 13, 5])
def test_messages_match_scatter_with_ties(
    monkeypatch: pytest.MonkeyPatch, reverse: bool, block_edges: int
) -> None:
    """Sum and max of the messages and their gradients, with exact ties of the max (edges
    given twice): a tie shares the max's gradient equally, as ``scatter_reduce`` does."""
    monkeypatch.setattr(edge_runs, "BLOCK_EDGES", block_edges)
    g = torch.Generator().manual_seed(1)
    n, d, de = 30, 6, 4
    edge_index = torch.randint(0, n - 3, (2, 150), generator=g)
    edge_index = torch.cat([edge_index, edge_index[:, :40]], dim=1)  # 40 edges twice
    x, w = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((n, d), (d, de)))
    e = torch.randn(150, de, generator=g, dtype=torch.float64)
    e = torch.cat([e, e[:40]])
    c = _chunk(edge_index, n, torch.float64)
    inputs = [t.requires_grad_() for t in (x, e, w)]
    src, dst = edge_index[:, c.order]  # fwd order
    at, other = (src, dst) if reverse else (dst, src)
    m = F.silu(x[other] + e[c.order] @ w.t())  # (E, d)
    expected = (scatter(m, at, n, "sum"), scatter(m, at, n, "amax"))
    assert int((m == expected[1][at]).sum()) > at.unique().numel() * d  # there are ties
    got = c.messages(x, e[c.order], w, reverse=reverse)
    weights = [torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(2)]
    for out, ref in zip(got, expected, strict=True):
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    grads, ref_grads = (
        torch.autograd.grad(sum((o * v).sum() for o, v in zip(outs, weights, strict=True)), inputs)
        for outs in (got, expected)
    )
    for gr, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(gr, ref, rtol=1e-12, atol=1e-12)


# -- the whole network ----------------------------------------------------------------------
@pytest.fixture(params=[(1 << 14, 1 << 13), (300, 20)], ids=["default-chunks", "small-chunks"])
def chunking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk and block sizes: the defaults, and small ones that split a batch many times."""
    chunk_edges, block_edges = request.param
    monkeypatch.setattr(edge_runs, "CHUNK_EDGES", chunk_edges)
    monkeypatch.setattr(edge_runs, "BLOCK_EDGES", block_edges)


@pytest.mark.parametrize("config", CONFIGS)
def test_no_grad_path_matches_reference(chunking: None, config: dict[str, object] | None) -> None:
    """Small chunks split the batch many times and reuse one chunk's index structures for
    the repeated graphs; the default puts many graphs into one chunk."""
    module, b = _net(config), _batch(range(3), copies=3)
    with torch.no_grad():
        fast, reference = module(b), reference_embeddings(module, b)
    torch.testing.assert_close(fast, reference, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("config", CONFIGS)
def test_grad_path_matches_reference(chunking: None, config: dict[str, object] | None) -> None:
    """Embeddings and the gradients of every parameter, on a batch mixing all families."""
    module, b = _net(config), _batch(range(2), copies=2)
    z, grads = _output_and_grads(module, b)
    z_ref, ref_grads = _output_and_grads(module, b, reference=True)
    torch.testing.assert_close(z, z_ref, rtol=1e-10, atol=1e-10)
    _assert_same_grads(grads, ref_grads)


@pytest.mark.parametrize("family", FAMILIES)
def test_grad_path_matches_reference_per_family(
    monkeypatch: pytest.MonkeyPatch, family: str
) -> None:
    """One family at a time, in chunks of one graph split into blocks of a few runs."""
    monkeypatch.setattr(edge_runs, "CHUNK_EDGES", 1)
    monkeypatch.setattr(edge_runs, "BLOCK_EDGES", 16)
    nets = [random_net(family, torch.Generator().manual_seed(s)) for s in range(2)]
    b = batch_graphs([net_to_graph(n, probes=default_probes(n.input_shape, 8)) for n in nets])
    b = dataclasses.replace(
        b, x=b.x.double(), edge_attr=b.edge_attr.double(), probes=b.probes.double()
    )
    module = _net({"n_probes": 8})
    z, grads = _output_and_grads(module, b)
    z_ref, ref_grads = _output_and_grads(module, b, reference=True)
    torch.testing.assert_close(z, z_ref, rtol=1e-10, atol=1e-10)
    _assert_same_grads(grads, ref_grads)


def test_nodes_out_of_graph_order_fall_back_to_one_chunk() -> None:
    """A batch whose nodes are not stored graph by graph: the same union of graphs, so the
    same embeddings and gradients."""
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
    z, grads = _output_and_grads(module, b)
    for reference in (False, True):
        z_shuffled, grads_shuffled = _output_and_grads(module, shuffled, reference)
        torch.testing.assert_close(z_shuffled, z, rtol=1e-10, atol=1e-10)
        _assert_same_grads(grads_shuffled, grads)


def test_training_path_stays_differentiable() -> None:
    """Every parameter of a layer gets a gradient through the custom backward passes."""
    encoder = NeuralGraphEncoder()
    g = torch.Generator().manual_seed(5)
    nets = [random_net(f, g) for f in FAMILIES]
    encoder.module.train()
    encoder.train_forward(nets).square().sum().backward()
    for name, p in encoder.module.mp[0].named_parameters():  # the last edge update is unused
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
