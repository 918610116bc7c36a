"""FAISS settings a search changes for its duration only: OpenMP threads (per calling
thread) and the BLAS threshold (process-wide, restored when the last search ends)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import faiss


@contextmanager
def query_threads(n_queries: int, threads: int | None, few_queries: int) -> Iterator[None]:
    """FAISS' OpenMP threads set to `threads` for a search of fewer than `few_queries`
    queries (None: left alone), restored after it."""
    if threads is None or n_queries >= few_queries:
        yield
        return
    before = faiss.omp_get_max_threads()  # a per-thread OpenMP setting: other threads unaffected
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class BlasThreshold:
    """FAISS' BLAS threshold (a process-wide setting) lowered while zoolens searches
    run, restored when the last one ends: other FAISS users in the process see their own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._before = 0

    @contextmanager
    def lowered(self, n_queries: int, dim: int) -> Iterator[None]:
        """Exact searches of `n_queries` or more go through BLAS meanwhile. FAISS 1.15
        compares queries × dim with its threshold (default 128000), earlier versions
        queries (default 20)."""
        with self._lock:
            if not self._active:
                self._before = faiss.cvar.distance_compute_blas_threshold
                want = n_queries * dim if self._before > 1000 else n_queries
                faiss.cvar.distance_compute_blas_threshold = want
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if not self._active:
                    faiss.cvar.distance_compute_blas_threshold = self._before


BLAS = BlasThreshold()
