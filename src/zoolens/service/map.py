"""2-D coordinates of an index's embeddings for the zoo map: UMAP when installed, else t-SNE,
PCA for small indexes; each layout is cached per index state (it changes with every write),
in memory and on disk, and a slow one is laid out in the background (`MapCache.start`)."""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from zoolens.errors import ZoolensError

log = logging.getLogger(__name__)

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


def is_slow(n: int, method: str = "auto") -> bool:
    """Whether laying out `n` models by `method` takes long enough (UMAP, t-SNE) to be done
    in the background rather than inside a request."""
    return n >= 3 and choose_method(n, method) != "pca"


Make = Callable[[], dict[str, Any]]
_FILE = re.compile(r"^map\.e(\d+)\.v(\d+)\.([a-z]+)\.json$")


class MapCache:
    """Layouts keyed by (index state, method): the newest state's in memory and, given a
    directory, on disk (``map.e<epoch>.v<version>.<method>.json``, older states pruned), so a
    restarted server does not lay the same map out again.

    Args:
        directory: where layouts are kept on disk; None keeps them in memory only.
    """

    def __init__(self, directory: str | None = None) -> None:
        self.dir = directory
        self._lock = threading.Lock()
        self._state: Any = None
        self._maps: dict[str, dict[str, Any]] = {}
        self._running: dict[tuple[Any, str], threading.Thread] = {}
        self._failed: dict[tuple[Any, str], Exception] = {}

    def get(self, state: Any, method: str, make: Make) -> dict[str, Any]:
        """The cached map of `state` / `method`, or ``make()``'s, stored."""
        found = self.peek(state, method)
        if found is not None:
            return found
        made = make()
        self._store(state, method, made)
        return made

    def peek(self, state: Any, method: str) -> dict[str, Any] | None:
        """The map of `state` / `method` if made (in memory or on disk), else None."""
        with self._lock:
            if state != self._state:
                self._state, self._maps = state, {}
            if method in self._maps:
                return self._maps[method]
        found = self._read(state, method)
        if found is not None:
            with self._lock:
                if state == self._state:
                    self._maps[method] = found
        return found

    def start(self, state: Any, method: str, make: Make) -> None:
        """Lay the map out in a background thread unless one already is; raises the error of
        the last attempt that failed (once: the next call tries again)."""
        key = (state, method)
        with self._lock:
            if key in self._failed:
                raise self._failed.pop(key)
            if (key in self._running and self._running[key].is_alive()) or (
                state == self._state and method in self._maps
            ):
                return
            self._running = {k: t for k, t in self._running.items() if t.is_alive()}

            def run() -> None:
                try:
                    self._store(state, method, make())
                except Exception as e:  # reported to the next request for this map
                    log.warning("zoo map (%s) failed: %s", method, e)
                    with self._lock:
                        self._failed[key] = e

            thread = threading.Thread(target=run, name="zoolens-map", daemon=True)
            self._running[key] = thread
        thread.start()

    def running(self, state: Any, method: str) -> threading.Thread | None:
        """The thread laying out the map of `state` / `method`, if any."""
        with self._lock:
            return self._running.get((state, method))

    def _store(self, state: Any, method: str, made: dict[str, Any]) -> None:
        with self._lock:
            if state != self._state:
                self._state, self._maps = state, {}
            self._maps[method] = made
        self._write(state, method, made)

    def _path(self, state: Any, method: str) -> str | None:
        if self.dir is None or not isinstance(state, tuple) or len(state) != 2:
            return None
        return os.path.join(self.dir, f"map.e{int(state[0])}.v{int(state[1])}.{method}.json")

    def _read(self, state: Any, method: str) -> dict[str, Any] | None:
        path = self._path(state, method)
        if path is None or not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                found: dict[str, Any] = json.load(f)
        except (OSError, ValueError) as e:
            log.warning("zoo map cache %s unreadable (%s); laying it out again", path, e)
            return None
        return found

    def _write(self, state: Any, method: str, made: dict[str, Any]) -> None:
        path = self._path(state, method)
        if path is None or self.dir is None:
            return
        try:
            os.makedirs(self.dir, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(made, f, separators=(",", ":"))
            os.replace(tmp, path)
        except OSError as e:
            log.warning("could not save the zoo map cache %s: %s", path, e)
            return
        for old in glob.glob(os.path.join(self.dir, "map.e*.json")):
            m = _FILE.match(os.path.basename(old))
            if m and (int(m[1]), int(m[2])) != tuple(int(x) for x in state):
                with contextlib.suppress(OSError):
                    os.remove(old)
