"""Exact actions, canonical form and encoder invariance on nets read from ONNX files."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from zoolens.ir import Net, load_net
from zoolens.nn import load_encoder
from zoolens.symmetry import canonicalize, random_exact_action
from zoolens.testing import (
    FAMILIES,
    assert_invariant,
    assert_same_function,
    cosine,
    random_module,
)


def _export(model: nn.Module, shape: tuple[int, ...], path, fold: bool = True) -> Net:
    """`model` exported to ONNX at `path` (constant folding if `fold`) and read back."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(1, *shape),), str(path), dynamo=False, do_constant_folding=fold
        )
    net = load_net(path)
    assert isinstance(net, Net), f"{path}: the ONNX file did not load as a Net"
    return net


def _onnx_net(family: str, seed: int, tmp_path) -> Net:
    model, shape = random_module(family, torch.Generator().manual_seed(seed))
    return _export(model, shape, tmp_path / f"{family}-{seed}.onnx")


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


@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_and_fx_imports_embed_alike(family: str, tmp_path) -> None:
    """The shipped encoder sees one network, whichever importer read it (the ONNX file is
    an export of the very module fx imports; for BatchNorm nets without constant folding,
    which would fold the norms into the convolutions: an equivalent but different network,
    measured at cosine 0.9993); a different module of the family does not embed alike."""
    enc = load_encoder("default")
    model, shape = random_module(family, torch.Generator().manual_seed(5))
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    from_onnx = _export(model, shape, tmp_path / f"{family}.onnx", fold=not has_bn)
    from_fx = load_net(model, input_shape=shape)
    assert isinstance(from_fx, Net)
    other = _onnx_net(family, 6, tmp_path)
    z_onnx, z_fx, z_other = enc.encode([from_onnx, from_fx, other])
    assert cosine(z_onnx, z_fx) >= 0.9999
    assert cosine(z_onnx, z_other) < 0.999
