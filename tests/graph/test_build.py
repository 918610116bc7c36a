"""net_to_graph: one node per unit, one edge per weight, kernels and blocks on edges,
residual edges, distinguishable inputs/outputs, probe features that permute with nodes,
and batching offsets."""

from __future__ import annotations

import pytest
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from zoolens.graph import (
    EDGE_TYPES,
    KERNEL,
    ROLE_HIDDEN,
    ROLE_INPUT,
    ROLE_OUTPUT,
    NeuralGraph,
    batch_graphs,
    default_probes,
    fit_to_kernel,
    net_to_graph,
)
from zoolens.ir.fx_import import import_module
from zoolens.symmetry import random_exact_action
from zoolens.testing import FAMILIES, random_net


def _edges_of(graph: NeuralGraph, kind: str) -> torch.Tensor:
    return (graph.edge_type == EDGE_TYPES.index(kind)).nonzero().ravel()


def _first_layer_edges(
    graph: NeuralGraph, kind: str, n_in: int, n_out: int
) -> dict[tuple[int, int], torch.Tensor]:
    """(out unit, in unit) → edge attr, for `kind` edges whose sources are the input nodes."""
    out = {}
    for e in _edges_of(graph, kind).tolist():
        s, t = graph.edge_index[:, e].tolist()
        if s < n_in:
            out[(t - n_in, s)] = graph.edge_attr[e]
    assert len(out) == n_in * n_out
    return out


@pytest.mark.parametrize("seed", range(3))
def test_mlp_nodes_are_units_and_edges_are_weights(seed: int) -> None:
    net = random_net("mlp", torch.Generator().manual_seed(seed))
    weights = [op.params["weight"] for op in net.dense_ops()]
    graph = net_to_graph(net, canonical=False)
    units = weights[0].shape[1] + sum(w.shape[0] for w in weights)
    assert graph.num_nodes == units
    assert graph.num_edges == sum(w.numel() for w in weights)
    assert graph.num_layers == len(weights) + 1
    assert (graph.edge_type == EDGE_TYPES.index("dense")).all()
    first = _first_layer_edges(graph, "dense", weights[0].shape[1], weights[0].shape[0])
    for (o, i), attr in first.items():
        assert float(attr[0]) == pytest.approx(float(weights[0][o, i]), rel=1e-6)
        assert (attr[1:] == 0).all()


@pytest.mark.parametrize("family", ["cnn1d", "cnn2d"])
def test_conv_edges_carry_kernels(family: str) -> None:
    net = random_net(family, torch.Generator().manual_seed(3))
    w = net.dense_ops()[0].params["weight"]  # (c_out, c_in, *kernel)
    graph = net_to_graph(net, canonical=False)
    edges = _first_layer_edges(graph, "conv" + family[3:5], w.shape[1], w.shape[0])
    for (o, i), attr in edges.items():
        kernel = w[o, i].reshape(-1).float()
        torch.testing.assert_close(attr[: kernel.numel()], kernel)
        assert (attr[kernel.numel() :] == 0).all()


def _window_means(rows: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Rows ``(E, H·W)`` as H x W maps, each averaged over the 3 x 3 windows of adaptive
    pooling (cell i spans ⌊iH/3⌋ … ⌈(i+1)H/3⌉), written out by hand as a reference."""
    h, w = grid
    maps = rows.reshape(-1, h, w)
    cells = []
    for i in range(3):
        for j in range(3):
            r0, r1 = (i * h) // 3, -((-(i + 1) * h) // 3)
            c0, c1 = (j * w) // 3, -((-(j + 1) * w) // 3)
            cells.append(maps[:, r0:r1, c0:c1].mean(dim=(1, 2)))
    return torch.stack(cells, dim=1)


@pytest.mark.parametrize("flatten", ["grid", "flat"])
@pytest.mark.parametrize(("family", "seed"), [("cnn1d", 4), ("cnn2d", 4), ("mlp_image", 0)])
def test_flatten_linear_edges_carry_the_spatial_block(family: str, seed: int, flatten: str) -> None:
    net = random_net(family, torch.Generator().manual_seed(seed))
    flatten_op = next(op for op in net.ops if op.kind == "flatten")
    linear = next(op for op in net.ops if flatten_op.output in op.inputs)
    info = net.value_infos()[flatten_op.inputs[0]]
    c, w = info.units, linear.params["weight"]  # w: (n_out, c · block)
    graph = net_to_graph(net, canonical=False, flatten=flatten)
    flat = _edges_of(graph, "flatten")
    assert flat.numel() == w.shape[0] * c  # one edge per (output unit, channel)
    rows_w = w.reshape(w.shape[0] * c, -1).double()
    grid = info.spatial
    if flatten == "grid" and len(grid) == 2 and min(grid) >= 3 and rows_w.shape[1] > KERNEL:
        blocks = _window_means(rows_w, (grid[0], grid[1])).float()
    else:
        blocks = fit_to_kernel(rows_w).float()  # (n_out · c, KERNEL)
    src, dst = graph.edge_index[:, flat]
    rows = (dst - dst.min()) * c + (src - src.min())
    torch.testing.assert_close(graph.edge_attr[flat], blocks[rows])
    assert graph.edge_attr.shape[1] == KERNEL


@pytest.mark.parametrize("seed", range(4))
def test_grid_flatten_edges_keep_where_a_unit_looks(seed: int) -> None:
    """An MLP on 8 x 8 images whose hidden unit k reads one pixel: under "grid" its edge
    is non-zero exactly in the 3 x 3 cells whose windows hold that pixel; under "flat" the
    same pixel lands in the slot of its place in the raster. Moving the pixel moves the
    cell (the edges see the image layout, not just the weights' values)."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randperm(64, generator=g)[:5]
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)
    )
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[torch.arange(5), pixels] = 1.0
    net = import_module(model, (1, 8, 8))
    graph = net_to_graph(net, canonical=False, flatten="grid")
    flat = _edges_of(graph, "flatten")
    attr = graph.edge_attr[flat][graph.edge_index[1, flat].argsort()]  # unit order
    for k, p in enumerate(pixels.tolist()):
        one_hot = torch.zeros(1, 64, dtype=torch.float64)
        one_hot[0, p] = 1.0
        expected = _window_means(one_hot, (8, 8))[0].float()
        torch.testing.assert_close(attr[k], expected)
        assert set(attr[k].nonzero().ravel().tolist()) == set(expected.nonzero().ravel().tolist())
    raster = net_to_graph(net, canonical=False, flatten="flat").edge_attr[flat]
    assert not torch.equal(raster, graph.edge_attr[flat])
    with pytest.raises(ValueError, match="flatten 'rows'"):
        net_to_graph(net, flatten="rows")


def test_residual_edges_exist_for_resmlp_ln() -> None:
    net = random_net("resmlp_ln", torch.Generator().manual_seed(5))
    width = net.dense_ops()[0].params["weight"].shape[0]
    n_adds = sum(op.kind == "add" for op in net.ops)
    graph = net_to_graph(net)
    res = _edges_of(graph, "residual")
    assert res.numel() == n_adds * 2 * width  # both summands, unit to unit
    assert (graph.edge_attr[res, 0] == 1).all()
    assert _edges_of(graph, "layernorm").numel() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_inputs_and_outputs_have_distinct_positions(family: str) -> None:
    net = random_net(family, torch.Generator().manual_seed(6))
    graph = net_to_graph(net)
    n_in, n_out = (
        net.input_shape[0],
        int(net(torch.zeros(1, *net.input_shape, dtype=torch.float64)).shape[1]),
    )
    for role, n in ((ROLE_INPUT, n_in), (ROLE_OUTPUT, n_out)):
        assert torch.equal(graph.position[graph.role == role], torch.arange(n))
    assert (graph.position[graph.role == ROLE_HIDDEN] == 0).all()


def _match_rows(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max difference after the best one-to-one matching of the rows of `a` and `b`."""
    cost = torch.cdist(a.double(), b.double())
    i, j = linear_sum_assignment(cost.numpy())
    return float(cost[i, j].max()) if len(i) else 0.0


@pytest.mark.parametrize(("family", "seed"), [(f, s) for f in FAMILIES for s in range(2)])
def test_probe_features_permute_with_nodes(family: str, seed: int) -> None:
    g = torch.Generator().manual_seed(10 + seed)
    net = random_net(family, g)
    moved = random_exact_action(net, g)
    probes = default_probes(net.input_shape, 6)
    a, b = net_to_graph(net, probes=probes), net_to_graph(moved, probes=probes)
    assert a.probes is not None and b.probes is not None
    scale = float(a.probes.abs().max()) + 1e-12
    fixed = a.role != ROLE_HIDDEN  # inputs and outputs keep their order
    torch.testing.assert_close(a.probes[fixed], b.probes[fixed], rtol=1e-4, atol=1e-5 * scale)
    for layer in range(a.num_layers):
        rows_a, rows_b = (torch.cat([gr.x, gr.probes], 1)[gr.layer == layer] for gr in (a, b))
        assert _match_rows(rows_a, rows_b) <= 1e-4 * scale, layer


def test_probe_kinds() -> None:
    """Sobol probes fill [-1, 1]^d evenly; normal ones are the draws of the encoders saved
    before the option existed (seeded standard normals); both repeat exactly."""
    sobol = default_probes((2,), 64)
    assert sobol.shape == (64, 2) and sobol.abs().max() <= 1
    assert torch.equal(sobol, default_probes((2,), 64))
    cells = torch.histogramdd(sobol, bins=[4, 4], range=[-1.0, 1.0, -1.0, 1.0]).hist
    assert cells.min() == cells.max() == 4  # 64 points, 4 in each of 16 cells
    uniform = torch.rand((64, 2), generator=torch.Generator().manual_seed(0)) * 2 - 1
    plain = torch.histogramdd(uniform.double(), bins=[4, 4], range=[-1.0, 1.0, -1.0, 1.0]).hist
    assert plain.max() - plain.min() > cells.max() - cells.min()  # the check can fail
    normal = default_probes((1, 3, 3), 5, seed=2, kind="normal")
    want = torch.randn(
        (5, 1, 3, 3), generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    assert torch.equal(normal, want)
    big = default_probes((30_000,), 2)  # past Sobol's dimensions: plain uniform draws
    assert big.shape == (2, 30_000) and big.abs().max() <= 1 and big.std() > 0.5
    image = default_probes((2, 8, 8), 16, kind="smooth")
    assert image.shape == (16, 2, 8, 8) and image.abs().max() <= 1
    step = image.diff(dim=-1).abs().max()  # at most 2 per grid cell of 3.5 pixels
    independent = default_probes((2, 8, 8), 16).diff(dim=-1).abs().max()
    assert step <= 4 / 7 + 1e-12 < independent
    assert torch.equal(default_probes((5,), 8, kind="smooth"), default_probes((5,), 8))
    with pytest.raises(ValueError, match="probe kind"):
        default_probes((2,), 4, kind="grid")


def test_structured_probes_hold_the_pixel_grid_then_sobol_points() -> None:
    lat = default_probes((2,), 256, kind="structured")
    assert lat.shape == (256, 2) and lat.abs().max() <= 1
    axis = torch.linspace(-1, 1, 8, dtype=torch.float64)  # 8 x 8 = 64 = a quarter of 256
    grid = {tuple(p) for p in torch.cartesian_prod(axis, axis).tolist()}
    assert {tuple(p) for p in lat[:64].tolist()} == grid
    assert not grid & {tuple(p) for p in lat[64:].tolist()}
    assert torch.equal(lat[64:], default_probes((2,), 192))
    assert default_probes((3,), 256, kind="structured")[:64].unique().numel() == 4  # 4^3
    for shape, n in (((5,), 16), ((2,), 12)):  # too many coordinates; too few points
        assert torch.equal(default_probes(shape, n, kind="structured"), default_probes(shape, n))
    image = default_probes((1, 8, 8), 16, kind="structured")  # images: the smooth probes
    assert torch.equal(image, default_probes((1, 8, 8), 16, kind="smooth"))
    assert not torch.equal(image, default_probes((1, 8, 8), 16))


def test_batching_offsets() -> None:
    g = torch.Generator().manual_seed(8)
    graphs = [net_to_graph(random_net(f, g)) for f in ("mlp", "cnn2d_bn", "resmlp_ln")]
    batch = batch_graphs(graphs)
    node_off = edge_off = layer_off = 0
    for i, gr in enumerate(graphs):
        nodes = slice(node_off, node_off + gr.num_nodes)
        edges = slice(edge_off, edge_off + gr.num_edges)
        assert torch.equal(batch.edge_index[:, edges], gr.edge_index + node_off)
        assert torch.equal(batch.edge_attr[edges], gr.edge_attr)
        assert (batch.batch[nodes] == i).all()
        assert torch.equal(batch.layer_id[nodes], gr.layer + layer_off)
        assert torch.equal(batch.x[nodes], gr.x)
        node_off, edge_off, layer_off = (
            node_off + gr.num_nodes,
            edge_off + gr.num_edges,
            layer_off + gr.num_layers,
        )
    assert batch.num_graphs == 3 and batch.x.shape[0] == node_off
    assert batch.layers_per_graph.tolist() == [gr.num_layers for gr in graphs]


@pytest.mark.parametrize(
    ("layers", "shape", "expected"),
    [
        # 16 inputs, a vector, 10 outputs -> log 16, rank 1, log 10.
        ([nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 10)], (16,), (16, 1, 10)),
        # A 1 x 8 x 8 image (64 values, rank 3) into 3 outputs.
        (
            [nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3)],
            (1, 8, 8),
            (64, 3, 3),
        ),
    ],
)
def test_domain_features_describe_the_functions_shape(layers, shape, expected) -> None:
    net = import_module(nn.Sequential(*layers), input_shape=shape)
    size, rank, outputs = expected
    want = torch.tensor([torch.tensor(size).log(), rank, torch.tensor(outputs).log()])
    graph = net_to_graph(net)
    assert graph.domain is not None
    torch.testing.assert_close(graph.domain, want)
    moved = random_exact_action(net.to(torch.float64), torch.Generator().manual_seed(0))
    torch.testing.assert_close(net_to_graph(moved).domain, want)  # no symmetry changes it


def test_batched_domain_features_are_one_row_per_graph() -> None:
    g = torch.Generator().manual_seed(3)
    graphs = [net_to_graph(random_net(f, g)) for f in ("mlp", "cnn2d", "mlp")]
    b = batch_graphs(graphs)
    assert b.domain is not None and b.domain.shape == (3, 3)
    for row, graph in zip(b.domain, graphs, strict=True):
        torch.testing.assert_close(row, graph.domain)
    assert not torch.equal(b.domain[0], b.domain[1])  # a vector input vs an image


def _probe_features_reference(net, units, probes, n_nodes):  # type: ignore[no-untyped-def]
    """The plain version: keep every activation, then write them in order; one-hot tokens."""
    from zoolens.graph.seq import binned, token_vocab

    env = {net.input: probes.to(next(net.parameters()).dtype)}
    with torch.no_grad():
        for op in net.ops:
            env[op.output] = op.run([env[v] for v in op.inputs])
    feats = torch.zeros((n_nodes, probes.shape[0]), dtype=torch.float64)
    vocab = token_vocab(net.consumers(net.input))
    for value, u in units.items():
        if u.block != 1:
            continue
        a = env[value]
        if value == net.input and vocab is not None:
            a = binned(torch.nn.functional.one_hot(a.long(), vocab).to(torch.float64).mean(dim=1))
        a = a.mean(dim=tuple(range(2, a.dim()))) if a.dim() > 2 else a
        feats[u.nodes] = a.T.to(torch.float64)
    return feats.float()


@pytest.mark.parametrize("family", ["mlp", "resmlp_ln", "cnn1d", "bert", "gpt2"])
def test_probe_features_equal_the_plain_reference_bit_for_bit(family: str) -> None:
    from zoolens.graph.build import _walk, probe_features
    from zoolens.graph.probes import token_probes
    from zoolens.graph.seq import token_vocab
    from zoolens.testing.seq_nets import SeqConfig, seq_net

    g = torch.Generator().manual_seed(0)
    if family in ("bert", "gpt2"):  # a vocabulary above the 256 bins
        net = seq_net(family, g, SeqConfig(vocab=700)).to(torch.float32)
    else:
        net = random_net(family, g).to(torch.float32)
    b, units = _walk(net)
    probes = token_probes(
        default_probes(net.input_shape, 32), token_vocab(net.consumers(net.input))
    )
    n = b.x.shape[0]
    fast = probe_features(net, units, probes, n)
    assert torch.equal(fast, _probe_features_reference(net, units, probes, n))
    assert fast.abs().sum() > 0
