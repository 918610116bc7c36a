"""Baselines: the protocol, bit-exact persistence, sensitivity — and, for the flattened-
weight baselines, the lack of invariance that they exist to measure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats as sps
from torch import nn

from zoolens.errors import LoadError
from zoolens.ir import Net, TensorSet, load_net
from zoolens.nn import (
    Encoder,
    FlatPCA,
    FlatTransformer,
    Metadata,
    NotFittedError,
    Probe,
    RawWeights,
    WeightStats,
    load_encoder,
)
from zoolens.nn.baselines import metadata_text, tensor_stats
from zoolens.symmetry import permute_spaces, random_exact_action, random_permutations
from zoolens.testing import FAMILIES, cosine, random_net

NAMES = ("raw-weights", "flat-pca", "flat-transformer", "weight-stats", "probe", "metadata")
SMALL: dict[str, dict[str, Any]] = {
    "raw-weights": {"length": 512},
    "flat-pca": {"dim": 16, "length": 512},
    "flat-transformer": {"hidden": 32, "chunk": 16, "max_chunks": 64, "dim": 32},
    "weight-stats": {},
    "probe": {"dim": 64, "n_probes": 8},
    "metadata": {"dim": 8},
}


def _mlp(g: torch.Generator, dims: tuple[int, ...] = (8, 48, 48, 4)) -> Net:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers += [nn.Linear(dims[i], dims[i + 1]), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    net = load_net(model, input_shape=(dims[0],))
    assert isinstance(net, Net)
    return net


def _fitted(name: str, corpus: list[Net]) -> Encoder:
    enc = load_encoder(name)
    enc = type(enc)(SMALL[name])
    fit = getattr(enc, "fit", None)
    return fit(corpus) if fit is not None else enc


@pytest.fixture(scope="module")
def corpus() -> list[Net]:
    g = torch.Generator().manual_seed(0)
    return [random_net(f, g) for f in FAMILIES for _ in range(2)]


@pytest.mark.parametrize("name", NAMES)
def test_encode_contract(name: str, corpus: list[Net]) -> None:
    enc = _fitted(name, corpus)
    z = enc.encode(corpus, batch_size=5)
    assert z.shape == (len(corpus), enc.dim) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(enc.encode(corpus[::-1], batch_size=3)[::-1], z, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip_is_bit_exact(name: str, corpus: list[Net], tmp_path) -> None:
    enc = _fitted(name, corpus)
    enc.save(str(tmp_path / name))
    back = load_encoder(str(tmp_path / name))
    assert type(back) is type(enc) and back.config == enc.config and back.id == enc.id
    for k, v in enc.state_tensors().items():
        assert torch.equal(v, back.state_tensors()[k]), k
    assert (back.encode(corpus) == enc.encode(corpus)).all()


@pytest.mark.parametrize("name", NAMES)
def test_sensitive_to_different_nets(name: str, corpus: list[Net]) -> None:
    enc = _fitted(name, corpus)
    z = enc.encode(corpus)
    sims = z @ z.T
    off = sims[~np.eye(len(corpus), dtype=bool)]
    if name == "metadata":  # blind to weights: same family and shapes may coincide
        families = np.repeat(np.arange(len(FAMILIES)), 2)
        off = sims[families[:, None] != families[None, :]]
    assert off.max() < 0.999


@pytest.mark.parametrize("name", NAMES)
def test_bare_weights(name: str, corpus: list[Net]) -> None:
    enc = _fitted(name, corpus)
    ts = TensorSet(corpus[0].state_dict(), {"source": "bare.safetensors"})
    if name == "probe":
        with pytest.raises(LoadError, match=r"bare\.safetensors.*wiring"):
            enc.encode([ts])
        return
    z = enc.encode([ts, corpus[0]])
    assert np.isfinite(z).all()
    if name != "metadata":  # weights in file order: the same vector as the Net's
        assert cosine(z[0], z[1]) > 0.99999


@pytest.mark.parametrize("name", ["raw-weights", "flat-pca"])
def test_flat_baselines_are_not_permutation_invariant(name: str) -> None:
    g = torch.Generator().manual_seed(5)
    nets = [_mlp(g) for _ in range(12)]
    extra = {"dim": 8} if name == "flat-pca" else {}  # raw weights: dim = length
    enc = type(load_encoder(name))({"length": 4096, **extra})
    if isinstance(enc, FlatPCA):
        enc.fit(nets)
    net = nets[0]
    moved = permute_spaces(net, random_permutations(net, g))  # same function
    z = enc.encode([net, moved])
    assert cosine(z[0], z[1]) < 0.99


def test_raw_weights_cosine_is_raw_weight_cosine(corpus: list[Net]) -> None:
    a, b = corpus[0], corpus[1]
    flat = [torch.cat([t.reshape(-1) for t in n.state_dict().values()]) for n in (a, b)]
    flat = [torch.nn.functional.pad(f, (0, 512 - f.numel())) for f in flat]  # zero-padded
    z = RawWeights({"length": 512}).encode([a, b])
    assert cosine(z[0], z[1]) == pytest.approx(cosine(flat[0].numpy(), flat[1].numpy()), abs=1e-6)


def test_flat_pca_needs_fit(corpus: list[Net]) -> None:
    with pytest.raises(NotFittedError, match="fit"):
        FlatPCA().encode(corpus[:2])
    with pytest.raises(NotFittedError, match="2 models"):
        FlatPCA().fit(corpus[:1])


@pytest.mark.parametrize("family", FAMILIES)
def test_probe_is_invariant_and_sensitive(family: str) -> None:
    g = torch.Generator().manual_seed(9)
    net = random_net(family, g)
    enc = Probe({"dim": 64, "n_probes": 8})
    z = enc.encode([net, random_exact_action(net, g), random_net(family, g)])
    assert cosine(z[0], z[1]) >= 0.9999 and cosine(z[0], z[2]) < 0.999


def test_tensor_stats_match_numpy_and_scipy() -> None:
    w = torch.randn(7, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = w.numpy().ravel()
    ref = [
        x.mean(),
        x.std(),
        *np.quantile(x, [0, 0.25, 0.5, 0.75, 1]),
        np.abs(x).mean(),
        np.sqrt((x**2).mean()),
        sps.skew(x),
        sps.kurtosis(x),
        np.log1p(x.size),
    ]
    np.testing.assert_allclose(tensor_stats(w), ref, rtol=1e-10, atol=1e-12)


def test_weight_stats_slots_keep_input_first_and_output_last(corpus: list[Net]) -> None:
    net = _mlp(torch.Generator().manual_seed(1), (8, 16, 4))  # 4 tensors < 4 + 4 slots
    enc = WeightStats()
    f = enc.features(net).reshape(-1)[:-2].reshape(8, -1)
    tensors = list(net.state_dict().values())
    np.testing.assert_allclose(f[0], tensor_stats(tensors[0]))
    np.testing.assert_allclose(f[-1], tensor_stats(tensors[-1]))
    assert (f[2:6] == 0).all()
    z = WeightStats().fit(corpus).embed_batch(corpus)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-6)  # standardised on its corpus


def test_metadata_reads_names_and_shapes_not_weights(corpus: list[Net]) -> None:
    net = corpus[0]
    text = metadata_text(net)
    assert "op:linear" in text and f"input:{net.input_shape[0]}" in text
    ts = TensorSet({"encoder.layer.3.attn.weight": torch.zeros(4, 4)}, {"task": "cifar10"})
    assert {"name:encoder.layer.#.attn.weight", "word:attn", "shape:4x4", "task=cifar10"} <= set(
        metadata_text(ts).split()
    )
    other = net.clone()
    for op in other.ops:
        op.params = {k: v + 1.0 for k, v in op.params.items()}
    for enc in (Metadata({"dim": 8}), Metadata({"dim": 8}).fit(corpus)):
        z = enc.encode([net, other])
        assert cosine(z[0], z[1]) > 0.99999


def test_flat_transformer_trains_and_keeps_global_rng(corpus: list[Net]) -> None:
    state = torch.random.get_rng_state()
    enc = FlatTransformer(SMALL["flat-transformer"])
    assert torch.equal(torch.random.get_rng_state(), state)
    enc.module.train()
    out = enc.forward(corpus[:3])
    assert out.shape == (3, 32) and out.requires_grad
    out.square().sum().backward()
    assert enc.module.embed.weight.grad is not None
    assert float(enc.module.embed.weight.grad.abs().sum()) > 0
