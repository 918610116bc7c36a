"""`align` keeps the model's function and brings its weights closer to the reference,
on every family with exact symmetries, without per-architecture specs."""

from __future__ import annotations

import pytest
import torch
from tests.ir.families import build

from zoolens.ir import Net, load_net
from zoolens.merge import align
from zoolens.merge.align import weight_distance
from zoolens.symmetry import permute_spaces, random_exact_action, random_permutations
from zoolens.testing import FAMILIES, assert_same_function, random_input, random_net

METHODS = ("weights", "activations")


def _redrawn(net: Net, g: torch.Generator) -> Net:
    """`net`'s architecture with new random tensors (an independent net)."""
    out = net.clone()
    for op in out.ops:
        op.params = {
            r: t.abs() + 0.5
            if r == "running_var"
            else torch.randn(t.shape, generator=g, dtype=t.dtype) * t.abs().mean().clamp_min(0.1)
            for r, t in op.params.items()
        }
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", [0, 1])
def test_weight_matching_keeps_function_and_moves_closer(family: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    ref = random_net(family, g)
    model = _redrawn(ref, g)
    out = align(ref, model)
    assert_same_function(model, out, random_input(ref, g, 32), rtol=1e-5)
    assert weight_distance(ref, out) < weight_distance(ref, model) - 1e-6


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", METHODS)
def test_align_undoes_an_exact_action(family: str, method: str) -> None:
    """A random permutation + rescaling of REF is mapped back onto REF exactly."""
    g = torch.Generator().manual_seed(7)
    ref = random_net(family, g)
    moved = random_exact_action(ref, g)
    assert weight_distance(ref, moved) > 0.1  # the action did move it
    out = align(ref, moved, method=method)
    assert_same_function(ref, out, random_input(ref, g, 32), rtol=1e-5)
    assert weight_distance(ref, out) < 1e-6 * weight_distance(ref, moved)


@pytest.mark.parametrize("family", ["mlp_bn", "cnn1d", "cnn2d_bn", "resmlp_ln", "siren"])
def test_align_on_ir_families_with_norms_and_flatten(family: str) -> None:
    """The ir test models (BatchNorm, PReLU, pooling, residual LayerNorm, SIREN)."""
    model, shape = build(family, seed=3)
    ref = load_net(model, input_shape=shape)
    assert isinstance(ref, Net)
    ref = ref.to(torch.float64)
    g = torch.Generator().manual_seed(3)
    moved = permute_spaces(ref, random_permutations(ref, g))
    other = _redrawn(ref, g)
    x = random_input(ref, g, 32)
    for method in METHODS:
        out = align(ref, moved, method=method)
        assert_same_function(moved, out, x, rtol=1e-5)
        assert weight_distance(ref, out) < 1e-6 * max(weight_distance(ref, moved), 1.0)
    out = align(ref, other)
    assert_same_function(other, out, x, rtol=1e-5)
    assert weight_distance(ref, out) < weight_distance(ref, other)


def test_uncoupled_permutation_is_not_a_symmetry() -> None:
    """Sensitivity twin: permuting one layer's rows without its reader's columns changes
    the function, and `align` must not produce such a net (its output keeps the function
    while a naive row sort would not)."""
    g = torch.Generator().manual_seed(0)
    ref = random_net("mlp", g)
    broken = ref.clone()
    w = broken.ops[0].params["weight"]
    broken.ops[0].params["weight"] = w.flip(0)
    x = random_input(ref, g, 32)
    with pytest.raises(AssertionError):
        assert_same_function(ref, broken, x, rtol=1e-5)
    out = align(broken, ref)
    assert_same_function(ref, out, x, rtol=1e-5)


def test_align_keeps_names_of_ref_and_meta_of_model() -> None:
    g = torch.Generator().manual_seed(2)
    ref = random_net("mlp", g)
    model = _redrawn(ref, g)
    model.meta = {"source": "model.onnx"}
    out = align(ref, model)
    assert [op.name for op in out.ops] == [op.name for op in ref.ops]
    assert out.meta == {"source": "model.onnx"}
