"""Keeping the in-memory FAISS index equal to the catalog, and its cache file fresh.

The vector index reflects one catalog state ``(epoch, version)``. `VectorSync.sync` brings it to
the state of the current transaction: new rows (above the last row seen; rows are never reused)
are added, rows removed since are dropped; another epoch (a `reembed`) or a missing / unreadable
cache means a rebuild from the catalog.

Concurrency: searches hold `VectorSync.rw` shared (FAISS searches may run side by side);
whatever changes the vectors (catching up, rebuilding, resetting) holds it exclusively.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

import numpy as np

from zoolens.index.catalog import Catalog
from zoolens.index.rwlock import ReadWriteLock
from zoolens.index.vectors import (
    IndexConfig,
    VectorIndex,
    cache_file,
    find_cache,
    prune_caches,
)

log = logging.getLogger(__name__)


class VectorSync:
    """Owns the `VectorIndex` of a catalog; base of `ModelIndex`.

    Args:
        catalog: the catalog the vectors come from.
        config: vector-index hyper-parameters.
    """

    def __init__(self, catalog: Catalog, config: IndexConfig) -> None:
        self.catalog = catalog
        self.config = config
        self._vectors: VectorIndex | None = None
        self._state = (-1, -1)  # (epoch, version) the vectors reflect
        self._high = 0  # highest catalog row the vectors have seen
        self._saved = (-1, -1)  # state of the newest cache file this process wrote or read
        self.rw = ReadWriteLock()  # shared: searching the vectors; exclusive: changing them
        self._save_lock = threading.Lock()

    @property
    def dim(self) -> int:
        return int(self.catalog.meta().get("dim") or 0)

    def vectors_loaded(self) -> bool:
        return self._vectors is not None

    def reset_vectors(self) -> None:
        """Forget the in-memory vectors; the next use reloads or rebuilds them."""
        with self.rw.exclusive():
            self._vectors, self._state, self._saved = None, (-1, -1), (-1, -1)

    def configure_search(self, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Change HNSW ``efSearch`` / IVF ``nprobe`` (recall against latency)."""
        with self.rw.exclusive():
            self.config = replace(
                self.config,
                ef_search=ef_search or self.config.ef_search,
                ivf_nprobe=nprobe or self.config.ivf_nprobe,
            )
            if self._vectors is not None:
                self._vectors.config = self.config
                self._vectors._apply_search_params()

    def in_step(self) -> bool:
        """Whether the vectors are at the catalog state of the open transaction (then
        `sync` changes nothing and may run under a shared hold of `rw`)."""
        return self._vectors is not None and self._state == self.catalog.state()

    def sync(self) -> VectorIndex:
        """The vector index at the catalog state of the open transaction (call inside one,
        holding `rw` exclusively unless `in_step`)."""
        epoch, version = self.catalog.state()
        if self._vectors is not None and self._state == (epoch, version):
            return self._vectors
        dim = self.dim
        if self._vectors is None or self._state[0] != epoch or (dim and self._vectors.dim != dim):
            self._vectors = self._load_or_build(epoch, version)
            self._vectors.fetch_ = self.fetch_exact
        else:
            self._catch_up(self._vectors)
        self._state = (epoch, version)
        return self._vectors

    def fetch_exact(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of `rows` ``(m,)`` as ``(m, dim)`` (zeros for rows gone); call
        inside a snapshot. IVF-PQ scores filtered sets and re-ranks with these."""
        dim = self.dim
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        out = np.zeros((len(rows), dim), dtype=np.float32)
        for got, vecs in self.catalog.embeddings(dim, rows=rows):
            out[order[np.searchsorted(rows[order], got)]] = vecs
        return out

    def _catch_up(self, vectors: VectorIndex) -> None:
        dim = self.dim
        removed = self.catalog.tombstones_since(self._state[1])
        vectors.remove(removed[removed <= self._high])
        for rows, vecs in self.catalog.embeddings(dim, after=self._high):
            vectors.add(rows, vecs)
        self._high = self.catalog.high_water()

    def _load_or_build(self, epoch: int, version: int) -> VectorIndex:
        dim, count = self.dim, self.catalog.count()
        found = find_cache(self.catalog.dir, epoch, version) if dim else None
        if found is not None:
            try:
                vectors = VectorIndex.load(found[0], dim, self.config)
            except (RuntimeError, ValueError, OSError) as e:
                log.warning(
                    "vector cache %s unreadable (%s); rebuilding from the catalog", found[0], e
                )
            else:
                if vectors.kind == self.config.desired_kind(count, vectors.kind):
                    self._reconcile(vectors)
                    self._saved = (epoch, found[1])
                    log.debug("loaded vector cache %s", found[0])
                    return vectors
        return self._build(self.config.desired_kind(count), epoch, version)

    def _reconcile(self, vectors: VectorIndex) -> None:
        """Make a loaded cache hold exactly the catalog's rows."""
        live, held = self.catalog.rows(), vectors.rows()
        vectors.remove(np.setdiff1d(held, live, assume_unique=True))
        missing = np.setdiff1d(live, held, assume_unique=True)
        for rows, vecs in self.catalog.embeddings(self.dim, rows=missing):
            vectors.add(rows, vecs)
        self._high = self.catalog.high_water()

    def _build(self, kind: str, epoch: int, version: int) -> VectorIndex:
        dim = self.dim
        log.info("%s: building the %s vector index from the catalog", self.catalog.dir, kind)
        if not dim:
            vectors = VectorIndex(1, "flat", self.config)
        else:
            vectors = VectorIndex.build(dim, kind, self.config, self.catalog.embeddings(dim))
        self._high = self.catalog.high_water()
        self._saved = (-1, -1)
        self._state = (epoch, version)
        vectors.fetch_ = self.fetch_exact
        self._vectors = vectors
        self._try_save()
        return vectors

    def rebuild(self, kind: str | None = None) -> None:
        """Rebuild the vector index from the catalog (as `kind`, else the configured kind).

        An explicit `kind` also becomes this object's setting (``ModelIndex.open(kind=...)``
        records one for every later open).
        """
        if kind is not None:
            self.config = replace(self.config, kind=kind)
        self._rebuild(None)

    def _rebuild(self, kind: str | None) -> None:
        with self.rw.exclusive(), self.catalog.snapshot():
            epoch, version = self.catalog.state()
            count = self.catalog.count()
            self._build(kind or self.config.desired_kind(count), epoch, version)

    def flush(self) -> None:
        """Save the vector cache if it is behind; switch kind first if the size calls for it.

        Saving only reads the vectors: searches go on meanwhile."""
        with self.rw.exclusive():
            if self._vectors is None or self._saved == self._state:
                return
            vectors = self._vectors
            wanted = self.config.desired_kind(vectors.ntotal, vectors.kind)
            if wanted != vectors.kind or vectors.needs_rebuild():
                self._rebuild(wanted)
                return
        with self.rw.shared(), self._save_lock:
            if self._saved != self._state:
                self._try_save()

    def _try_save(self) -> None:
        if self._vectors is None or not self.dim:
            return
        epoch, version = self._state
        path = cache_file(self.catalog.dir, epoch, version, self._vectors.kind)
        try:
            self._vectors.save(path)
        except (OSError, RuntimeError) as e:
            log.warning("could not save the vector cache %s: %s", path, e)
            return
        self._saved = self._state
        prune_caches(self.catalog.dir, epoch, version)

    def current_kind(self, count: int) -> str:
        """The kind of the loaded vector index, else the kind it would be built as."""
        if self._vectors is not None:
            return self._vectors.kind
        return self.config.desired_kind(count)

    def cache_state(self, epoch: int, version: int) -> str:
        """``"fresh"``, ``"stale"`` (older version: updated on load) or ``"missing"``."""
        found = find_cache(self.catalog.dir, epoch, version)
        if found is None:
            return "missing"
        return "fresh" if found[1] == version else "stale"


RECORDED = ("kind", "ivf_nlist", "pq_m")  # how the vector index is built, kept in the catalog


def recorded_config(meta: dict[str, str], config: IndexConfig) -> IndexConfig:
    """`config` with the build settings recorded in the catalog's `meta` (where recorded)."""
    values: dict[str, object] = {}
    for key in RECORDED:
        if key in meta:
            text = meta[key]
            values[key] = text if key == "kind" or text is None else int(text)
    if values.get("kind") is None:
        values.pop("kind", None)
    return replace(config, **values)  # type: ignore[arg-type]


def record_config(catalog: Catalog, config: IndexConfig) -> IndexConfig:
    """Record `config`'s build settings in the catalog; a change of them for an index that
    holds vectors bumps the epoch, so every cached vector index is rebuilt."""
    meta = catalog.meta()
    wanted = {k: getattr(config, k) for k in RECORDED}
    if any(meta.get(k) != (None if v is None else str(v)) for k, v in wanted.items()):
        with catalog.write(bump=False) as conn:
            catalog.set_meta(conn, **wanted)
            if catalog.count():
                catalog.set_meta(conn, epoch=int(meta.get("epoch") or 0) + 1)
    return config
