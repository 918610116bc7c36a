"""Typed encoder configs: validated on construction and on load; saves round-trip
bit-exactly; version-1 saves are refused; `encode(threads=...)` leaves torch's thread
count as it found it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zoolens.errors import LoadError
from zoolens.nn import (
    ConfigError,
    FlatTransformer,
    LayerwiseConfig,
    LayerwiseEncoder,
    NeuralGraphConfig,
    NeuralGraphEncoder,
    Probe,
    WeightStats,
    load_encoder,
)
from zoolens.testing import random_net

SMALL = NeuralGraphConfig(hidden=16, n_probes=8, fingerprint=0.3, fingerprint_dim=32)


def test_config_is_the_single_frozen_argument() -> None:
    enc = NeuralGraphEncoder(NeuralGraphConfig(hidden=64))
    assert enc.config.hidden == 64 and enc.config.dim == 256
    assert NeuralGraphEncoder({"hidden": 64}).config == enc.config  # keyword overrides
    with pytest.raises(AttributeError):
        enc.config.hidden = 8  # type: ignore[misc]
    assert SMALL.replace(seed=2).seed == 2 and SMALL.seed == 0
    with pytest.raises(ConfigError, match="LayerwiseConfig"):  # another encoder's config
        NeuralGraphEncoder(LayerwiseConfig())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"hidden": "64"}, "hidden"),
        ({"hidden": 64.0}, "hidden"),
        ({"quality_head": 1}, "quality_head"),
        ({"fingerprint": "0.5"}, "fingerprint"),
        ({"hidden": 0}, "hidden"),
        ({"fingerprint": 1.5}, "fingerprint"),
        ({"n_probes": -1}, "n_probes"),
        ({"hidden": 30, "heads": 4}, "heads"),
    ],
)
def test_bad_type_or_range_is_one_line(bad: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        NeuralGraphConfig(**bad)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_int_is_a_float_but_bool_is_no_int() -> None:
    assert NeuralGraphConfig(fingerprint=0).fingerprint == 0.0
    assert isinstance(NeuralGraphConfig(fingerprint=0).fingerprint, float)
    with pytest.raises(ConfigError):
        NeuralGraphConfig(dim=True)


@pytest.mark.parametrize(
    ("cls", "bad"),
    [
        (Probe, {"probes": "gaussian-ish"}),
        (WeightStats, {"n_first": 0, "n_last": 0}),
        (FlatTransformer, {"hidden": 10, "heads": 4}),
        (LayerwiseEncoder, {"chunk_edges": 0}),
    ],
)
def test_baseline_configs_are_checked(cls: type, bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        cls(bad)


def test_unknown_key_names_the_key(tmp_path) -> None:
    with pytest.raises(LoadError, match="output_linear"):
        NeuralGraphEncoder({"output_linear": 16})
    enc = NeuralGraphEncoder(SMALL)
    enc.save(str(tmp_path / "enc"))
    path = tmp_path / "enc" / "config.json"
    cfg = json.loads(path.read_text())
    cfg["config"]["render_head"] = 0.2
    path.write_text(json.dumps(cfg))
    with pytest.raises(LoadError) as info:
        load_encoder(str(tmp_path / "enc"))
    message = str(info.value)
    assert str(path) in message and "render_head" in message and "\n" not in message


def test_bad_value_on_load_names_the_file(tmp_path) -> None:
    NeuralGraphEncoder(SMALL).save(str(tmp_path / "enc"))
    path = tmp_path / "enc" / "config.json"
    cfg = json.loads(path.read_text())
    cfg["config"]["fingerprint"] = 2.0
    path.write_text(json.dumps(cfg))
    with pytest.raises(LoadError, match="fingerprint") as info:
        load_encoder(str(tmp_path / "enc"))
    assert str(path) in str(info.value)


def test_version_1_is_refused(tmp_path) -> None:
    NeuralGraphEncoder(SMALL).save(str(tmp_path / "enc"))
    path = tmp_path / "enc" / "config.json"
    cfg = json.loads(path.read_text())
    assert cfg["format_version"] == 2 and cfg["config"] == SMALL.to_dict()
    cfg["format_version"] = 1
    path.write_text(json.dumps(cfg))
    with pytest.raises(LoadError, match="re-train") as info:
        load_encoder(str(tmp_path / "enc"))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("enc", [NeuralGraphEncoder(SMALL), LayerwiseEncoder({"hidden": 16})])
def test_round_trip_is_bit_exact(enc: NeuralGraphEncoder | LayerwiseEncoder, tmp_path) -> None:
    enc.save(str(tmp_path / "enc"))
    back = load_encoder(str(tmp_path / "enc"))
    assert type(back) is type(enc) and back.config == enc.config and back.id == enc.id
    state, loaded = enc.state_tensors(), back.state_tensors()
    assert state.keys() == loaded.keys()
    assert all(torch.equal(state[k], loaded[k]) for k in state)
    nets = [random_net("mlp", torch.Generator().manual_seed(s)) for s in range(3)]
    assert np.array_equal(enc.encode(nets), back.encode(nets))


def test_the_shipped_encoders_load() -> None:
    default = load_encoder("default")
    assert isinstance(default, NeuralGraphEncoder)
    assert 0.0 < default.config.fingerprint < 1.0  # both parts weigh something
    assert not any(
        k.startswith(("function_head.", "class_head.", "render_head."))
        for k in default.state_tensors()
    )
    assert isinstance(load_encoder("layerwise"), LayerwiseEncoder)


def test_threads_are_restored_and_none_leaves_them() -> None:
    nets = [random_net("mlp", torch.Generator().manual_seed(s)) for s in range(2)]
    enc = NeuralGraphEncoder(SMALL)
    before = torch.get_num_threads()
    seen: list[int] = []
    embed_batch = enc.embed_batch

    def spy(models):  # type: ignore[no-untyped-def]
        seen.append(torch.get_num_threads())
        return embed_batch(models)

    enc.embed_batch = spy  # type: ignore[method-assign]
    want = 1 if before != 1 else 2
    z_set = enc.encode(nets, threads=want)
    assert seen == [want] and torch.get_num_threads() == before  # set for the call only
    z_none = enc.encode(nets)
    assert seen[-1] == before and torch.get_num_threads() == before  # never changed
    np.testing.assert_allclose(z_set, z_none, atol=1e-6)
    with pytest.raises(ConfigError, match="threads"):
        enc.encode(nets, threads=0)
    assert torch.get_num_threads() == before
