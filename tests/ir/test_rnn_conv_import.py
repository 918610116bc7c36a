"""LSTM/GRU, grouped/depthwise conv and concat/split read through torch.fx and ONNX
(both exporters, dynamic batch axis): same function, same parameter count."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from zoolens.errors import UnsupportedOpError
from zoolens.ir import Net, load_net
from zoolens.ir.onnx_import import import_onnx

from .families import reference, rel_err
from .rnn_families import MODELS, make, num_weights

ONNX_CASES = [
    (name, dynamo)
    for name in ("lstm", "gru2", "lstm2", "bilstm2", "bigru", "encoded", "mobile", "depthwise1d")
    for dynamo in (False, True)
    if not (dynamo and name in ("lstm2", "bigru", "depthwise1d"))  # the dynamo exporter is slow
]


def _inputs(shape: tuple[int, ...], n: int = 5) -> torch.Tensor:
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(7), dtype=torch.float64)


def _export(model: nn.Module, shape: tuple[int, ...], path: Path, dynamo: bool) -> str:
    x = torch.randn(2, *shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dims = {"x": {0: torch.export.Dim("batch")}}
            torch.onnx.export(model, (x,), str(path), dynamo=True, dynamic_shapes=dims)
        else:
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=False,
                input_names=["x"],
                dynamic_axes={"x": {0: "batch"}},
                do_constant_folding=False,  # keep BatchNorm apart from the convolutions
            )
    return str(path)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fx_import_reproduces_the_model(name: str) -> None:
    model, shape = make(name, 0)
    net = load_net(model, input_shape=shape)
    assert isinstance(net, Net)
    assert net.num_params() == num_weights(model)
    x = _inputs(shape)
    assert rel_err(net.to(torch.float64)(x), reference(model, x)) <= 1e-10


@pytest.mark.parametrize(("name", "dynamo"), ONNX_CASES)
def test_onnx_import_reproduces_the_model(name: str, dynamo: bool, tmp_path: Path) -> None:
    model, shape = make(name, 1)
    net = import_onnx(_export(model, shape, tmp_path / f"{name}.onnx", dynamo), strict=True)
    assert isinstance(net, Net) and net.input_shape == shape
    kinds = {op.kind for op in net.ops}
    if "lstm" in name or "gru" in name:
        assert kinds >= {"select"} and kinds & {"lstm", "gru"}
    if not dynamo and name == "mobile":  # BatchNorm kept: the weights are the module's
        assert net.num_params() == num_weights(model)
    if name in ("lstm", "gru2", "lstm2", "bilstm2", "bigru", "encoded"):
        assert net.num_params() == sum(p.numel() for p in model.parameters())
    for n in (1, 3):
        x = _inputs(shape, n)
        assert rel_err(net.to(torch.float64)(x), reference(model, x)) <= 1e-4


def test_onnx_and_fx_agree_on_lstm_weights(tmp_path: Path) -> None:
    """ONNX's gate order (i, o, f, c) comes back as torch's (i, f, g, o)."""
    model, shape = make("lstm", 2)
    from_fx = load_net(model, input_shape=shape)
    from_onnx = import_onnx(_export(model, shape, tmp_path / "l.onnx", False), strict=True)
    assert isinstance(from_fx, Net) and isinstance(from_onnx, Net)
    fx_rnn = next(op for op in from_fx.ops if op.kind == "lstm")
    onnx_rnn = next(op for op in from_onnx.ops if op.kind == "lstm")
    for role, t in fx_rnn.params.items():
        torch.testing.assert_close(onnx_rnn.params[role], t)


class _FinalState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[1][0]


class _TimeMajor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0][-1]


@pytest.mark.parametrize(
    ("module", "what"),
    [(_FinalState(), "final state"), (_TimeMajor(), "batch_first=False")],
)
def test_unsupported_rnn_uses_are_named(module: nn.Module, what: str) -> None:
    with pytest.raises(UnsupportedOpError, match=what) as err:
        load_net(module, input_shape=(5, 3))
    assert "\n" not in str(err.value)


def test_onnx_final_state_is_named(tmp_path: Path) -> None:
    path = _export(_FinalState().eval(), (5, 3), tmp_path / "h.onnx", False)
    with pytest.raises(UnsupportedOpError, match="GRU"):
        import_onnx(path, strict=True)
