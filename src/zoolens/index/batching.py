"""Concurrent one-vector searches answered together: one FAISS call for the queries that
arrive while another call runs.

A flat search of one query reads every stored vector (memory-bound: ~2 ms at 10^5 × 98);
16 queries in one call read them once. `SearchBatcher.search` puts its query in a queue; the
caller that finds no call running leads one over the whole queue, then hands the lead to
the first query that queued meanwhile (no caller serves others for longer than one call;
no query waits for a timer). Callers must hold the vectors' lock shared (`VectorSync.rw`),
so every query of a batch sees the same vectors.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from zoolens.index.vectors import VectorIndex


@dataclass
class _Request:
    query: np.ndarray  # (1, d)
    k: int
    lead: bool = False
    result: tuple[np.ndarray, np.ndarray] | None = None
    error: BaseException | None = None
    wake: threading.Event = field(default_factory=threading.Event)


class SearchBatcher:
    """Batches concurrent `VectorIndex.search` calls of one query each (no filter)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._running = False
        self.calls = 0  # FAISS calls made (a test and a benchmark read it)

    def search(
        self, vectors: VectorIndex, query: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """`vectors.search(query, k)` for a ``(1, d)`` query, possibly beside others.

        Returns:
            ``(scores, rows)``, both ``(1, k)``, as `VectorIndex.search` gives them.
        """
        req = _Request(np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1), k)
        with self._lock:
            self._queue.append(req)
            if not self._running:
                self._running = req.lead = True
        if not req.lead:
            req.wake.wait()  # answered, or handed the lead
        if req.lead:
            self._lead(vectors)
        if req.error is not None:
            raise req.error
        assert req.result is not None
        return req.result

    def _lead(self, vectors: VectorIndex) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            wide = max(r.k for r in batch)
            scores, rows = vectors.search(np.concatenate([r.query for r in batch]), wide)
            self.calls += 1
            for i, r in enumerate(batch):
                r.result = (scores[i : i + 1, : r.k].copy(), rows[i : i + 1, : r.k].copy())
        except BaseException as e:  # every caller of the batch sees the error
            for r in batch:
                r.error = e
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].wake.set()
                else:
                    self._running = False
            for r in batch:
                r.lead = False
                r.wake.set()
