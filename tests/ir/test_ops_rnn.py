"""The recurrent, grouped-conv and unit-bookkeeping ops against torch (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoolens.errors import UnsupportedOpError
from zoolens.ir import Net, Op
from zoolens.ir.io import load_net_dir


def _rnn_op(m: nn.RNNBase, kind: str, layer: int = 0, name: str = "r", inp: str = "x") -> Op:
    params = {
        role: getattr(m, f"{role}_l{layer}").detach()
        for role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        if getattr(m, f"{role}_l{layer}", None) is not None
    }
    return Op(name, kind, (inp,), name, params)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False])
def test_rnn_equals_torch(kind: str, bias: bool) -> None:
    torch.manual_seed(0)
    m = (nn.LSTM if kind == "lstm" else nn.GRU)(5, 7, batch_first=True, bias=bias).double()
    x = torch.randn(3, 9, 5, dtype=torch.float64)  # (B, T, F)
    with torch.no_grad():
        ref = m(x)[0]  # (B, T, H)
        got = _rnn_op(m, kind).run([x.transpose(1, 2)])  # (B, H, T)
    torch.testing.assert_close(got.transpose(1, 2), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_reverse_cell_is_the_backward_half(kind: str) -> None:
    torch.manual_seed(3)
    m = (nn.LSTM if kind == "lstm" else nn.GRU)(4, 5, batch_first=True, bidirectional=True)
    m = m.double()
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    params = {
        role: getattr(m, f"{role}_l0_reverse").detach()
        for role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    }
    back = Op("r", kind, ("x",), "r", params, {"reverse": True})
    with torch.no_grad():
        ref = m(x)[0][..., 5:]  # (B, T, H): the backward direction's states
        got = back.run([x.transpose(1, 2)]).transpose(1, 2)
        forward_only = Op("r", kind, ("x",), "r", params).run([x.transpose(1, 2)])
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    assert (forward_only.transpose(1, 2) - ref).abs().max() > 1e-3  # the flag matters


def test_gru_differs_from_lstm_gate_order() -> None:
    """Sensitivity: the runner reads PyTorch's gate order; swapping two blocks changes it."""
    torch.manual_seed(1)
    m = nn.GRU(4, 6, batch_first=True).double()
    op = _rnn_op(m, "gru")
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    swapped = dict(op.params)
    swapped["weight_ih"] = torch.cat(op.params["weight_ih"].chunk(3)[::-1])
    other = Op("r", "gru", ("x",), "r", swapped)
    with torch.no_grad():
        assert (op.run([x]) - other.run([x])).abs().max() > 1e-3


def test_rnn_rejects_wrong_feature_count() -> None:
    m = nn.LSTM(5, 3)
    with pytest.raises(UnsupportedOpError, match="op 'r'"):
        _rnn_op(m, "lstm").run([torch.zeros(2, 4, 6)])


@pytest.mark.parametrize("groups", [2, 4])
def test_grouped_conv_equals_torch(groups: int) -> None:
    g = torch.Generator().manual_seed(groups)
    w = torch.randn(8, 8 // groups, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(8, generator=g, dtype=torch.float64)
    attrs = {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": groups}
    op = Op("c", "conv2d", ("x",), "c", {"weight": w, "bias": b}, attrs)
    x = torch.randn(2, 8, 5, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(op.run([x]), F.conv2d(x, w, b, 1, 1, 1, groups))


def test_concat_split_last_transpose() -> None:
    x = torch.arange(2 * 3 * 4, dtype=torch.float64).reshape(2, 3, 4)
    ops = [
        Op("t", "transpose", ("input",), "t", {}, {"perm": [1, 0]}),  # (B, 4, 3)
        Op("s", "split", ("t",), "s", {}, {"start": 1, "stop": 3}),  # (B, 2, 3)
        Op("c", "concat", ("s", "t"), "c"),  # (B, 6, 3)
        Op("l", "select", ("c",), "l", attrs={"index": -1}),  # (B, 6)
    ]
    net = Net(ops, (3, 4))
    t = x.transpose(1, 2)
    expected = torch.cat([t[:, 1:3], t], dim=1)[..., -1]
    torch.testing.assert_close(net(x), expected)


def test_save_load_round_trip(tmp_path) -> None:
    torch.manual_seed(2)
    m = nn.GRU(3, 4, num_layers=2, batch_first=True)
    ops = [
        Op("t", "transpose", ("input",), "t", {}, {"perm": [1, 0]}),
        _rnn_op(m, "gru", 0, "g0", "t"),
        _rnn_op(m, "gru", 1, "g1", "g0"),
        Op("l", "select", ("g1",), "l", attrs={"index": -1}),
    ]
    net = Net(ops, (5, 3))
    net.save(str(tmp_path / "n"))
    back = load_net_dir(str(tmp_path / "n"))
    assert back.content_hash() == net.content_hash()
    x = torch.randn(2, 5, 3)
    assert torch.equal(back(x), net(x))
