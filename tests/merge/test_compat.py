"""Nets of different architectures: one error naming what differs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.ir.families import build, export_onnx, inputs
from torch import nn

from zoolens.errors import ArchitectureMismatchError
from zoolens.ir import Net, load_net
from zoolens.merge import align, check_same_architecture, merge
from zoolens.merge.align import weight_distance
from zoolens.testing import assert_same_function


def _net(*layers: nn.Module, shape: tuple[int, ...] = (4,)) -> Net:
    net = load_net(nn.Sequential(*layers), input_shape=shape)
    assert isinstance(net, Net)
    return net.to(torch.float64)


def test_same_architecture_passes_with_other_names() -> None:
    a = _net(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    b = a.clone()
    for op in b.ops:
        op.name = "other_" + op.name
    check_same_architecture(a, b)  # names may differ


@pytest.mark.parametrize(
    ("other", "shape", "message"),
    [
        (
            (nn.Linear(4, 7), nn.ReLU(), nn.Linear(7, 2)),
            (4,),
            r"op 0 .*weight has shape \(6, 4\) vs \(7, 4\)",
        ),
        ((nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)), (4,), r"op 1 .*kind relu vs tanh"),
        ((nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 2)), (5,), r"input shape: \(4,\) vs \(5,\)"),
        ((nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2), nn.ReLU()), (4,), r"3 ops and B 4"),
        ((nn.Linear(4, 6), nn.LeakyReLU(0.2), nn.Linear(6, 2)), (4,), r"kind relu vs leaky_relu"),
    ],
)
def test_mismatch_names_the_first_difference(
    other: tuple[nn.Module, ...], shape: tuple[int, ...], message: str
) -> None:
    a = _net(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    b = _net(*other, shape=shape)
    with pytest.raises(ArchitectureMismatchError, match=message):
        check_same_architecture(a, b)
    with pytest.raises(ArchitectureMismatchError) as e:
        align(a, b)
    assert "\n" not in str(e.value)
    with pytest.raises(ArchitectureMismatchError):
        merge(a, b)


def test_leaky_slope_is_a_setting() -> None:
    a = _net(nn.Linear(4, 6), nn.LeakyReLU(0.1), nn.Linear(6, 2))
    b = _net(nn.Linear(4, 6), nn.LeakyReLU(0.2), nn.Linear(6, 2))
    with pytest.raises(ArchitectureMismatchError, match="settings"):
        check_same_architecture(a, b)


def test_fx_and_onnx_imports_of_one_architecture_align(tmp_path: Path) -> None:
    """Names differ between importers; `align` pairs ops by position and keeps REF's names."""
    model_a, shape = build("cnn2d", seed=0)
    model_b, _ = build("cnn2d", seed=1)
    ref = load_net(model_a, input_shape=shape)
    path = export_onnx(model_b, shape, str(tmp_path / "b.onnx"), dynamo=False)
    other = load_net(path)
    assert isinstance(ref, Net) and isinstance(other, Net)
    ref, other = ref.to(torch.float64), other.to(torch.float64)
    out = align(ref, other)
    x = inputs(shape, n=16)
    assert_same_function(other, out, x, rtol=1e-5)
    assert [op.name for op in out.ops] == [op.name for op in ref.ops]
    assert weight_distance(ref, out) < weight_distance(ref, other)
