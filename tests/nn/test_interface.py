"""The interface part: a fixed vector per (input shape, output count)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from zoolens.ir import Net, load_net
from zoolens.nn import NeuralGraphEncoder, load_encoder
from zoolens.nn.interface import interface_vectors, signature
from zoolens.symmetry import random_exact_action
from zoolens.testing import FAMILIES, assert_invariant, cosine, random_net

SMALL = {"hidden": 8, "dim": 16, "layers": 1, "readout_layers": 1, "n_probes": 16, "seed": 1}


def _mlp(n_in: int, n_out: int, g: torch.Generator) -> Net:
    model = nn.Sequential(nn.Linear(n_in, 6), nn.Tanh(), nn.Linear(6, n_out))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    net = load_net(model.eval(), input_shape=(n_in,))
    assert isinstance(net, Net)
    return net


def test_signature_names_shape_and_output_count() -> None:
    assert signature((1, 28, 28), 10) == "1x28x28->10"
    assert signature([4], 3) == "4->3"


def test_vectors_match_exactly_per_signature_and_differ_otherwise() -> None:
    sigs = [f"{d}->{o}" for d in range(1, 30) for o in (1, 2, 3, 10)]
    v = interface_vectors(sigs + sigs[:5], 128)
    assert v.shape == (len(sigs) + 5, 128)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0)
    np.testing.assert_array_equal(v[-5:], v[:5])
    cos = v[: len(sigs)] @ v[: len(sigs)].T
    off = cos[~np.eye(len(sigs), dtype=bool)]
    assert np.abs(off).max() < 0.5 and abs(off.mean()) < 0.02  # about N(0, 1/128)
    assert interface_vectors([], 8).shape == (0, 8)
    with pytest.raises(ValueError, match="interface dim"):
        interface_vectors(["4->3"], 0)


def test_vectors_are_the_same_in_another_process() -> None:
    """Python's own str hash changes between processes; the vectors must not."""
    code = (
        "from zoolens.nn.interface import interface_vectors; "
        "print(repr(interface_vectors(['4->3'], 4).tolist()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert eval(out.stdout) == interface_vectors(["4->3"], 4).tolist()


def test_interface_part_is_invariant_and_tells_interfaces_apart() -> None:
    g = torch.Generator().manual_seed(3)
    enc = NeuralGraphEncoder({**SMALL, "interface": 0.3})
    assert enc.dim == 16 + 128
    for family in FAMILIES:
        net = random_net(family, g)
        assert_invariant(enc, net, g)
        moved = random_exact_action(net, g)
        np.testing.assert_allclose(
            enc.encode([moved])[0, 16:], enc.encode([net])[0, 16:], atol=1e-6
        )
    a, b, c = _mlp(4, 3, g), _mlp(4, 3, g), _mlp(5, 3, g)
    d = _mlp(4, 2, g)
    z = enc.encode([a, b, c, d])[:, 16:]
    assert cosine(z[0], z[1]) > 1 - 1e-9  # same interface, different nets
    assert max(abs(cosine(z[0], z[2])), abs(cosine(z[0], z[3]))) < 0.5  # input; output


def test_cosine_is_the_weighted_sum_and_weights_round_trip(tmp_path) -> None:
    g = torch.Generator().manual_seed(5)
    nets = [_mlp(4, 3, g), _mlp(4, 3, g), _mlp(6, 3, g), _mlp(4, 1, g)]
    plain = NeuralGraphEncoder(SMALL)
    enc = plain.with_fingerprint(0.2, interface=0.25)
    learned, fp = plain.encode(nets), enc.fingerprints(enc.graphs(nets))
    iface = enc.interfaces(nets, enc.graphs(nets))
    z = enc.encode(nets)
    for i in range(len(nets)):
        for j in range(i):
            want = (
                0.55 * cosine(learned[i], learned[j])
                + 0.2 * cosine(fp[i], fp[j])
                + 0.25 * cosine(iface[i], iface[j])
            )
            assert abs(cosine(z[i], z[j]) - want) < 1e-5
    enc.save(str(tmp_path / "enc"))
    back = load_encoder(str(tmp_path / "enc"))
    assert back.id == enc.id and np.array_equal(back.encode(nets), z)
    assert back.id != plain.with_fingerprint(0.2).id  # the weight is part of the id
    for bad in ({"interface": -0.1}, {"interface": 0.5, "fingerprint": 0.5}):
        with pytest.raises(ValueError, match="interface weight"):
            NeuralGraphEncoder({**SMALL, **bad})
