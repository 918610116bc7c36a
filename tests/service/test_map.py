"""Zoo-map layouts: the method `auto` picks, coordinates in the unit square, clusters kept apart."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from zoolens.errors import ZoolensError
from zoolens.service.map import SMALL, MapCache, choose_method, layout


def _two_clusters(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    centres = rng.standard_normal((2, 16)) * 5
    return centres[labels] + 0.1 * rng.standard_normal((n, 16)), labels


def test_auto_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_method(SMALL - 1) == "pca"
    assert choose_method(10, "tsne") == "tsne"
    monkeypatch.setitem(sys.modules, "umap", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert choose_method(SMALL) == "tsne" and choose_method(10**6) == "pca"
    with pytest.raises(ZoolensError, match="map method"):
        choose_method(10, "magic")


def _neighbour_agreement(xy: np.ndarray, labels: np.ndarray) -> float:
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return float(np.mean(labels[d.argmin(axis=1)] == labels))


@pytest.mark.parametrize("method", ["pca", "tsne", pytest.param("umap", marks=pytest.mark.slow)])
def test_layout_keeps_clusters_apart(method: str) -> None:
    if method == "umap":
        pytest.importorskip("umap", reason="umap-learn is not installed")
    z, labels = _two_clusters(40)
    used, xy = layout(z, method)
    assert used == method and xy.shape == (40, 2)
    assert xy.min() >= 0.0 and xy.max() <= 1.0 + 1e-12
    assert _neighbour_agreement(xy, labels) == 1.0
    # sensitivity twin: the same points with shuffled labels do not agree
    assert _neighbour_agreement(xy, np.random.default_rng(1).permutation(labels)) < 0.8


def test_layout_of_tiny_and_empty_indexes() -> None:
    assert layout(np.zeros((0, 4)))[1].shape == (0, 2)
    _, xy = layout(np.ones((2, 4)))
    assert xy.tolist() == [[0.0, 0.0], [1.0, 0.0]]


def test_cache_keeps_one_state() -> None:
    cache, calls = MapCache(), []

    def make() -> dict:
        calls.append(1)
        return {"n": len(calls)}

    assert cache.get((0, 1), "pca", make) == {"n": 1}
    assert cache.get((0, 1), "pca", make) == {"n": 1}
    assert cache.get((0, 2), "pca", make) == {"n": 2}
    assert len(calls) == 2
