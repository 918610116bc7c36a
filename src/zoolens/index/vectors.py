"""The FAISS side of the index: exact (flat), HNSW, IVF or IVF-PQ inner-product search over rows.

The vector index is a cache of the catalog: every FAISS id is a catalog ``row``. It is saved as
``vectors.e{epoch}.v{version}.{kind}.faiss`` next to the catalog and rebuilt from it when the
file is missing, unreadable or of another epoch; a file of an older version is brought up to date.

IVF-PQ keeps only product-quantised codes (`pq_m` bytes per vector at 8 bits, plus the 8-byte
id): it cannot give back exact vectors, so the index asks `fetch_` (the catalog) for them to
score small filtered sets exactly and to re-rank its candidates.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from zoolens.index.faiss_settings import BLAS, query_threads

log = logging.getLogger(__name__)

KINDS = ("flat", "hnsw", "ivf", "ivfpq")
_IVF_KINDS = ("ivf", "ivfpq")
_CACHE_RE = re.compile(r"vectors\.e(\d+)\.v(\d+)\.(flat|hnsw|ivfpq|ivf)\.faiss$")


@dataclass(frozen=True)
class IndexConfig:
    """Hyper-parameters of the vector index.

    Args:
        kind: ``"auto"`` (flat up to `hnsw_threshold` models, HNSW above), ``"flat"``
            (exact), ``"hnsw"``, ``"ivf"`` or ``"ivfpq"``.
        hnsw_threshold: model count above which ``"auto"`` switches to HNSW.
        hnsw_m: HNSW graph degree.
        ef_construction: HNSW build beam width.
        ef_search: HNSW search beam width (recall vs latency).
        ivf_nlist: IVF cells; None → ``4·√n``.
        ivf_nprobe: IVF cells visited per query.
        ivf_min_count: below this many models an IVF / IVF-PQ index stays flat (cannot train).
        pq_m: IVF-PQ sub-quantizers (bytes per vector at 8 bits); the largest divisor of
            the dimension not above it is used.
        pq_nbits: bits per sub-quantizer code.
        pq_rerank: IVF-PQ fetches ``pq_rerank·k`` candidates and re-scores them with exact
            vectors from `VectorIndex.fetch_` when it is set; 0 keeps PQ scores.
        pq_subset_threshold: `subset_threshold` of IVF-PQ, whose exact vectors are read from
            the catalog (slower than from memory).
        subset_threshold: a filtered search matching at most this many models (a quarter of
            all for a flat index, if more) is answered exactly by scoring that subset;
            larger ones search the index with an id selector.
        query_threads: OpenMP threads for searches of fewer than `few_queries` queries (on
            few busy cores OpenMP spins: a 16-query batch on two threads took seconds);
            None leaves FAISS' setting alone.
        few_queries: see `query_threads` (above the batches of `zoolens.index.batching`).
        blas_queries: exact searches of this many queries or more go through BLAS, one
            pass over the vectors per batch (at 10^5 × 98: 0.9 ms per query at 16 queries
            against 1.6 ms per query scanned alone); same hits, process-wide.
        max_deleted_fraction: an HNSW index (which cannot delete) holding more removed
            vectors than this fraction is rebuilt.
    """

    kind: str = "auto"
    hnsw_threshold: int = 100_000
    hnsw_m: int = 32
    ef_construction: int = 64
    ef_search: int = 128
    ivf_nlist: int | None = None
    ivf_nprobe: int = 16
    ivf_min_count: int = 10_000
    pq_m: int = 64
    pq_nbits: int = 8
    pq_rerank: int = 10
    pq_subset_threshold: int = 1_000
    subset_threshold: int = 10_000
    query_threads: int | None = 1
    few_queries: int = 64
    blas_queries: int = 8
    max_deleted_fraction: float = 0.2

    def desired_kind(self, count: int, current: str | None = None) -> str:
        """The kind of index to hold `count` vectors (HNSW kept down to half the threshold)."""
        if self.kind in _IVF_KINDS:
            return self.kind if count >= self.ivf_min_count else "flat"
        if self.kind != "auto":
            return self.kind
        limit = self.hnsw_threshold // 2 if current == "hnsw" else self.hnsw_threshold
        return "hnsw" if count > limit else "flat"


class VectorIndex:
    """Inner-product search over ``(row, vector)`` pairs.

    Args:
        dim: vector dimension.
        kind: ``"flat"``, ``"hnsw"``, ``"ivf"`` or ``"ivfpq"``.
        config: hyper-parameters.
        index: an existing FAISS index (from `load`), else an empty one is made.
    """

    def __init__(self, dim: int, kind: str, config: IndexConfig, index: Any = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; use one of {KINDS}")
        self.dim, self.kind, self.config = dim, kind, config
        self.deleted_: set[int] = set()
        self.fetch_: Callable[[np.ndarray], np.ndarray] | None = None  # rows → exact vectors
        self.index_ = index if index is not None else self._empty(0)
        self._apply_search_params()

    def _empty(self, n_train: int) -> Any:
        if self.kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        if self.kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(self.dim, self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = self.config.ef_construction
            return faiss.IndexIDMap2(hnsw)
        nlist = self.config.ivf_nlist or int(4 * np.sqrt(max(n_train, 1)))
        nlist = max(1, min(nlist, n_train // 39))
        if self.kind == "ivfpq":  # no direct map: ids live only in the inverted lists
            m = max(d for d in range(1, min(self.config.pq_m, self.dim) + 1) if self.dim % d == 0)
            return faiss.IndexIVFPQ(
                faiss.IndexFlatIP(self.dim),
                self.dim,
                nlist,
                m,
                self.config.pq_nbits,
                faiss.METRIC_INNER_PRODUCT,
            )
        ivf = faiss.IndexIVFFlat(
            faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT
        )
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
        return ivf

    def _apply_search_params(self) -> None:
        inner = self._inner()
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = self.config.ef_search
        if isinstance(inner, faiss.IndexIVF):
            inner.nprobe = self.config.ivf_nprobe

    def _inner(self) -> Any:
        if isinstance(self.index_, faiss.IndexIDMap2):
            return faiss.downcast_index(self.index_.index)
        return faiss.downcast_index(self.index_)

    # -- building ------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        dim: int,
        kind: str,
        config: IndexConfig,
        chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    ) -> VectorIndex:
        """A new index over `chunks` of ``(rows, (n, dim) vectors)``."""
        vi = cls(dim, "flat" if kind in _IVF_KINDS else kind, config)
        if kind not in _IVF_KINDS:
            for rows, vecs in chunks:
                vi.add(rows, vecs)
            return vi
        parts = list(chunks)  # IVF trains on everything it holds: gather first
        rows = np.concatenate([r for r, _ in parts]) if parts else np.zeros(0, np.int64)
        vecs = np.concatenate([v for _, v in parts]) if parts else np.zeros((0, dim), np.float32)
        vi.kind = kind
        vi.train(vecs)
        vi.add(rows, vecs)
        return vi

    def train(self, sample: np.ndarray) -> VectorIndex:
        """Replace the index by an empty IVF / IVF-PQ one trained on `sample` ``(n, dim)``
        (its cell count chosen for n); add the vectors after, in chunks of any size."""
        self.index_ = self._empty(len(sample))
        if len(sample):
            self.index_.train(np.ascontiguousarray(sample, dtype=np.float32))
        self._apply_search_params()
        return self

    def add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        if len(rows):
            self.index_.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32),
                np.ascontiguousarray(rows, dtype=np.int64),
            )

    def remove(self, rows: np.ndarray) -> None:
        """Forget `rows`; HNSW only masks them (see `needs_rebuild`)."""
        if not len(rows):
            return
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if self.kind == "hnsw":
            self.deleted_.update(int(r) for r in rows)
        elif self.kind == "ivf":  # its hash-table direct map only removes by IDSelectorArray
            self.index_.remove_ids(faiss.IDSelectorArray(len(rows), faiss.swig_ptr(rows)))
        else:
            self.index_.remove_ids(faiss.IDSelectorBatch(rows))

    @property
    def ntotal(self) -> int:
        """Live vectors (masked HNSW vectors excluded)."""
        return int(self.index_.ntotal) - len(self.deleted_)

    def needs_rebuild(self) -> bool:
        total = int(self.index_.ntotal)
        return bool(self.deleted_) and len(self.deleted_) > self.config.max_deleted_fraction * total

    def rows(self) -> np.ndarray:
        """Every row id held, masked ones included, sorted."""
        if isinstance(self.index_, faiss.IndexIDMap2):
            return np.sort(faiss.vector_to_array(self.index_.id_map).astype(np.int64))
        inv = self._inner().invlists
        parts = [
            faiss.rev_swig_ptr(inv.get_ids(i), inv.list_size(i)).copy()
            for i in range(inv.nlist)
            if inv.list_size(i)
        ]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    # -- searching -----------------------------------------------------------------------
    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` inner products, optionally among `allowed` rows only.

        Args:
            queries: ``(n, dim)`` float32.
            k: hits per query.
            allowed: sorted row ids to restrict to; None for all.

        Returns:
            ``(scores, rows)``, both ``(n, k)``; ``-inf`` / ``-1`` where there is no hit.
        """
        n = len(queries)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if k <= 0 or self.ntotal == 0 or (allowed is not None and len(allowed) == 0):
            return _no_hits(n, max(k, 0))
        cfg = self.config
        with (
            query_threads(n, cfg.query_threads, cfg.few_queries),
            BLAS.lowered(cfg.blas_queries, self.dim),
        ):
            if allowed is None and self.kind == "ivfpq" and self._reranks():
                scores, rows = self._rerank(queries, k, self._search_all(queries, self._wide(k)))
            elif allowed is None:
                scores, rows = self._search_all(queries, k)
            elif len(allowed) <= self._subset_limit():
                scores, rows = self._search_subset(queries, k, allowed)
            else:
                scores, rows = self._search_selected(queries, k, allowed)
        scores = scores.astype(np.float32, copy=True)
        scores[rows < 0] = -np.inf
        return scores, rows

    def _subset_limit(self) -> int:
        """Largest filtered set scored directly; a flat index does so up to a quarter of its
        size (copying those vectors beats scanning all of them through a selector)."""
        if self.kind == "flat":
            return max(self.config.subset_threshold, self.ntotal // 4)
        if self.kind == "ivfpq":  # without exact vectors at hand: always through the selector
            return 0 if self.fetch_ is None else self.config.pq_subset_threshold
        return self.config.subset_threshold

    def _reranks(self) -> bool:
        return self.fetch_ is not None and self.config.pq_rerank > 0

    def _wide(self, k: int) -> int:
        return k * max(1, self.config.pq_rerank)

    def _rerank(
        self, queries: np.ndarray, k: int, found: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Re-score IVF-PQ candidates ``(n, k')`` with exact vectors; keep the top `k`."""
        assert self.fetch_ is not None
        _, cand = found
        held = np.unique(cand[cand >= 0])
        exact = self.fetch_(held)  # (m, dim)
        pos = np.searchsorted(held, np.maximum(cand, 0))  # (n, k')
        scores = np.einsum("nd,nkd->nk", queries, exact[pos])  # (n, k')
        scores[cand < 0] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        rows = np.take_along_axis(cand, order, axis=1)
        return np.take_along_axis(scores, order, axis=1), rows

    def _search_all(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.deleted_:
            found: tuple[np.ndarray, np.ndarray] = self.index_.search(queries, k)
            return found
        keep = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.fromiter(self.deleted_, np.int64)))
        found = self.index_.search(queries, k, params=self._params(keep, 1.0))
        return found

    def _search_selected(
        self, queries: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        share = len(allowed) / max(int(self.index_.ntotal), 1)
        wide = self._wide(k) if self.kind == "ivfpq" and self._reranks() else k
        scores, rows = self.index_.search(queries, wide, params=self._params(sel, share))
        short = np.flatnonzero((rows >= 0).sum(axis=1) < min(k, len(allowed)))
        if len(short) and self.kind == "ivfpq" and self.fetch_ is None:  # visit every cell
            every = faiss.SearchParametersIVF(sel=sel, nprobe=self._inner().nlist)  # type: ignore[call-arg]
            scores[short], rows[short] = self.index_.search(queries[short], wide, params=every)
        elif len(short):  # an approximate index found too few: answer those exactly
            scores[short], rows[short] = self._search_subset(queries[short], wide, allowed)
        if wide > k:
            scores, rows = self._rerank(queries, k, (scores, rows))
        return scores, rows

    def _params(self, sel: Any, share: float) -> Any:
        if self.kind == "hnsw":
            ef = int(
                min(max(self.config.ef_search, self.config.ef_search / max(share, 1e-3)), 4096)
            )
            return faiss.SearchParametersHNSW(sel=sel, efSearch=ef)  # type: ignore[attr-defined]
        if self.kind in _IVF_KINDS:  # (the FAISS stubs lack the keyword constructors)
            return faiss.SearchParametersIVF(sel=sel, nprobe=self.config.ivf_nprobe)  # type: ignore[call-arg]
        return faiss.SearchParameters(sel=sel)  # type: ignore[call-arg]

    def _search_subset(
        self, queries: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact: score every allowed vector (FAISS' brute force, not numpy's BLAS, whose
        thread pool fights FAISS' OpenMP one on few cores)."""
        allowed = np.ascontiguousarray(allowed, dtype=np.int64)
        if self.kind == "ivfpq" and self.fetch_ is not None:
            vectors = np.ascontiguousarray(self.fetch_(allowed), dtype=np.float32)  # (m, dim)
        else:
            vectors = self.index_.reconstruct_batch(allowed)  # (m, dim)
        scores, picks = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
        rows = np.where(picks >= 0, allowed[np.maximum(picks, 0)], -1)
        return scores, rows

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write atomically to `path` (a temporary file, then a rename)."""
        tmp = f"{path}.{os.getpid()}.tmp"
        faiss.write_index(self.index_, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str, dim: int, config: IndexConfig) -> VectorIndex:
        kind = _CACHE_RE.search(os.path.basename(path))
        index = faiss.read_index(path)
        if int(index.d) != dim:
            raise ValueError(f"{path}: dimension {index.d}, catalog says {dim}")
        return cls(dim, kind.group(3) if kind else "flat", config, index)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return np.asarray(x / norms, dtype=np.float32)


def _no_hits(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)


# -- the cache files ----------------------------------------------------------------------
def cache_file(directory: str, epoch: int, version: int, kind: str) -> str:
    return os.path.join(directory, f"vectors.e{epoch}.v{version}.{kind}.faiss")


def find_cache(directory: str, epoch: int, version: int) -> tuple[str, int] | None:
    """The newest cache of `epoch` at or before catalog `version`: ``(path, its version)``."""
    best: tuple[str, int] | None = None
    for path in glob.glob(os.path.join(directory, "vectors.e*.faiss")):
        m = _CACHE_RE.search(os.path.basename(path))
        if (
            m
            and int(m.group(1)) == epoch
            and int(m.group(2)) <= version
            and (best is None or int(m.group(2)) > best[1])
        ):
            best = (path, int(m.group(2)))
    return best


def prune_caches(directory: str, epoch: int, version: int) -> None:
    """Delete cache files older than ``(epoch, version)`` (open ones stay readable)."""
    for path in glob.glob(os.path.join(directory, "vectors.e*.faiss")):
        m = _CACHE_RE.search(os.path.basename(path))
        if m and (int(m.group(1)), int(m.group(2))) < (epoch, version):
            try:
                os.remove(path)
            except OSError as e:
                log.debug("could not remove old cache %s: %s", path, e)
