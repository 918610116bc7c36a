"""`zoolens.merge.synthesis`: the embedding → weights decoder and `synthesize`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from zoolens.errors import ArchitectureMismatchError, EncoderMismatchError, LoadError
from zoolens.ir import Net, load_net
from zoolens.merge import (
    Decoder,
    DecoderConfig,
    align,
    check_same_architecture,
    fit_decoder,
    synthesize,
)
from zoolens.merge.synthesis import flat_weights
from zoolens.nn import load_encoder
from zoolens.nn.base import Encoder
from zoolens.nn.config import ConfigError


def tiny_mlp(seed: int, width: int = 8) -> Net:
    """A randomly initialised 6 → width → width → 3 ReLU MLP as a float64 `Net`."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(6, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 3)
    )
    net = load_net(model, input_shape=(6,))
    assert isinstance(net, Net)
    return net.to(torch.float64)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder("default")


@pytest.fixture(scope="module")
def zoo(encoder: Encoder) -> tuple[list[Net], np.ndarray, Decoder]:
    nets = [tiny_mlp(s) for s in range(6)]
    z = encoder.encode(nets)
    return nets, z, fit_decoder(nets, z, {"steps": 200}, encoder_id=encoder.id)


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).square().mean())


def test_decoder_reconstructs_its_zoo_better_than_the_zoo_mean(
    zoo: tuple[list[Net], np.ndarray, Decoder],
) -> None:
    nets, z, dec = zoo
    targets = torch.stack([flat_weights(align(nets[0], n)) for n in nets])  # (n, P)
    decoded = torch.stack([flat_weights(n) for n in dec.decode(z)])
    mean = targets.mean(dim=0, keepdim=True).expand_as(targets)
    assert _mse(decoded, targets) < 0.1 * _mse(mean, targets)


def test_decoder_round_trip_is_bit_exact(
    zoo: tuple[list[Net], np.ndarray, Decoder], tmp_path: Path
) -> None:
    _, z, dec = zoo
    dec.save(tmp_path / "dec")
    back = Decoder.load(tmp_path / "dec")
    assert back.config == dec.config and back.encoder_id_ == dec.encoder_id_
    for got, want in zip(back.decode(z), dec.decode(z), strict=True):
        assert torch.equal(flat_weights(got), flat_weights(want))


def test_synthesize_returns_a_runnable_net_that_moves_with_alpha(
    zoo: tuple[list[Net], np.ndarray, Decoder], encoder: Encoder
) -> None:
    nets, _, dec = zoo
    a, b = nets[1], nets[2]
    ends = [synthesize(a, b, alpha, dec, encoder) for alpha in (0.0, 0.5, 1.0)]
    for net in ends:
        check_same_architecture(a, net)
        y = net(torch.randn(5, 6, dtype=torch.float64))
        assert y.shape == (5, 3) and torch.isfinite(y).all()
    w0, w5, w1 = (flat_weights(n) for n in ends)
    assert _mse(w0, w1) > 1e-3 and _mse(w0, w5) > 1e-5 and _mse(w5, w1) > 1e-5
    # at alpha = 0 it decodes A: close to A aligned to the reference, far from B
    ta, tb = flat_weights(align(nets[0], a)), flat_weights(align(nets[0], b))
    assert _mse(w0, ta) < 0.1 * _mse(w0, tb)


def test_synthesize_refuses_another_architecture(
    zoo: tuple[list[Net], np.ndarray, Decoder], encoder: Encoder
) -> None:
    nets, _, dec = zoo
    with pytest.raises(ArchitectureMismatchError, match=r"^B is not of the architecture"):
        synthesize(nets[0], tiny_mlp(0, width=9), 0.5, dec, encoder)


def test_synthesize_refuses_another_encoder(zoo: tuple[list[Net], np.ndarray, Decoder]) -> None:
    nets, _, dec = zoo
    with pytest.raises(EncoderMismatchError, match="fitted on embeddings of encoder"):
        synthesize(nets[0], nets[1], 0.5, dec, load_encoder("layerwise"))


def test_functional_loss_changes_the_fit(zoo: tuple[list[Net], np.ndarray, Decoder]) -> None:
    nets, z, _ = zoo
    plain = fit_decoder(nets[:3], z[:3], {"steps": 20})
    func = fit_decoder(nets[:3], z[:3], {"steps": 20, "functional": 1.0})
    assert _mse(flat_weights(plain.decode(z[0])[0]), flat_weights(func.decode(z[0])[0])) > 0


def test_config_and_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="layers"):
        DecoderConfig(layers=0)
    with pytest.raises(LoadError, match="not a saved zoolens decoder"):
        Decoder.load(tmp_path)


def test_fit_refuses_a_zoo_of_two_architectures(encoder: Encoder) -> None:
    nets = [tiny_mlp(0), tiny_mlp(1, width=9)]
    with pytest.raises(ArchitectureMismatchError, match="net 1"):
        fit_decoder(nets, encoder.encode(nets), {"steps": 1})
