"""Robustness metrics and INR classification accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics.pairwise import paired_cosine_distances, paired_euclidean_distances

from zoolens.eval import classification_accuracy, paired_cosine, paired_l2, robustness_metrics


def test_hand_worked_pairs() -> None:
    # Pair 0 identical: cos 1, distance 0. Pair 1 orthogonal unit vectors: cos 0, distance √2.
    got = robustness_metrics([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]])
    assert got == pytest.approx(
        {"cos_mean": 0.5, "cos_min": 0.0, "l2_mean": np.sqrt(2) / 2, "l2_max": np.sqrt(2)}
    )


def test_opposite_embeddings_reach_the_extremes() -> None:
    got = robustness_metrics([[0.0, 1.0]], [[0.0, -1.0]])
    assert got == pytest.approx({"cos_mean": -1.0, "cos_min": -1.0, "l2_mean": 2.0, "l2_max": 2.0})


def test_identical_embeddings_are_perfectly_robust() -> None:
    emb = np.random.default_rng(0).normal(size=(10, 5))
    got = robustness_metrics(emb, emb.copy())
    assert got["cos_min"] == pytest.approx(1.0, abs=1e-12) and got["l2_max"] == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_sklearn_paired_distances(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(20, 7)), rng.normal(size=(20, 7))
    np.testing.assert_allclose(paired_cosine(a, b), 1 - paired_cosine_distances(a, b), atol=1e-12)
    np.testing.assert_allclose(paired_l2(a, b), paired_euclidean_distances(a, b), atol=1e-12)
    got = robustness_metrics(a, b)
    assert got["cos_min"] <= got["cos_mean"] and got["l2_mean"] <= got["l2_max"]


def test_pairing_is_by_row() -> None:
    emb = np.eye(4)
    assert robustness_metrics(emb, emb[::-1])["cos_mean"] == 0.0


@pytest.mark.parametrize("bad", [np.ones((3, 4)), np.ones((4, 3)), np.zeros((4, 4))])
def test_bad_pairs_raise(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        robustness_metrics(np.eye(4), bad)


def digits(seed: int, spread: float, n_classes: int = 4, per_class: int = 15):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    emb = 3.0 * rng.normal(size=(n_classes, 8))[labels] + spread * rng.normal(size=(len(labels), 8))
    train = np.zeros(len(labels), dtype=bool)
    train[rng.permutation(len(labels))[: len(labels) * 2 // 3]] = True
    return emb, labels, train


@pytest.mark.parametrize("model", ["logistic", "knn"])
def test_separable_classes_are_classified(model: str) -> None:
    emb, labels, train = digits(0, spread=0.3)
    assert classification_accuracy(emb, labels, train, seed=0, model=model) == 1.0


@pytest.mark.parametrize("model", ["logistic", "knn"])
def test_shuffled_labels_fall_to_chance(model: str) -> None:
    emb, labels, train = digits(1, spread=0.3)
    shuffled = np.random.default_rng(1).permutation(labels)
    assert classification_accuracy(emb, shuffled, train, model=model) < 0.5


def test_one_nn_matches_brute_force() -> None:
    emb, labels, train = digits(2, spread=4.0)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    nearest = np.argmax(unit[~train] @ unit[train].T, axis=1)
    expected = np.mean(labels[train][nearest] == labels[~train])
    got = classification_accuracy(emb, labels, train, model="knn", n_neighbors=1)
    assert got == pytest.approx(expected) and 0.0 < got < 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"train_mask": np.ones(60, dtype=bool)},
        {"train_mask": np.ones(60)},
        {"model": "svm"},
        {"labels": np.r_[np.zeros(40), np.arange(20)].astype(int)},
    ],
)
def test_bad_arguments_raise(kwargs) -> None:
    emb, labels, train = digits(0, spread=0.3)
    args = {"embeddings": emb, "labels": labels, "train_mask": train} | kwargs
    if "labels" in kwargs:  # every training row in one class
        args["train_mask"] = np.r_[np.ones(40, dtype=bool), np.zeros(20, dtype=bool)]
    with pytest.raises(ValueError):
        classification_accuracy(**args)
