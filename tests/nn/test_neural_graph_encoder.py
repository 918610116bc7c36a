"""NeuralGraphEncoder: exact invariance under every exact action, and sensitivity beside it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from zoolens.ir import DENSE_KINDS, Net
from zoolens.nn import NeuralGraphConfig, NeuralGraphEncoder, load_encoder
from zoolens.symmetry import random_exact_action
from zoolens.testing import FAMILIES, assert_invariant, cosine, random_net

CASES = [(f, s) for f in FAMILIES for s in range(3)]


@pytest.fixture(scope="module", params=["untrained", "fingerprint", "shipped"])
def encoder(request: pytest.FixtureRequest) -> NeuralGraphEncoder:
    """The fixed-seed untrained encoder (learned part alone; and beside the function
    fingerprint), and the trained one the package ships (learned part + fingerprint)."""
    if request.param == "fingerprint":
        hybrid = NeuralGraphEncoder(NeuralGraphConfig(fingerprint=0.25))
        assert hybrid.dim == 512
        return hybrid
    enc = NeuralGraphEncoder() if request.param == "untrained" else load_encoder("neural-graph")
    assert isinstance(enc, NeuralGraphEncoder)
    if request.param == "shipped":
        assert enc.id != NeuralGraphEncoder().id, "the package ships trained weights"
        assert enc.dim == enc.module_dim + enc.config.fingerprint_dim  # two parts
    return enc


@pytest.fixture(scope="module")
def probe_encoder() -> NeuralGraphEncoder:
    return NeuralGraphEncoder({"n_probes": 8, "hidden": 32})


@pytest.mark.parametrize(("family", "seed"), CASES)
def test_invariant_to_exact_actions(encoder: NeuralGraphEncoder, family: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    assert_invariant(encoder, random_net(family, g), g, min_cos=0.9999)


@pytest.mark.parametrize("family", FAMILIES)
def test_invariant_with_probe_features(probe_encoder: NeuralGraphEncoder, family: str) -> None:
    g = torch.Generator().manual_seed(7)
    assert_invariant(probe_encoder, random_net(family, g), g, min_cos=0.9999)


def _sensitivity_cases(net: Net, g: torch.Generator) -> dict[str, Net]:
    other = random_net("mlp", g) if not net.input_shape[1:] else None
    uncoupled = net.clone()
    op = next(o for o in uncoupled.ops if o.kind in DENSE_KINDS)
    perm = torch.roll(torch.arange(op.params["weight"].shape[0]), 1)
    for role, t in op.params.items():
        op.params[role] = t.index_select(0, perm)  # rows move, readers' columns do not
    inputs_permuted = net.clone()
    op = next(o for o in inputs_permuted.ops if o.kind in DENSE_KINDS)
    w = op.params["weight"]
    op.params["weight"] = w.index_select(1, torch.roll(torch.arange(w.shape[1]), 1))
    outputs_swapped = net.clone()  # output units are fixed by every symmetry
    op = [o for o in outputs_swapped.ops if o.kind in DENSE_KINDS][-1]
    perm = torch.roll(torch.arange(op.params["weight"].shape[0]), 1)
    op.params = {role: t.index_select(0, perm) for role, t in op.params.items()}
    cases = {"uncoupled": uncoupled, "inputs-permuted": inputs_permuted}
    if perm.numel() > 1:
        cases["outputs-swapped"] = outputs_swapped
    if other is not None:
        cases["other"] = other
    return cases


@pytest.mark.parametrize(("family", "seed"), CASES)
def test_sensitive_to_non_symmetries(encoder: NeuralGraphEncoder, family: str, seed: int) -> None:
    """A change that is not a symmetry moves the embedding far more than float noise.

    Distances, not cosines: 1 - cos is quadratic in a small move, so an untrained
    encoder's real differences can hide below 1e-4 in cosine.
    """
    g = torch.Generator().manual_seed(100 + seed)
    net = random_net(family, g)
    base = encoder.encode([net, *(random_exact_action(net, g) for _ in range(3))])
    noise = max(float(np.linalg.norm(base[i] - base[0])) for i in range(1, len(base)))
    for name, changed in _sensitivity_cases(net, g).items():
        first = next(o for o in changed.ops if o.kind in DENSE_KINDS)
        if name == "inputs-permuted" and first.params["weight"].shape[1] == 1:
            continue  # a single input channel: permuting it is the identity
        moved = float(np.linalg.norm(encoder.encode([changed])[0] - base[0]))
        assert moved > 100 * max(noise, 1e-7), (name, moved, noise)


def test_encode_contract(encoder: NeuralGraphEncoder, gen: torch.Generator) -> None:
    nets = [random_net(f, gen) for f in FAMILIES]
    z = encoder.encode(nets, batch_size=4)
    assert z.shape == (len(nets), encoder.dim) and z.dtype.name == "float32"
    torch.testing.assert_close(torch.from_numpy(z).norm(dim=1), torch.ones(len(nets)))
    single = encoder.encode([nets[3]])  # batching does not change a row
    assert cosine(single[0], z[3]) > 0.99999


def test_save_load_round_trip_is_bit_exact(tmp_path, gen: torch.Generator) -> None:
    enc = NeuralGraphEncoder({"hidden": 16, "seed": 3})
    enc.save(str(tmp_path / "enc"))
    back = load_encoder(str(tmp_path / "enc"))
    assert back.id == enc.id and back.config == enc.config
    for k, v in enc.state_tensors().items():
        assert torch.equal(v, back.state_tensors()[k])
    nets = [random_net("mlp", gen) for _ in range(3)]
    assert (enc.encode(nets) == back.encode(nets)).all()


def test_quality_head_is_saved_or_absent(tmp_path, gen: torch.Generator) -> None:
    nets = [random_net("mlp", gen) for _ in range(3)]
    enc = NeuralGraphEncoder({"hidden": 16, "seed": 3})
    assert enc.quality is not None
    with torch.no_grad():  # move the head off its initialisation
        for p in enc.quality.parameters():
            p.add_(0.1)
    enc.save(str(tmp_path / "new"))
    back = load_encoder(str(tmp_path / "new"))
    assert isinstance(back, NeuralGraphEncoder)
    q = enc.predict_quality(nets)
    assert q.shape == (3,) and ((q > 0) & (q < 1)).all()
    assert np.array_equal(q, back.predict_quality(nets))

    headless = NeuralGraphEncoder({"hidden": 16, "seed": 3, "quality_head": False})
    headless.save(str(tmp_path / "headless"))
    back_headless = load_encoder(str(tmp_path / "headless"))
    assert isinstance(back_headless, NeuralGraphEncoder) and back_headless.quality is None
    assert (back_headless.encode(nets) == enc.encode(nets)).all()  # same module, same seed
    with pytest.raises(ValueError, match="without a quality head"):
        back_headless.predict_quality(nets)


def test_readout_hidden_sets_the_output_readout_width(gen: torch.Generator) -> None:
    nets = [random_net("mlp", gen) for _ in range(2)]
    for width, expected in ((0, 32), (48, 48)):
        enc = NeuralGraphEncoder({"hidden": 16, "n_probes": 4, "readout_hidden": width})
        first = enc.module.out_read[0]
        assert (first.in_features, first.out_features) == (16 + 4, expected)
        assert np.isfinite(enc.encode(nets)).all()


def test_domain_features_reach_the_embedding(gen: torch.Generator) -> None:
    """The graph's domain row (input size and rank, output count) moves the embedding;
    graphs without one are refused."""
    nets = [random_net("mlp", gen) for _ in range(2)]
    enc = NeuralGraphEncoder({"hidden": 16, "n_probes": 4})
    graphs = enc.graphs(nets)
    same = [dataclasses.replace(gr, domain=gr.domain.clone()) for gr in graphs]
    other = [dataclasses.replace(gr, domain=gr.domain + 1.0) for gr in graphs]
    with torch.no_grad():
        z, z_same, z_other = enc.forward(graphs), enc.forward(same), enc.forward(other)
    assert torch.equal(z, z_same)
    assert float((z - z_other).norm() / z.norm()) > 1e-3
    bare = [dataclasses.replace(gr, domain=None) for gr in graphs]
    with pytest.raises(ValueError, match="domain"):
        enc.forward(bare)


def test_probe_inputs_are_saved_with_the_encoder(tmp_path) -> None:
    enc = NeuralGraphEncoder({"hidden": 16, "dim": 32, "layers": 1, "readout_layers": 1})
    x = np.random.default_rng(0).standard_normal((enc.config.n_probes, 5))
    probed = enc.with_probe_inputs(x)
    probed.save(str(tmp_path / "enc"))
    back = load_encoder(str(tmp_path / "enc"))
    assert back.id == probed.id != enc.id
    np.testing.assert_allclose(back.probe_inputs[(5,)].numpy(), x)
