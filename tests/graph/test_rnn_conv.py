"""Neural graphs of recurrent, grouped-conv and concat/split nets, and the shipped
encoder on them: exactly invariant, and moved by what is not a symmetry."""

from __future__ import annotations

import warnings

import pytest
import torch
from tests.ir.rnn_families import MODELS, make

from zoolens.graph import EDGE_TYPES, net_to_graph
from zoolens.graph.neural_graph import EDGE_ALIASES
from zoolens.ir import Net, load_net
from zoolens.ir.onnx_import import import_onnx
from zoolens.nn import load_encoder
from zoolens.testing import assert_invariant, cosine


def _net(name: str, seed: int) -> Net:
    model, shape = make(name, seed)
    net = load_net(model, input_shape=shape)
    assert isinstance(net, Net)
    return net


def test_lstm_graph_layout() -> None:
    net = _net("lstm", 0)  # input (T=6, F=5) read through a transpose, LSTM(5 → 8), head 3
    graph = net_to_graph(net)
    assert graph.num_nodes == 5 + 8 + 3
    recurrent = EDGE_TYPES.index(EDGE_ALIASES["recurrent"])
    assert int((graph.edge_type == recurrent).sum()) == 8 * 8
    assert graph.num_edges == 5 * 8 + 8 * 8 + 8 * 3
    # Input edges carry the 4 gate weights; recurrent self-loops the 4 gate biases too.
    src, dst = graph.edge_index
    loops = (src == dst) & (graph.edge_type == recurrent)
    assert int(loops.sum()) == 8
    assert graph.edge_attr[loops][:, 4:8].abs().sum() > 0
    assert graph.edge_attr[~loops & (graph.edge_type == recurrent)][:, 4:].abs().sum() == 0


def test_grouped_conv_and_concat_edges() -> None:
    net = _net("mobile", 0)
    graph = net_to_graph(net)
    assert int(graph.edge_type.max()) < len(EDGE_TYPES)
    # stem 3*8, depthwise 8, pointwise 8*8, residual 2*8, grouped 6*(8/2), fc 10*4; BN folds
    # into the convs' nodes; concat/split add no nodes or edges.
    assert graph.num_edges == 3 * 8 + 8 + 8 * 8 + 2 * 8 + 6 * 4 + 10 * 4
    assert graph.num_nodes == 3 + 8 + 8 + 8 + 8 + 6 + 4


@pytest.fixture(scope="module")
def encoder():  # type: ignore[no-untyped-def]
    return load_encoder("default")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_default_encoder_is_invariant(encoder, name: str) -> None:  # type: ignore[no-untyped-def]
    assert_invariant(encoder, _net(name, 3), torch.Generator().manual_seed(0), n_actions=2)


def _uncoupled_gates(net: Net, producer: str) -> Net:
    """The hidden units of the first gate block permuted alone: a different network."""
    out = net.clone()
    op = out.op(producer)
    h = op.params["weight_hh"].shape[1]
    perm = torch.roll(torch.arange(h), 1)
    for role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        t = op.params[role]
        t[:h] = t[:h][perm]
    return out


@pytest.mark.parametrize(("name", "producer"), [("lstm", "rnn"), ("gru2", "rnn_l1")])
def test_default_encoder_sees_uncoupled_gates(encoder, name: str, producer: str) -> None:  # type: ignore[no-untyped-def]
    net = _net(name, 4)
    z = encoder.encode([net, _uncoupled_gates(net, producer)])
    assert cosine(z[0], z[1]) < 0.9999


def test_default_encoder_sees_the_recurrence(encoder) -> None:  # type: ignore[no-untyped-def]
    net = _net("gru2", 5)
    halved = net.clone()
    halved.op("rnn_l0").params["weight_hh"] *= 0.5
    z = encoder.encode([net, halved])
    assert cosine(z[0], z[1]) < 0.9999


def test_default_encoder_sees_depthwise_filters(encoder) -> None:  # type: ignore[no-untyped-def]
    net = _net("depthwise1d", 6)
    bad = net.clone()
    bad.op("dw").params["weight"] = bad.op("dw").params["weight"].flip(-1)  # filters reversed
    z = encoder.encode([net, bad])
    assert cosine(z[0], z[1]) < 0.9999


def test_default_encoder_sees_the_direction(encoder) -> None:  # type: ignore[no-untyped-def]
    """A bidirectional net with its two cells' directions swapped computes something else."""
    net = _net("bigru", 7)
    swapped = net.clone()
    for op in swapped.ops:
        if op.kind == "gru":
            op.attrs["reverse"] = not op.attrs.get("reverse", False)
    z = encoder.encode([net, swapped])
    assert cosine(z[0], z[1]) < 0.9999


def test_onnx_and_fx_imports_embed_alike(encoder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A bidirectional LSTM read from its ONNX export embeds as the module does, and
    exactly invariantly; another seed of the family does not embed alike."""
    model, shape = make("bilstm2", 8)
    path = str(tmp_path / "bilstm.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = {"x": {0: "batch"}}
        x = torch.randn(2, *shape)
        torch.onnx.export(model, (x,), path, dynamo=False, input_names=["x"], dynamic_axes=axes)
    from_onnx = import_onnx(path, strict=True)
    assert isinstance(from_onnx, Net)
    z = encoder.encode([from_onnx, _net("bilstm2", 8), _net("bilstm2", 9)])
    assert cosine(z[0], z[1]) >= 0.9999
    assert cosine(z[0], z[2]) < 0.999
    assert_invariant(encoder, from_onnx, torch.Generator().manual_seed(2), n_actions=2)
