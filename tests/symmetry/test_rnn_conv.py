"""Exact actions on LSTM/GRU, depthwise/grouped conv and concat/split nets keep the
function; the near misses (uncoupled gate blocks, positive rescaling of RNN units, a
depthwise channel moved without its input) do not."""

from __future__ import annotations

import pytest
import torch
from tests.ir.rnn_families import MODELS, make

from zoolens.ir import Net, load_net
from zoolens.symmetry import (
    PERM_LINKS,
    apply_scale,
    build_spaces,
    canonicalize,
    free_spaces,
    permute_spaces,
    random_exact_action,
    scale_segments,
)
from zoolens.symmetry.actions import Segment
from zoolens.testing import assert_same_function, max_rel_diff

CASES = [(name, seed) for name in sorted(MODELS) for seed in range(3)]


def _net(name: str, seed: int) -> tuple[Net, torch.Tensor]:
    model, shape = make(name, seed)
    net = load_net(model, input_shape=shape)
    assert isinstance(net, Net)
    g = torch.Generator().manual_seed(seed)
    return net.to(torch.float64), torch.randn((8, *shape), generator=g, dtype=torch.float64)


def _differs(a: Net, b: Net, x: torch.Tensor) -> float:
    with torch.no_grad():
        return max_rel_diff(a(x), b(x))


@pytest.mark.parametrize(("name", "seed"), CASES)
def test_random_exact_action_keeps_function(name: str, seed: int) -> None:
    net, x = _net(name, seed)
    acted = random_exact_action(net, torch.Generator().manual_seed(seed + 10))
    assert_same_function(net, acted, x, rtol=1e-9)
    moved = max(
        float((a - b).abs().max())
        for a, b in zip(net.parameters(), acted.parameters(), strict=True)
    )
    assert moved > 1e-3


@pytest.mark.parametrize(("name", "seed"), CASES)
def test_canonicalize_keeps_function_and_is_idempotent(name: str, seed: int) -> None:
    net, x = _net(name, seed)
    canon = canonicalize(net)
    assert_same_function(net, canon, x, rtol=1e-9)
    for a, b in zip(canon.parameters(), canonicalize(canon).parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def _segment(net: Net, producer: str) -> Segment:
    out = net.op(producer).output
    return next(s for s in scale_segments(net) if out in s.space.values)


def test_rnn_units_admit_sign_flips_only() -> None:
    net, x = _net("gru2", 0)
    seg = _segment(net, "rnn_l0")
    assert seg.group == "sign"
    signs = torch.tensor([1.0, -1, -1, 1, -1, 1, 1, -1], dtype=torch.float64)
    flipped = net.clone()
    apply_scale(flipped, _segment(flipped, "rnn_l0"), signs)
    assert_same_function(net, flipped, x, rtol=1e-12)
    # Sensitivity: a positive rescaling of the same units is no symmetry of a GRU.
    scaled = net.clone()
    apply_scale(scaled, _segment(scaled, "rnn_l0"), torch.full((8,), 2.0, dtype=torch.float64))
    assert _differs(net, scaled, x) > 1e-3


def test_sign_flip_needs_the_recurrent_columns() -> None:
    """Flipping the candidate-gate rows alone (not the recurrence's reads) is no symmetry."""
    net, x = _net("lstm", 1)
    bad = net.clone()
    op = bad.op("rnn")
    h = op.params["weight_hh"].shape[1]
    for role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        op.params[role][2 * h : 2 * h + 1] *= -1  # unit 0 of the g block only
    bad.op("head").params["weight"][:, 0] *= -1  # the reader compensates
    assert _differs(net, bad, x) > 1e-3


def test_relu_after_an_rnn_forbids_its_sign_flip() -> None:
    net, _ = _net("lstm_relu", 0)
    assert _segment(net, "rnn").group is None
    assert _segment(net, "rnn").space.values  # the segment exists; it is just rigid


def test_relu_units_feeding_an_rnn_admit_positive_scales() -> None:
    net, x = _net("encoded", 0)
    seg = _segment(net, "proj")
    assert seg.group == "positive"
    scaled = net.clone()
    s = torch.linspace(0.3, 3.0, 6, dtype=torch.float64)
    apply_scale(scaled, _segment(scaled, "proj"), s)
    assert_same_function(net, scaled, x, rtol=1e-12)


def _rnn_space(net: Net, producer: str) -> str:
    spaces = build_spaces(net, PERM_LINKS)
    out = net.op(producer).output
    return next(sp.root for sp in free_spaces(spaces) if out in sp.values)


@pytest.mark.parametrize("name", ["lstm", "gru2"])
def test_hidden_permutation_moves_every_gate_block(name: str) -> None:
    net, x = _net(name, 2)
    producer = "rnn" if name == "lstm" else "rnn_l0"
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    moved = permute_spaces(net, {_rnn_space(net, producer): perm})
    assert_same_function(net, moved, x, rtol=1e-12)
    # Sensitivity: the same permutation on the first gate block only is no symmetry.
    bad = net.clone()
    op = bad.op(producer)
    for role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        t = op.params[role]
        t[:8] = t[:8][perm]
    assert _differs(net, bad, x) > 1e-3


def test_depthwise_channels_move_with_their_inputs() -> None:
    net, x = _net("depthwise1d", 0)
    spaces = build_spaces(net, PERM_LINKS)
    stem, dw = net.op("stem").output, net.op("dw").output
    shared = [sp for sp in spaces.values() if stem in sp.values]
    assert len(shared) == 1 and dw in shared[0].values  # one space: in and out tied
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    assert_same_function(net, permute_spaces(net, {shared[0].root: perm}), x, rtol=1e-12)
    # Sensitivity: the depthwise filters permuted without their input channels.
    bad = net.clone()
    bad.op("dw").params["weight"] = bad.op("dw").params["weight"][perm]
    bad.op("dw").params["bias"] = bad.op("dw").params["bias"][perm]
    assert _differs(net, bad, x) > 1e-3


def test_depthwise_units_scale_apart_from_their_inputs() -> None:
    """A depthwise conv writes its own units: tanh after it allows sign flips there, ReLU
    before it positive scales of its inputs, each compensated exactly."""
    net, x = _net("depthwise1d", 1)
    assert _segment(net, "dw").group == "sign"
    assert _segment(net, "stem").group == "positive"
    acted = net.clone()
    apply_scale(acted, _segment(acted, "stem"), torch.linspace(0.5, 2.0, 6, dtype=torch.float64))
    signs = torch.tensor([1.0, -1, 1, -1, -1, 1], dtype=torch.float64)
    apply_scale(acted, _segment(acted, "dw"), signs)
    assert_same_function(net, acted, x, rtol=1e-12)


def test_split_and_grouped_conv_spaces_are_fixed() -> None:
    net, _ = _net("mobile", 0)
    spaces = build_spaces(net, PERM_LINKS)
    fixed = {v for sp in spaces.values() if sp.fixed for v in sp.values}
    free = {v for sp in free_spaces(spaces) for v in sp.values}
    for op in net.ops:
        if op.kind == "split" or op.attrs.get("groups", 1) == 2:
            assert {*op.inputs, op.output} <= fixed
        if op.kind == "concat":  # its parts here are all fixed (split / grouped conv)
            assert set(op.inputs) <= fixed and op.output not in free
    # The residual sum is split, so the block's space (stem, depthwise, pointwise) is fixed
    # too: split fixes what it touches rather than refine a space into blocks.
    assert net.op("pw").output in fixed


def test_concat_space_is_made_of_its_inputs() -> None:
    net, x = _net("concat_mlp", 0)
    spaces = build_spaces(net, PERM_LINKS)
    where = {v: sp for sp in spaces.values() for v in sp.values}
    first = where[net.op("norm").output]  # cat(relu(a), tanh(b)) + skip, then LayerNorm
    assert first.parts is not None and [size for _, _, size in first.parts] == [5, 3]
    assert first not in free_spaces(spaces) and not first.fixed
    assert net.op("skip").output in first.values  # the residual moves with the concat
    a_space = first.parts[0][0]
    perm = torch.tensor([4, 2, 0, 1, 3])
    assert_same_function(net, permute_spaces(net, {a_space: perm}, spaces), x, rtol=1e-12)
    # Sensitivity: the branch permuted, but not the concat's readers (nor the residual).
    bad = net.clone()
    for role in ("weight", "bias"):
        bad.op("a").params[role] = bad.op("a").params[role][perm]
    assert _differs(net, bad, x) > 1e-3
