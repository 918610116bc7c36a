"""SearchBatcher: concurrent one-query searches share FAISS calls and get their own answers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from zoolens.index.batching import SearchBatcher
from zoolens.index.vectors import IndexConfig, VectorIndex, unit_rows

N_THREADS = 12


@pytest.fixture
def vectors() -> VectorIndex:
    x = unit_rows(np.random.default_rng(0).standard_normal((400, 16)).astype(np.float32))
    return VectorIndex.build(16, "flat", IndexConfig(), [(np.arange(1, 401), x)])


class Slow:
    """A VectorIndex whose searches take 50 ms, so that others queue meanwhile."""

    def __init__(self, inner: VectorIndex, fail: bool = False) -> None:
        self.inner, self.fail, self.sizes = inner, fail, []

    def search(self, queries, k, allowed=None):
        self.sizes.append(len(queries))
        time.sleep(0.05)
        if self.fail:
            raise RuntimeError("broken index")
        return self.inner.search(queries, k, allowed)


def _concurrently(batcher, index, queries, ks):
    out, errors, start = {}, [], threading.Barrier(len(queries))

    def run(i: int) -> None:
        start.wait()
        try:
            out[i] = batcher.search(index, queries[i : i + 1], ks[i])
        except Exception as e:  # collected for the test thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out, errors


def test_concurrent_queries_share_calls_and_get_their_own_answers(vectors):
    queries = unit_rows(np.random.default_rng(1).standard_normal((N_THREADS, 16)))
    ks = [3 + i % 5 for i in range(N_THREADS)]  # different k in one batch
    slow, batcher = Slow(vectors), SearchBatcher()
    out, errors = _concurrently(batcher, slow, queries, ks)
    assert errors == [] and len(out) == N_THREADS
    assert batcher.calls == len(slow.sizes) < N_THREADS and max(slow.sizes) > 1
    for i, (scores, rows) in out.items():
        ref_scores, ref_rows = vectors.search(queries[i : i + 1], ks[i])
        assert scores.shape == rows.shape == (1, ks[i])
        np.testing.assert_array_equal(rows, ref_rows)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


def test_one_after_another_is_one_call_each(vectors):
    """Sensitivity twin: without concurrency nothing is batched."""
    queries = unit_rows(np.random.default_rng(2).standard_normal((4, 16)))
    slow, batcher = Slow(vectors), SearchBatcher()
    for i in range(4):
        batcher.search(slow, queries[i : i + 1], 5)
    assert batcher.calls == 4 and slow.sizes == [1, 1, 1, 1]


def test_an_error_reaches_every_caller_and_the_next_batch_runs(vectors):
    queries = unit_rows(np.random.default_rng(3).standard_normal((6, 16)))
    batcher = SearchBatcher()
    out, errors = _concurrently(batcher, Slow(vectors, fail=True), queries, [4] * 6)
    assert out == {} and len(errors) == 6
    assert all("broken index" in str(e) for e in errors)
    _, rows = batcher.search(vectors, queries[:1], 4)  # not stuck
    np.testing.assert_array_equal(rows, vectors.search(queries[:1], 4)[1])
