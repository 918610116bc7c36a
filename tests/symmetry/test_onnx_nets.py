"""Exact actions, canonical form and encoder invariance on nets read from ONNX files."""

from __future__ import annotations

import warnings

import pytest
import torch

from zoolens.ir import Net, load_net
from zoolens.nn import load_encoder
from zoolens.symmetry import canonicalize, random_exact_action
from zoolens.testing import FAMILIES, assert_invariant, assert_same_function, random_module


def _onnx_net(family: str, seed: int, tmp_path) -> Net:
    g = torch.Generator().manual_seed(seed)
    model, shape = random_module(family, g)
    path = tmp_path / f"{family}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, *shape),), str(path), dynamo=False)
    net = load_net(path)
    assert isinstance(net, Net), f"{family}: the ONNX file did not load as a Net"
    return net


@pytest.mark.parametrize("family", FAMILIES)
def test_actions_on_onnx_nets_keep_the_function(family: str, tmp_path) -> None:
    net = _onnx_net(family, 3, tmp_path).to(torch.float64)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((16, *net.input_shape), generator=g, dtype=torch.float64)
    assert_same_function(net, random_exact_action(net, g), x, rtol=1e-6)
    assert_same_function(net, canonicalize(net), x, rtol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_encoder_is_invariant_on_onnx_nets(family: str, tmp_path) -> None:
    net = _onnx_net(family, 4, tmp_path)
    assert_invariant(load_encoder("default"), net, torch.Generator().manual_seed(1))
