"""The FAISS layer against brute-force numpy: flat exactly, HNSW / IVF by recall."""

from __future__ import annotations

import numpy as np
import pytest

from index.clustered import D, brute, clustered_data
from zoolens.index.faiss_settings import BLAS
from zoolens.index.vectors import (
    IndexConfig,
    VectorIndex,
    cache_file,
    find_cache,
    prune_caches,
)


@pytest.fixture(scope="module")
def data():
    return clustered_data()


def build(kind, x, rows, **cfg):
    return VectorIndex.build(
        D, kind, IndexConfig(**cfg), [(rows[:2500], x[:2500]), (rows[2500:], x[2500:])]
    )


def recall(got, ref):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, ref, strict=True)])


def test_flat_equals_brute_force(data):
    x, rows, q = data
    scores, ids = build("flat", x, rows).search(q, 10)
    ref_scores, ref_ids = brute(x, rows, q, 10)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


@pytest.mark.parametrize("n_allowed", [300, 2500])  # scored directly / FAISS selector
def test_flat_restricted_search_is_exact(data, n_allowed):
    x, rows, q = data
    allowed = np.sort(np.random.default_rng(1).choice(rows, n_allowed, replace=False))
    vi = build("flat", x, rows, subset_threshold=10)
    scores, ids = vi.search(q, 10, allowed)
    ref_scores, ref_ids = brute(x, rows, q, 10, allowed)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_small_filtered_sets_are_exact_for_every_kind(data, kind):
    x, rows, q = data
    allowed = np.sort(np.random.default_rng(2).choice(rows, 50, replace=False))
    scores, ids = build(kind, x, rows).search(q, 10, allowed)
    ref_scores, ref_ids = brute(x, rows, q, 10, allowed)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_kinds_have_high_recall(data, kind):
    x, rows, q = data
    vi = build(kind, x, rows)
    assert vi.kind == kind
    _, ids = vi.search(q, 10)
    assert recall(ids, brute(x, rows, q, 10)[1]) >= 0.95


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_filtered_search_returns_k_matching_hits(data, kind):
    x, rows, q = data
    allowed = np.sort(rows[::7])  # 572 rows: above subset_threshold → FAISS selector path
    vi = build(kind, x, rows, subset_threshold=100)
    _, ids = vi.search(q, 10, allowed)
    assert (ids >= 0).all() and np.isin(ids, allowed).all()
    assert recall(ids, brute(x, rows, q, 10, allowed)[1]) >= 0.9


def test_no_hit_contract(data):
    x, rows, q = data
    vi = build("flat", x[:3], rows[:3])
    scores, ids = vi.search(q[:2], 5)
    assert ids.shape == scores.shape == (2, 5)
    assert (ids[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    assert (ids[:, :3] >= 0).all() and np.isfinite(scores[:, :3]).all()
    scores, ids = vi.search(q[:2], 5, allowed=np.zeros(0, np.int64))
    assert (ids == -1).all() and np.isneginf(scores).all()


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_removed_rows_never_come_back(data, kind):
    x, rows, q = data
    vi = build(kind, x, rows)
    _, before = vi.search(q, 5)
    gone = np.unique(before[:, :2])
    vi.remove(gone)
    _, after = vi.search(q, 10)
    assert not np.isin(after, gone).any()
    assert vi.ntotal == len(rows) - len(gone)


def test_save_load_roundtrip_is_identical(tmp_path, data):
    x, rows, q = data
    for kind in ("flat", "hnsw", "ivf"):
        vi = build(kind, x, rows)
        path = cache_file(str(tmp_path), 0, 7, kind)
        vi.save(path)
        back = VectorIndex.load(path, D, IndexConfig())
        assert back.kind == kind
        np.testing.assert_array_equal(back.rows(), np.sort(rows))
        for a, b in zip(vi.search(q, 10), back.search(q, 10), strict=True):
            np.testing.assert_array_equal(a, b)
        back.remove(rows[:10])  # a loaded index still removes (IVF keeps its id map)
        assert back.ntotal == len(rows) - 10


def test_cache_files_are_found_by_epoch_and_version(tmp_path):
    for e, v in [(0, 3), (0, 5), (1, 2)]:
        open(cache_file(str(tmp_path), e, v, "flat"), "w").close()
    assert find_cache(str(tmp_path), 0, 4)[1] == 3
    assert find_cache(str(tmp_path), 0, 9)[1] == 5
    assert find_cache(str(tmp_path), 2, 9) is None
    prune_caches(str(tmp_path), 1, 2)
    assert find_cache(str(tmp_path), 0, 9) is None and find_cache(str(tmp_path), 1, 2)


def test_desired_kind():
    cfg = IndexConfig(hnsw_threshold=100)
    assert cfg.desired_kind(100) == "flat" and cfg.desired_kind(101) == "hnsw"
    assert cfg.desired_kind(60, current="hnsw") == "hnsw"  # no flapping near the threshold
    assert IndexConfig(kind="ivf", ivf_min_count=50).desired_kind(10) == "flat"


def test_batched_flat_search_through_blas_equals_one_by_one(data):
    """Batches of `blas_queries` or more go through BLAS (one pass for the batch): same hits
    as each query alone (FAISS' per-query scan) and as brute force."""
    import faiss

    x, rows, q = data
    index = build("flat", x, rows)
    alone = [index.search(q[i : i + 1], 10) for i in range(len(q))]
    before = faiss.cvar.distance_compute_blas_threshold
    scores, ids = index.search(q, 10)  # 25 queries >= blas_queries
    assert faiss.cvar.distance_compute_blas_threshold == before  # restored for other users
    with BLAS.lowered(8, D):  # what a search runs under, nested as concurrent ones are
        with BLAS.lowered(8, D):
            assert faiss.cvar.distance_compute_blas_threshold in (8, 8 * D)
        assert faiss.cvar.distance_compute_blas_threshold in (8, 8 * D)
    assert faiss.cvar.distance_compute_blas_threshold == before
    np.testing.assert_array_equal(ids, np.concatenate([r for _, r in alone]))
    np.testing.assert_allclose(scores, np.concatenate([s for s, _ in alone]), atol=1e-6)
    np.testing.assert_array_equal(ids, brute(x, rows, q, 10)[1])
