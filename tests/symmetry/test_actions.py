"""Exact actions keep the function; non-symmetries change it (so these tests can fail)."""

from __future__ import annotations

import pytest
import torch

from zoolens.ir import DENSE_KINDS, Net
from zoolens.symmetry import (
    PERM_LINKS,
    apply_scale,
    build_spaces,
    canonicalize,
    free_spaces,
    permute_spaces,
    random_exact_action,
    random_permutations,
    scale_segments,
)
from zoolens.testing import FAMILIES, assert_same_function, max_rel_diff, random_input, random_net

SEEDS = range(4)
CASES = [(f, s) for f in FAMILIES for s in SEEDS]


def _net(family: str, seed: int) -> tuple[Net, torch.Tensor, torch.Generator]:
    g = torch.Generator().manual_seed(seed)
    net = random_net(family, g)
    return net, random_input(net, g), g


@pytest.mark.parametrize(("family", "seed"), CASES)
def test_random_exact_action_keeps_function(family: str, seed: int) -> None:
    net, x, g = _net(family, seed)
    acted = random_exact_action(net, g)
    assert_same_function(net, acted, x, rtol=1e-6)
    # ... and it really moved the weights (otherwise this test proves nothing).
    moved = max(
        float((a - b).abs().max())
        for a, b in zip(net.parameters(), acted.parameters(), strict=True)
    )
    assert moved > 1e-3


@pytest.mark.parametrize(("family", "seed"), CASES)
def test_canonicalize_keeps_function_and_is_idempotent(family: str, seed: int) -> None:
    net, x, _ = _net(family, seed)
    canon = canonicalize(net)
    assert_same_function(net, canon, x, rtol=1e-6)
    again = canonicalize(canon)
    for a, b in zip(canon.parameters(), again.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("family", "seed"), CASES)
def test_canonicalize_agrees_up_to_the_permutation(family: str, seed: int) -> None:
    net, _, g = _net(family, seed)
    scaled = net.clone()
    from zoolens.symmetry.actions import random_scale

    for seg in scale_segments(scaled):
        if seg.group is not None:
            apply_scale(scaled, seg, random_scale(seg, g, log_range=2.0))
    perms = random_permutations(scaled, g)
    acted = permute_spaces(scaled, perms)
    expected = permute_spaces(canonicalize(net), perms)
    got = canonicalize(acted)
    for a, b in zip(expected.parameters(), got.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def _first_dense(net: Net) -> str:
    return next(op.name for op in net.ops if op.kind in DENSE_KINDS)


@pytest.mark.parametrize(("family", "seed"), CASES)
def test_permuting_inputs_changes_function(family: str, seed: int) -> None:
    """Input features are not interchangeable: feeding them permuted changes the output."""
    net, x, _ = _net(family, seed)
    flat = x.flatten(1)
    perm = torch.roll(torch.arange(flat.shape[1]), 1)  # never the identity
    x_perm = flat[:, perm].reshape(x.shape)
    assert max_rel_diff(net(x), net(x_perm)) > 1e-3


@pytest.mark.parametrize(("family", "seed"), CASES)
def test_uncoupled_permutation_changes_function(family: str, seed: int) -> None:
    """Permuting a layer's output units without its readers' inputs is not a symmetry."""
    net, x, _ = _net(family, seed)
    bad = net.clone()
    op = bad.op(_first_dense(bad))
    n = op.params["weight"].shape[0]
    perm = torch.roll(torch.arange(n), 1)
    for role, t in op.params.items():
        op.params[role] = t.index_select(0, perm)
    assert max_rel_diff(net(x), bad(x)) > 1e-3


@pytest.mark.parametrize("seed", SEEDS)
def test_rescaling_a_tanh_unit_changes_function(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    net = random_net("siren", g)  # sine units: odd, not homogeneous
    x = random_input(net, g)
    bad = net.clone()
    seg = next(s for s in scale_segments(bad) if s.group == "sign")
    assert seg.group == "sign"
    s = torch.ones(seg.space.size, dtype=torch.float64)
    s[0] = 2.0
    apply_scale(bad, seg, s)
    assert max_rel_diff(net(x), bad(x)) > 1e-3


def test_tanh_mlp_admits_sign_flips_only() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    from zoolens.ir import load_net

    net = load_net(model)
    assert isinstance(net, Net)
    groups = [s.group for s in scale_segments(net) if s.group]
    assert groups == ["sign"]


def test_network_inputs_and_outputs_are_never_permuted(gen: torch.Generator) -> None:
    for family in FAMILIES:
        net = random_net(family, gen)
        spaces = build_spaces(net, PERM_LINKS)
        free_values = {v for sp in free_spaces(spaces) for v in sp.values}
        assert net.input not in free_values and net.output not in free_values
        assert free_values, family


def test_residual_stream_shares_one_permutation(gen: torch.Generator) -> None:
    net = random_net("resmlp_ln", gen)
    spaces = build_spaces(net, PERM_LINKS)
    adds = [op for op in net.ops if op.kind == "add"]
    roots = {sp.root for sp in spaces.values() for op in adds if op.output in sp.values}
    assert len(roots) == 1  # every writer of the stream is permuted together
