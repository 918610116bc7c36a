"""Clustering metrics: parity with scikit-learn, undefined cases, separation properties."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import davies_bouldin_score, silhouette_score

from zoolens.eval import clustering_metrics


def blobs(seed: int, spread: float, n_classes: int = 3, per_class: int = 8):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    centroids = rng.normal(size=(n_classes, 6))
    emb = centroids[labels] + spread * rng.normal(size=(len(labels), 6))
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_sklearn(seed: int) -> None:
    emb, labels = blobs(seed, spread=0.7)
    got = clustering_metrics(emb, labels)
    expected = silhouette_score(emb, labels, metric="cosine")
    assert got["silhouette"] == pytest.approx(expected, abs=1e-12)
    assert got["davies_bouldin"] == pytest.approx(davies_bouldin_score(emb, labels), abs=1e-12)


def test_hand_worked_silhouette() -> None:
    # Two tight pairs on the axes: cosine distance 0 within a pair, 1 across pairs.
    # For every point a = 0, b = 1 -> s = (b - a) / max(a, b) = 1.
    # Centroids e1, e2, scatter 0 -> Davies–Bouldin = (0 + 0) / |e1 - e2| = 0.
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    got = clustering_metrics(emb, ["a", "a", "b", "b"])
    assert got == {"silhouette": 1.0, "davies_bouldin": 0.0}


def test_string_and_object_labels_match_integer_labels() -> None:
    emb, labels = blobs(3, spread=0.5)
    as_int = clustering_metrics(emb, labels)
    as_obj = clustering_metrics(emb, np.array(["t0", 1, "t2"], dtype=object)[labels])
    assert as_obj == pytest.approx(as_int)


def test_separation_orders_scores() -> None:
    tight = clustering_metrics(*blobs(0, spread=0.05))
    loose = clustering_metrics(*blobs(0, spread=1.5))
    assert tight["silhouette"] > 0.9 > loose["silhouette"]
    assert tight["davies_bouldin"] < loose["davies_bouldin"]
    emb, labels = blobs(0, spread=0.05)
    shuffled = clustering_metrics(emb, np.random.default_rng(0).permutation(labels))
    assert shuffled["silhouette"] < tight["silhouette"] - 0.5


@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [0, 1, 2, 3]])
def test_undefined_cases_give_nan(labels: list[int]) -> None:
    got = clustering_metrics(np.random.default_rng(0).normal(size=(4, 3)), labels)
    assert np.isnan(got["silhouette"]) and np.isnan(got["davies_bouldin"])


def test_sample_size_matches_sklearn_subsample() -> None:
    emb, labels = blobs(4, spread=0.8, per_class=20)
    got = clustering_metrics(emb, labels, sample_size=30, seed=7)
    expected = silhouette_score(emb, labels, metric="cosine", sample_size=30, random_state=7)
    assert got["silhouette"] == pytest.approx(expected, abs=1e-12)
    full = clustering_metrics(emb, labels)["silhouette"]
    assert got["silhouette"] != pytest.approx(full, abs=1e-6)


def test_mismatched_labels_raise() -> None:
    with pytest.raises(ValueError, match="labels"):
        clustering_metrics(np.ones((4, 2)), [0, 1, 0])
