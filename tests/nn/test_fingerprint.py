"""The function fingerprint: the outputs on the probes, exactly; a projection that keeps
cosines; and the hybrid embedding's cosine, the weighted sum of its two parts'."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoolens.errors import LoadError
from zoolens.graph import default_probes, net_to_graph
from zoolens.nn import NeuralGraphEncoder, load_encoder
from zoolens.nn.fingerprint import MAX_OUTPUTS, Fingerprinter, fingerprints, output_responses
from zoolens.symmetry import random_exact_action, weight_noise
from zoolens.testing import FAMILIES, cosine, random_net


@pytest.mark.parametrize("family", FAMILIES)
def test_output_responses_are_the_nets_outputs(family: str) -> None:
    g = torch.Generator().manual_seed(3)
    net = random_net(family, g).to(torch.float64)
    x = default_probes(net.input_shape, 32, kind="structured").to(torch.float64)
    graph = net_to_graph(net, canonical=True, probes=x)  # built from the canonical form
    with torch.no_grad():
        want = net(x).reshape(32, -1)
    torch.testing.assert_close(output_responses(graph), want, rtol=1e-4, atol=1e-5)


def test_projection_keeps_cosines() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 200, 8 * MAX_OUTPUTS))
    b = 0.5 * a + b  # cosines spread around 0.45
    fingerprinter = Fingerprinter(256, 0)
    r = fingerprinter.projection(8 * MAX_OUTPUTS).numpy()
    assert fingerprinter.projection(8 * MAX_OUTPUTS) is fingerprinter.projection(8 * MAX_OUTPUTS)
    true = [cosine(u, v) for u, v in zip(a, b, strict=True)]
    projected = [cosine(u @ r, v @ r) for u, v in zip(a, b, strict=True)]
    err = np.abs(np.subtract(true, projected))
    assert err.mean() < 0.1 and np.corrcoef(true, projected)[0, 1] > 0.5, err.mean()
    other = Fingerprinter(256, 1).projection(8 * MAX_OUTPUTS).numpy()
    assert other[0, 0] != r[0, 0]  # the seed counts


def test_outputs_compare_slot_by_slot_across_output_counts() -> None:
    """Output j on probe p has one slot for every net: a net and the same net with one
    (constant, so standardised to zero) output more have the same fingerprint; with its
    outputs swapped, not."""
    g = torch.Generator().manual_seed(5)
    net = random_net("mlp", g).to(torch.float64)
    x = default_probes(net.input_shape, 16)
    last = [o for o in net.ops if "weight" in o.params][-1]
    wider, swapped = net.clone(), net.clone()
    op = [o for o in wider.ops if "weight" in o.params][-1]
    extra = {
        k: (1.0 if k == "bias" else 0.0) * torch.ones_like(t[:1]) for k, t in op.params.items()
    }
    op.params = {k: torch.cat([t, extra[k]]) for k, t in op.params.items()}
    op = [o for o in swapped.ops if "weight" in o.params][-1]
    perm = torch.roll(torch.arange(last.params["weight"].shape[0]), 1)
    op.params = {k: t.index_select(0, perm) for k, t in op.params.items()}
    fp = fingerprints([net_to_graph(n, probes=x) for n in (net, wider, swapped)], 256)
    assert cosine(fp[0], fp[1]) > 0.99 and cosine(fp[0], fp[2]) < 0.9


def test_hybrid_cosine_is_the_weighted_sum_of_its_parts() -> None:
    g = torch.Generator().manual_seed(1)
    nets = [random_net(f, g) for f in FAMILIES]
    plain = NeuralGraphEncoder({"n_probes": 16})
    hybrid = plain.with_fingerprint(0.25)
    assert hybrid.dim == plain.dim + 256 and hybrid.module_dim == plain.dim
    z, learned = hybrid.encode(nets), plain.encode(nets)
    fp = fingerprints(hybrid.graphs(nets), 256)
    for i in range(len(nets)):
        for j in range(i):
            want = 0.75 * cosine(learned[i], learned[j]) + 0.25 * cosine(fp[i], fp[j])
            assert abs(cosine(z[i], z[j]) - want) < 1e-5
    np.testing.assert_allclose(  # the quality head reads the learned part only
        hybrid.predict_quality(nets), plain.predict_quality(nets), atol=1e-6
    )


def test_fingerprint_weight_is_saved_and_checked(tmp_path) -> None:
    hybrid = NeuralGraphEncoder({"n_probes": 8, "fingerprint": 0.3})
    hybrid.save(str(tmp_path / "enc"))
    loaded = load_encoder(str(tmp_path / "enc"))
    assert loaded.id == hybrid.id and loaded.dim == hybrid.dim == 512
    bad_configs: list[dict[str, object]] = [
        {"fingerprint": 1.5},
        {"fingerprint": -0.1},
        {"fingerprint": 0.2, "n_probes": 0},
    ]
    for bad in bad_configs:
        with pytest.raises(ValueError, match="fingerprint"):
            NeuralGraphEncoder(bad)
    with pytest.raises(LoadError, match="fingerprint_norm"):  # a deleted option
        NeuralGraphEncoder({"fingerprint_norm": "zscore"})


def test_an_outputs_offset_and_scale_do_not_count() -> None:
    """Each output is standardised over the probes: a constant added to an output, or a
    positive scale on it, leaves the fingerprint; a sign flip of one output (another
    function) does not (the sensitivity twin)."""
    g = torch.Generator().manual_seed(9)
    net = random_net("mlp", g).to(torch.float64)
    x = default_probes(net.input_shape, 32)
    shifted, scaled, flipped = net.clone(), net.clone(), net.clone()
    last = [o for o in shifted.ops if "weight" in o.params][-1]
    last.params["bias"] = last.params["bias"] + torch.linspace(1.0, 3.0, len(last.params["bias"]))
    last = [o for o in scaled.ops if "weight" in o.params][-1]
    factor = torch.linspace(0.5, 4.0, len(last.params["bias"]))[:, None]
    last.params = {
        k: t * (factor if t.dim() == 2 else factor[:, 0]) for k, t in last.params.items()
    }
    last = [o for o in flipped.ops if "weight" in o.params][-1]
    sign = torch.ones(len(last.params["bias"]), dtype=torch.float64)
    sign[0] = -1.0
    last.params = {k: t * (sign[:, None] if t.dim() == 2 else sign) for k, t in last.params.items()}
    graphs = [net_to_graph(n, probes=x) for n in (net, shifted, scaled, flipped)]
    fp = fingerprints(graphs, 256)
    assert cosine(fp[0], fp[1]) > 0.9999 and cosine(fp[0], fp[2]) > 0.9999
    assert cosine(fp[0], fp[3]) < 0.99


def test_a_constant_output_is_not_noise_blown_up() -> None:
    """A net whose outputs vary with its input only below float32 resolution (last
    weights ~1e-8): normalised, its fingerprint is zero for it and for every symmetric
    copy, not rounding noise scaled up to unit length."""
    g = torch.Generator().manual_seed(11)
    net = random_net("mlp", g)
    last = [o for o in net.ops if "weight" in o.params][-1]
    w = last.params["weight"]
    last.params["weight"] = 1e-8 * torch.randn(w.shape, generator=g, dtype=w.dtype)
    last.params["bias"] = last.params["bias"] + 1.0
    x = default_probes(net.input_shape, 32)
    copies = [net, *(random_exact_action(net, g) for _ in range(3))]
    fp = fingerprints([net_to_graph(n, probes=x) for n in copies], 256)
    assert np.abs(fp).max() == 0.0
    enc = NeuralGraphEncoder({"n_probes": 16, "fingerprint": 0.3})
    z = enc.encode(copies)
    assert min(cosine(z[0], z[i]) for i in range(1, len(z))) > 0.9999


def test_isometric_layout_keeps_cosines_exactly_up_to_dim_over_probes_outputs() -> None:
    """With P probes and fingerprint dim D, nets of at most D / P outputs keep their cosines
    exactly (to float32); the Gaussian layout only approximately (its twin)."""
    g = torch.Generator().manual_seed(11)
    base = random_net("mlp", g).to(torch.float64)
    nets = [weight_noise(base, 0.5, g) for _ in range(6)]  # one interface, other functions
    x = default_probes(nets[0].input_shape, 32)
    graphs = [net_to_graph(n, probes=x) for n in nets]
    n_out = output_responses(graphs[0]).shape[1]
    assert n_out * 32 <= 256
    raw = []
    for gr in graphs:
        y = output_responses(gr)
        y = (y - y.mean(0)) / y.std(0, correction=0)
        raw.append(y.flatten().numpy())
    true = np.array([[cosine(a, b) for b in raw] for a in raw])
    iso = Fingerprinter(256, 0, "isometric")(graphs)
    gauss = Fingerprinter(256, 0, "gaussian")(graphs)
    np.testing.assert_allclose(iso @ iso.T, true, atol=1e-5)
    assert np.abs(gauss @ gauss.T - true).max() > 1e-3


def test_isometric_projection_is_orthonormal_on_its_first_rows() -> None:
    r = Fingerprinter(64, 3, "isometric").projection(200).numpy()
    np.testing.assert_allclose(r[:64] @ r[:64].T, np.eye(64), atol=1e-12)
    assert np.abs(r[64:] @ r[:64].T).max() > 0.05  # later rows are not orthogonal to them
    with pytest.raises(ValueError, match="layout"):
        Fingerprinter(64, 0, "nope")


def test_fingerprint_on_its_first_probes_is_the_one_of_a_graph_built_on_them() -> None:
    """`probes=k` reads the outputs on the first k probes: equal to the fingerprint of a
    graph built on those k probes alone (an independent reference); it keeps exact cosines
    for nets of up to dim / k outputs where all probes do not; exact actions leave it
    unchanged, and other functions move it (sensitivity)."""
    g = torch.Generator().manual_seed(12)
    base = random_net("mlp", g).to(torch.float64)
    nets = [weight_noise(base, 0.5, g) for _ in range(5)]
    x = default_probes(nets[0].input_shape, 256)
    full = [net_to_graph(n, probes=x) for n in nets]
    short = [net_to_graph(n, probes=x[:32]) for n in nets]
    make = Fingerprinter(256, 0, "isometric", probes=32)
    np.testing.assert_allclose(make(full), Fingerprinter(256, 0, "isometric")(short), atol=1e-6)
    n_out = output_responses(full[0]).shape[1]
    assert 32 * n_out <= 256 < 256 * n_out  # exact only on the first 32 probes
    raw = []
    for gr in short:
        y = output_responses(gr)
        raw.append(((y - y.mean(0)) / y.std(0, correction=0)).flatten().numpy())
    true = np.array([[cosine(a, b) for b in raw] for a in raw])
    fp = make(full)
    np.testing.assert_allclose(fp @ fp.T, true, atol=1e-5)
    moved = net_to_graph(random_exact_action(nets[0], g), probes=x)
    np.testing.assert_allclose(make([moved])[0], fp[0], atol=1e-6)
    assert cosine(fp[0], fp[1]) < 0.999
    assert np.abs(make(full) - Fingerprinter(256, 0, "isometric", probes=64)(full)).max() > 1e-3
    enc = NeuralGraphEncoder({"n_probes": 16, "fingerprint": 0.5, "fingerprint_probes": 8})
    assert enc.fingerprinter.probes == 8
    with pytest.raises(ValueError, match="fingerprint_probes 32 exceeds n_probes 16"):
        NeuralGraphEncoder({"n_probes": 16, "fingerprint_probes": 32})
