"""2-D coordinates of an index's embeddings for the zoo map: UMAP when installed, else t-SNE,
PCA for small indexes; each layout is cached per index state (it changes with every write)."""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

import numpy as np

from zoolens.errors import ZoolensError

METHODS = ("auto", "umap", "tsne", "pca")
SMALL = 30  # below this many models a neighbour layout means little: PCA
TSNE_MAX = 20_000  # t-SNE above this is too slow for a request


def choose_method(n: int, method: str = "auto") -> str:
    """The layout `auto` means for `n` models (others are returned as given)."""
    if method not in METHODS:
        raise ZoolensError(f"map method {method!r}; use one of {', '.join(METHODS)}")
    if method != "auto":
        return method
    if n < SMALL:
        return "pca"
    if importlib.util.find_spec("umap") is not None:
        return "umap"
    return "tsne" if n <= TSNE_MAX else "pca"


def layout(z: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[str, np.ndarray]:
    """Project embeddings to the unit square.

    Args:
        z: ``(n, d)`` embeddings.
        method: ``auto``, ``umap``, ``tsne`` or ``pca``.
        seed: random state of UMAP / t-SNE.

    Returns:
        ``(method used, (n, 2) coordinates in [0, 1])``.
    """
    n = len(z)
    used = choose_method(n, method)
    if n < 3:
        xy = np.stack([np.arange(n, dtype=np.float64), np.zeros(n)], axis=1)
    elif used == "umap":
        from zoolens.optional import optional_import

        umap = optional_import("umap", "the UMAP zoo map", "bench", "umap-learn")
        reducer = umap.UMAP(n_neighbors=min(15, n - 1), random_state=seed, n_jobs=1)
        xy = reducer.fit_transform(z)
    elif used == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (n - 1) / 3))
        xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z)
    else:
        from sklearn.decomposition import PCA

        xy = PCA(2, random_state=seed).fit_transform(z)
    return used, _unit_square(np.asarray(xy, dtype=np.float64))


def _unit_square(xy: np.ndarray) -> np.ndarray:
    if len(xy) == 0:
        return xy.reshape(0, 2)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    out: np.ndarray = (xy - lo) / span  # (n, 2)
    return out


class MapCache:
    """Layouts keyed by (index state, method); only the newest state is kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: Any = None
        self._maps: dict[str, dict[str, Any]] = {}

    def get(self, state: Any, method: str, make: Any) -> dict[str, Any]:
        """The cached map of `state` / `method`, or ``make()``'s, stored."""
        with self._lock:
            if state != self._state:
                self._state, self._maps = state, {}
            if method not in self._maps:
                self._maps[method] = make()
            return self._maps[method]
