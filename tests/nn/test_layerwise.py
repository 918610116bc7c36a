"""LayerwiseEncoder: the protocol, bare checkpoints of any architecture, its (documented,
too large) invariance group, sensitivity beside it, streaming, persistence, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from zoolens.errors import LoadError
from zoolens.ir import Net, TensorSet
from zoolens.nn import LayerwiseEncoder, load_encoder
from zoolens.symmetry import permute_spaces, random_permutations
from zoolens.testing import FAMILIES, cosine, random_net

SMALL = {"hidden": 32, "edge_hidden": 8, "dim": 64}


@pytest.fixture(scope="module", params=["untrained", "shipped"])
def encoder(request: pytest.FixtureRequest) -> LayerwiseEncoder:
    """The fixed-seed untrained encoder, and the trained one the package ships."""
    enc = LayerwiseEncoder() if request.param == "untrained" else load_encoder("layerwise")
    assert isinstance(enc, LayerwiseEncoder)
    if request.param == "shipped":
        assert enc.id != LayerwiseEncoder().id, "the package ships trained weights"
    return enc


def _mlp_tensors(g: torch.Generator, dims: tuple[int, ...] = (6, 12, 10, 3)) -> TensorSet:
    t = {}
    for i in range(len(dims) - 1):
        t[f"fc{i}.weight"] = torch.randn(dims[i + 1], dims[i], generator=g) / dims[i] ** 0.5
        t[f"fc{i}.bias"] = torch.randn(dims[i + 1], generator=g) * 0.1
    return TensorSet(t, {"source": "mlp.safetensors"})


def _with(ts: TensorSet, **changes: torch.Tensor) -> TensorSet:
    return TensorSet({**ts.tensors, **changes}, dict(ts.meta))


def test_encode_contract(encoder: LayerwiseEncoder, gen: torch.Generator) -> None:
    items: list[Net | TensorSet] = [random_net(f, gen) for f in FAMILIES]
    items.append(_mlp_tensors(gen))
    z = encoder.encode(items, batch_size=3)
    assert z.shape == (len(items), 256) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-6)
    rev = encoder.encode(items[::-1], batch_size=7)  # other order, other batching
    np.testing.assert_allclose(rev[::-1], z, atol=1e-5)


def test_embeds_bare_weights_of_any_architecture(encoder: LayerwiseEncoder) -> None:
    torch.manual_seed(0)  # module init below only; the encoder never touches this RNG
    lstm = TensorSet(dict(nn.LSTM(8, 16, num_layers=2).state_dict()))
    attn = TensorSet(dict(nn.TransformerEncoderLayer(16, 2, 32).state_dict()))
    conv = TensorSet(dict(nn.Conv2d(3, 8, 5).state_dict()))  # 5x5 kernels pooled to 9
    z = encoder.encode([lstm, attn, conv])
    assert np.isfinite(z).all() and z.shape == (3, 256)
    assert max(abs(cosine(z[i], z[j])) for i, j in ((0, 1), (0, 2), (1, 2))) < 0.999


def test_rejects_models_without_matrices(encoder: LayerwiseEncoder) -> None:
    with pytest.raises(LoadError, match="nothing to embed"):
        encoder.encode(
            [TensorSet({"scale": torch.ones(4), "empty": torch.zeros(0, 3)}, {"source": "tiny.pt"})]
        )


@pytest.mark.parametrize("family", FAMILIES)
def test_invariant_to_hidden_permutations(encoder: LayerwiseEncoder, family: str) -> None:
    g = torch.Generator().manual_seed(21)
    net = random_net(family, g)
    z = encoder.encode([net, permute_spaces(net, random_permutations(net, g))])
    assert cosine(z[0], z[1]) >= 0.9999


def test_invariant_to_uncoupled_permutations_the_documented_weakness(
    encoder: LayerwiseEncoder, gen: torch.Generator
) -> None:
    """Rows of fc0 (with its bias) move, fc1's columns do not: a different function, the
    same embedding — the larger group the docstring warns about. Columns alike."""
    ts = _mlp_tensors(gen)
    rows = torch.randperm(12, generator=gen)
    cols = torch.randperm(12, generator=gen)
    uncoupled = _with(
        ts,
        **{
            "fc0.weight": ts.tensors["fc0.weight"][rows],
            "fc0.bias": ts.tensors["fc0.bias"][rows],
            "fc1.weight": ts.tensors["fc1.weight"][:, cols],
        },
    )
    z = encoder.encode([ts, uncoupled])
    assert cosine(z[0], z[1]) >= 0.9999


def test_sensitive_to_weight_values(encoder: LayerwiseEncoder, gen: torch.Generator) -> None:
    ts = _mlp_tensors(gen)
    perms = []
    for _ in range(3):
        rows, cols = torch.randperm(10, generator=gen), torch.randperm(12, generator=gen)
        perms.append(
            _with(
                ts,
                **{
                    "fc1.weight": ts.tensors["fc1.weight"][rows][:, cols],
                    "fc1.bias": ts.tensors["fc1.bias"][rows],
                },
            )
        )
    base = encoder.encode([ts, *perms])
    noise = max(float(np.linalg.norm(base[i] - base[0])) for i in range(1, len(base)))
    w = ts.tensors["fc1.weight"].clone()
    w[2, 3] += 1.0
    bias = ts.tensors["fc0.bias"].clone()
    bias[0] += 1.0
    row_only = ts.tensors["fc0.weight"][torch.roll(torch.arange(12), 1)]  # bias left behind
    changed = [
        _with(ts, **{"fc1.weight": w}),
        _with(ts, **{"fc0.bias": bias}),
        _with(ts, **{"fc0.weight": row_only}),
        _mlp_tensors(gen),
    ]
    for i, z in enumerate(encoder.encode(changed)):
        moved = float(np.linalg.norm(z - base[0]))
        assert moved > 100 * max(noise, 1e-7), (i, moved, noise)


def test_streaming_in_row_chunks_matches_one_chunk(gen: torch.Generator) -> None:
    ts = _mlp_tensors(gen, (5, 40, 30, 4))
    whole = LayerwiseEncoder(SMALL).encode([ts])
    chunked = LayerwiseEncoder({**SMALL, "chunk_edges": 37}).encode([ts])
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


def test_fixed_seed_init_leaves_global_rng_alone(gen: torch.Generator) -> None:
    state = torch.random.get_rng_state()
    a, b = LayerwiseEncoder(SMALL), LayerwiseEncoder(SMALL)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.id == b.id and a.id != LayerwiseEncoder({**SMALL, "seed": 1}).id
    ts = _mlp_tensors(gen)
    assert (a.encode([ts]) == b.encode([ts])).all()


def test_save_load_round_trip_is_bit_exact(tmp_path, gen: torch.Generator) -> None:
    enc = LayerwiseEncoder({**SMALL, "seed": 3})
    enc.save(str(tmp_path / "enc"))
    back = load_encoder(str(tmp_path / "enc"))
    assert isinstance(back, LayerwiseEncoder)
    assert back.id == enc.id and back.config == enc.config
    items = [_mlp_tensors(gen), random_net("cnn2d_bn", gen)]
    assert (enc.encode(items) == back.encode(items)).all()


def test_forward_is_differentiable(gen: torch.Generator) -> None:
    enc = LayerwiseEncoder(SMALL)
    enc.module.train()
    out = enc.forward([_mlp_tensors(gen), random_net("cnn1d", gen)])
    assert out.shape == (2, 64) and out.requires_grad
    out.square().sum().backward()
    grads = [p.grad for p in enc.module.gnn.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert enc.module.gnn.msg.weight.grad is not None
    assert float(enc.module.gnn.msg.weight.grad.abs().sum()) > 0
