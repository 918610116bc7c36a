"""Inexact augmentations: they are random, zero-mean where promised, and do change outputs."""

from __future__ import annotations

import torch

from zoolens.ir import DENSE_KINDS
from zoolens.symmetry import drop_connect, neuron_dropout, weight_noise
from zoolens.testing import max_rel_diff, random_input, random_net


def test_weight_noise_is_zero_mean_random_and_scaled(gen: torch.Generator) -> None:
    net = random_net("mlp", gen)
    diffs = []
    for _ in range(200):
        noisy = weight_noise(net, 0.1, gen)
        d = [b - a for a, b in zip(net.parameters(), noisy.parameters(), strict=True)]
        diffs.append(torch.cat([t.flatten() for t in d]))
    diff = torch.stack(diffs)  # (200, n_params)
    assert diff.std() > 0  # random, not a constant offset
    assert abs(float(diff.mean())) < 3 * float(diff.std()) / diff.numel() ** 0.5 + 1e-3
    assert not torch.allclose(diffs[0], diffs[1])  # two draws differ


def test_weight_noise_std_follows_each_tensor_std(gen: torch.Generator) -> None:
    net = random_net("mlp", gen)
    w = next(op for op in net.ops if op.kind in DENSE_KINDS).params["weight"]
    samples = []
    for _ in range(300):
        op = next(o for o in weight_noise(net, 0.5, gen).ops if o.kind in DENSE_KINDS)
        samples.append((op.params["weight"] - w).flatten())
    ratio = float(torch.cat(samples).std() / (0.5 * w.std()))
    assert 0.9 < ratio < 1.1


def test_drop_connect_zeroes_about_p_of_weights(gen: torch.Generator) -> None:
    net = random_net("cnn2d", gen)
    dropped = drop_connect(net, 0.3, gen)
    total = zero = 0
    for op in dropped.ops:
        if op.kind in DENSE_KINDS:
            total += op.params["weight"].numel()
            zero += int((op.params["weight"] == 0).sum())
    assert 0.2 < zero / total < 0.4


def test_inexact_augmentations_change_the_function(gen: torch.Generator) -> None:
    net = random_net("mlp", gen)
    x = random_input(net, gen)
    for aug in (drop_connect(net, 0.2, gen), weight_noise(net, 0.2, gen)):
        assert max_rel_diff(net(x), aug(x)) > 1e-4
    dropped = neuron_dropout(net, 0.9, gen)
    assert max_rel_diff(net(x), dropped(x)) > 1e-4
