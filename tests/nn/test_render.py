"""Drawings of coordinate nets (`zoolens.nn.render`): what they hold, and that they are
exactly invariant to weight symmetries yet tell different functions apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from zoolens.ir import Net, load_net
from zoolens.nn.render import RENDER_CHANNELS, RenderHead, is_coordinate_net, renders
from zoolens.symmetry import random_exact_action
from zoolens.testing import FAMILIES, random_net


def _coordinate_net(n_out: int, g: torch.Generator) -> tuple[nn.Module, Net]:
    model = nn.Sequential(nn.Linear(2, 12), nn.Tanh(), nn.Linear(12, n_out))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    net = load_net(model.eval(), input_shape=(2,))
    assert isinstance(net, Net)
    return model.double(), net.to(torch.float64)


@pytest.mark.parametrize("n_out", [1, 2, 3, 5])
def test_drawing_is_the_standardised_image_on_the_pixel_grid(n_out: int) -> None:
    """Pixel (row r, column c) holds the net's value at x = column c's centre, y = row r's
    (the torch model itself evaluated, not the imported net), per channel centred and
    scaled to unit spread; outputs past RENDER_CHANNELS are dropped, missing ones zero."""
    model, net = _coordinate_net(n_out, torch.Generator().manual_seed(n_out))
    side = 9
    drawing, drawn = renders([net], side)
    assert drawing.shape == (1, RENDER_CHANNELS, side, side) and drawn.tolist() == [True]
    axis = np.linspace(-1, 1, side)
    for r in (0, 4, 8):
        for c in (0, 3, 8):
            with torch.no_grad():
                y = model(torch.tensor([[axis[c], axis[r]]], dtype=torch.float64))[0]
            for ch in range(min(n_out, RENDER_CHANNELS)):
                grid = torch.tensor([[x, yy] for yy in axis for x in axis], dtype=torch.float64)
                with torch.no_grad():
                    values = model(grid)[:, ch]
                want = (y[ch] - values.mean()) / values.std(correction=0)
                assert abs(drawing[0, ch, r, c] - float(want)) < 1e-5
    for ch in range(n_out, RENDER_CHANNELS):
        assert not drawing[0, ch].any()
    stats = drawing[0, : min(n_out, RENDER_CHANNELS)].reshape(-1, side * side)
    np.testing.assert_allclose(stats.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(stats.std(axis=1), 1.0, atol=1e-4)


def test_only_coordinate_nets_are_drawn_and_a_constant_one_is_blank() -> None:
    g = torch.Generator().manual_seed(1)
    nets = [random_net(f, g) for f in FAMILIES]
    drawing, drawn = renders(nets, 8)
    for net, image, d in zip(nets, drawing, drawn, strict=True):
        assert d == (tuple(net.input_shape) == (2,)) == is_coordinate_net(net)
        assert image.any() == d
    assert drawn.any() and not drawn.all()
    model, net = _coordinate_net(1, g)
    with torch.no_grad():
        model[2].weight.zero_()  # a constant function: its channel is blank, not noise
    constant = load_net(model.float(), input_shape=(2,))
    assert isinstance(constant, Net)
    image, drawn = renders([constant], 8)
    assert drawn.tolist() == [True] and not image.any()


@pytest.mark.parametrize("seed", range(4))
def test_drawing_is_invariant_to_weight_symmetries_and_sensitive_to_the_function(
    seed: int,
) -> None:
    """Permuted, rescaled, sign-flipped copies draw the same image (float64); two
    different random coordinate nets do not."""
    g = torch.Generator().manual_seed(seed)
    nets = [random_net("siren", g), _coordinate_net(2, g)[1], random_net("siren", g)]
    drawing, _ = renders(nets, 12)
    for _ in range(3):
        moved, _ = renders([random_exact_action(n, g) for n in nets], 12)
        np.testing.assert_allclose(moved, drawing, atol=1e-5)
    flat = drawing.reshape(len(nets), -1)
    for i in range(len(nets)):
        for j in range(i):
            assert np.abs(flat[i] - flat[j]).max() > 0.1


def test_render_head_reads_any_side() -> None:
    head = RenderHead(4).eval()
    for side in (8, 28, 33):
        out = head(torch.zeros(2, RENDER_CHANNELS, side, side))
        assert out.shape == (2, 4)
