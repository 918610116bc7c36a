"""Heads on frozen embeddings: fit, choose regularisation, save / load, refuse other encoders."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from zoolens.errors import EncoderMismatchError, HeadError, LoadError
from zoolens.nn import Head, WeightStats
from zoolens.nn.heads import fit_head_on_embeddings, infer_kind, score
from zoolens.testing import random_net

DIM = 12


def blobs(rng: np.random.Generator, centres: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` unit-noise points around three class centres, labelled "a", "b", "c"."""
    y = rng.integers(0, len(centres), n)
    z = centres[y] + rng.standard_normal((n, DIM))
    return z.astype(np.float32), np.array(["a", "b", "c"])[y]


@pytest.fixture(scope="module")
def split() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    centres = 2.0 * rng.standard_normal((3, DIM))
    return (*blobs(rng, centres, 150), *blobs(rng, centres, 90))


@pytest.fixture(scope="module")
def head(split) -> Head:
    return fit_head_on_embeddings(*split, label="task", encoder_id="enc-1")


def test_separable_classes_are_learned(head, split):
    _, _, z_val, y_val = split
    assert head.config.kind == "classify" and head.config.classes == ("a", "b", "c")
    assert head.config.val_score >= 0.95 and score(head, z_val, y_val) == head.config.val_score
    assert head.config.baseline_score < 0.5  # majority class of three balanced ones
    p = head.predict_proba(z_val)
    assert p.shape == (90, 3) and np.allclose(p.sum(1), 1.0)
    assert list(head.predict(z_val)) == [head.config.classes[j] for j in p.argmax(1)]


def test_shuffled_labels_fall_to_chance(split):
    """Sensitivity twin: the same embeddings with labels shuffled carry no signal."""
    z_train, y_train, z_val, y_val = split
    rng = np.random.default_rng(1)
    shuffled = fit_head_on_embeddings(
        z_train, rng.permutation(y_train), z_val, rng.permutation(y_val), label="t", encoder_id="e"
    )
    assert shuffled.config.val_score < 0.55


def test_regression_of_a_linear_target():
    rng = np.random.default_rng(2)
    w = rng.standard_normal(DIM)
    z_train, z_val = rng.standard_normal((120, DIM)), rng.standard_normal((60, DIM))
    y_train = z_train @ w + 0.1 * rng.standard_normal(120)
    y_val = z_val @ w
    head = fit_head_on_embeddings(z_train, y_train, z_val, y_val, label="acc", encoder_id="e")
    assert head.config.kind == "regress" and head.config.metric == "r2"
    assert head.config.val_score > 0.95 and head.config.baseline_score <= 0.0
    np.testing.assert_allclose(head.predict(z_val), y_val, atol=0.5)
    noise = fit_head_on_embeddings(  # sensitivity twin: a target unrelated to z
        z_train, rng.permutation(y_train), z_val, y_val, label="acc", encoder_id="e"
    )
    assert noise.config.val_score < 0.2


def test_validation_chooses_the_weight_decay(split):
    z_train, y_train, z_val, y_val = split
    one = fit_head_on_embeddings(
        z_train, y_train, z_val, y_val, label="t", encoder_id="e", weight_decays=(10.0,)
    )
    many = fit_head_on_embeddings(
        z_train, y_train, z_val, y_val, label="t", encoder_id="e", weight_decays=(10.0, 1e-3)
    )
    assert one.config.weight_decay == 10.0
    assert many.config.val_score >= one.config.val_score


@pytest.mark.parametrize("hidden", [0, 16])
def test_save_load_is_bit_exact(split, tmp_path, hidden):
    z_train, y_train, z_val, y_val = split
    head = fit_head_on_embeddings(
        z_train, y_train, z_val, y_val, label="t", encoder_id="e", hidden=hidden
    )
    head.save(tmp_path / "h")
    assert sorted(os.listdir(tmp_path / "h")) == ["config.json", "model.safetensors"]
    again = Head.load(tmp_path / "h")
    assert again.config == head.config
    for (k, a), (k2, b) in zip(head.tensors().items(), again.tensors().items(), strict=True):
        assert k == k2 and a.dtype == b.dtype and torch.equal(a, b)
    np.testing.assert_array_equal(again.predict_proba(z_val), head.predict_proba(z_val))


def test_int_and_bool_labels_round_trip_as_their_type(split, tmp_path):
    z_train, y_train, z_val, y_val = split
    as_int = {"a": 3, "b": 7, "c": 9}
    head = fit_head_on_embeddings(
        z_train,
        [as_int[v] for v in y_train],
        z_val,
        [as_int[v] for v in y_val],
        label="digit",
        encoder_id="e",
    )
    head.save(tmp_path / "h")
    again = Head.load(tmp_path / "h")
    assert again.config.classes == (3, 7, 9) and again.predict(z_val).dtype.kind == "i"
    flag = fit_head_on_embeddings(
        z_train, y_train == "a", z_val, y_val == "a", label="is_a", encoder_id="e"
    )
    assert flag.config.classes == (False, True) and flag.predict(z_val).dtype == bool


def test_kind_is_inferred_from_values_and_overridable(split):
    assert infer_kind(["x", "y"]) == infer_kind([1, 2]) == infer_kind([True, False]) == "classify"
    assert infer_kind(np.array([0.5, 0.7])) == infer_kind([0.5, 0.7]) == "regress"
    z_train, _, z_val, _ = split
    y = np.arange(len(z_train)) % 3
    head = fit_head_on_embeddings(
        z_train, y, z_val, np.arange(len(z_val)) % 3, label="n", encoder_id="e", kind="regress"
    )
    assert head.config.kind == "regress" and head.predict(z_val).dtype.kind == "f"


def test_another_encoders_embeddings_are_refused(head, split):
    z_val = split[2]
    head.predict(z_val, encoder_id="enc-1")
    with pytest.raises(EncoderMismatchError, match="enc-1") as err:
        head.predict(z_val, encoder_id="enc-2")
    assert "\n" not in str(err.value)
    with pytest.raises(HeadError, match=f"\\({DIM},\\)"):
        head.predict(z_val[:, :5])


def test_encoder_predict_delegates_to_the_head(tmp_path):
    g = torch.Generator().manual_seed(0)
    nets = [random_net("mlp", g) for _ in range(12)]
    encoder = WeightStats()
    z = encoder.encode(nets)
    labels = ["x", "y"] * 6
    head = fit_head_on_embeddings(z, labels, z, labels, label="l", encoder_id=encoder.id)
    np.testing.assert_array_equal(encoder.predict(nets, head), head.predict(z))
    other = WeightStats({"n_first": 3})
    with pytest.raises(EncoderMismatchError):
        other.predict(nets, head)


def test_bad_inputs_are_one_line_errors(split, tmp_path):
    z_train, y_train, z_val, y_val = split
    with pytest.raises(HeadError, match="1 class"):
        fit_head_on_embeddings(
            z_train, ["a"] * len(z_train), z_val, y_val, label="t", encoder_id="e"
        )
    with pytest.raises(LoadError, match="no such head"):
        Head.load(tmp_path / "missing")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "config.json").write_text("{not json")
    with pytest.raises(LoadError, match="not a saved zoolens head"):
        Head.load(tmp_path / "corrupt")
    head = fit_head_on_embeddings(z_train, y_train, z_val, y_val, label="t", encoder_id="e")
    head.save(tmp_path / "edited")
    cfg = json.loads((tmp_path / "edited" / "config.json").read_text())
    cfg["config"]["in_dim"] = DIM + 1
    (tmp_path / "edited" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LoadError, match="do not fit its config"):
        Head.load(tmp_path / "edited")
