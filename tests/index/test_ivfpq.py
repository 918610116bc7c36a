"""IVF-PQ against brute-force numpy: recall, filters, removal, persistence, and in a ModelIndex."""

from __future__ import annotations

from dataclasses import replace

import faiss
import numpy as np
import pytest

from index.clustered import D, brute, clustered_data
from zoolens.index import IndexConfig, ModelIndex
from zoolens.index.vectors import VectorIndex, cache_file

PQ = {"pq_m": 8}  # 8 one-byte codes per 32-dim vector: lossy enough to need the re-ranking


@pytest.fixture(scope="module")
def data():
    return clustered_data()


def recall(got, ref):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, ref, strict=True)])


def build(x, rows, exact=True, **cfg):
    vi = VectorIndex.build(D, "ivfpq", IndexConfig(**{**PQ, **cfg}), [(rows, x)])
    if exact:  # what the catalog gives a ModelIndex's vectors
        vi.fetch_ = lambda r: x[np.searchsorted(rows, r)]
    return vi


def test_holds_only_pq_codes(data):
    x, rows, _ = data
    vi = build(x, rows)
    inner = faiss.downcast_index(vi.index_)
    assert isinstance(inner, faiss.IndexIVFPQ) and vi.kind == "ivfpq"
    assert inner.code_size == 8 and inner.ntotal == len(rows)
    np.testing.assert_array_equal(vi.rows(), rows)


def test_reranking_with_exact_vectors_lifts_recall(data):
    x, rows, q = data
    truth = brute(x, rows, q, 10)
    codes_only = recall(build(x, rows, exact=False).search(q, 10)[1], truth[1])
    scores, ids = build(x, rows).search(q, 10)
    assert recall(ids, truth[1]) >= 0.95 > codes_only  # PQ alone is lossy here
    exact = np.einsum("nd,nkd->nk", q, x[np.searchsorted(rows, ids)])
    np.testing.assert_allclose(scores, exact, atol=1e-5)  # re-ranked scores are exact


def test_small_filtered_set_equals_brute_force(data):
    x, rows, q = data
    allowed = np.sort(np.random.default_rng(2).choice(rows, 50, replace=False))
    scores, ids = build(x, rows).search(q, 10, allowed)
    ref_scores, ref_ids = brute(x, rows, q, 10, allowed)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


@pytest.mark.parametrize("exact", [True, False])
def test_selector_filtered_search_returns_k_matching_hits(data, exact):
    x, rows, q = data
    allowed = np.sort(rows[::7])  # 572 rows: above subset_threshold → FAISS selector path
    vi = build(x, rows, exact=exact, subset_threshold=100)
    _, ids = vi.search(q, 10, allowed)
    assert (ids >= 0).all() and np.isin(ids, allowed).all()
    assert recall(ids, brute(x, rows, q, 10, allowed)[1]) >= (0.9 if exact else 0.5)


def test_removed_rows_never_come_back(data):
    x, rows, q = data
    vi = build(x, rows)
    _, before = vi.search(q, 5)
    gone = np.unique(before[:, :2])
    vi.remove(gone)
    _, after = vi.search(q, 10)
    assert not np.isin(after, gone).any()
    assert vi.ntotal == len(rows) - len(gone)


def test_save_load_roundtrip_is_identical(tmp_path, data):
    x, rows, q = data
    vi = build(x, rows, exact=False)
    path = cache_file(str(tmp_path), 0, 7, "ivfpq")
    vi.save(path)
    back = VectorIndex.load(path, D, IndexConfig(**PQ))
    assert back.kind == "ivfpq"
    np.testing.assert_array_equal(back.rows(), rows)
    for a, b in zip(vi.search(q, 10), back.search(q, 10), strict=True):
        np.testing.assert_array_equal(a, b)
    back.remove(rows[:10])
    assert back.ntotal == len(rows) - 10


def test_streamed_training_matches_build(data):
    """Train on a sample, then add in chunks (how 10⁷ vectors fit): same codes as `build`."""
    x, rows, q = data
    cfg = IndexConfig(**PQ, ivf_nlist=20)
    vi = VectorIndex(D, "ivfpq", cfg).train(x)
    for s in range(0, len(x), 1000):
        vi.add(rows[s : s + 1000], x[s : s + 1000])
    built = VectorIndex.build(D, "ivfpq", cfg, [(rows, x)])
    for a, b in zip(vi.search(q, 10), built.search(q, 10), strict=True):
        np.testing.assert_array_equal(a, b)


def test_model_index_ivfpq_filters_persist_and_remove(tmp_path, data):
    x, _, q = data
    ids = [f"m{i}" for i in range(len(x))]
    cfg = IndexConfig(**PQ, ivf_min_count=1000)
    with ModelIndex.open(tmp_path / "ix", encoder=None, kind="ivfpq", config=cfg) as index:
        index.add_embeddings(
            x, ids, encoder_id="test", metadata=[{"bucket": i % 10} for i in range(len(x))]
        )
        assert index.stats()["kind"] == "ivfpq"
        scores, got = index.search(q, 10, where={"bucket": 3})
        ref_scores, ref_rows = brute(x, np.arange(len(x)), q, 10, np.arange(3, len(x), 10))
        np.testing.assert_array_equal(got, np.array(ids, dtype=object)[ref_rows])
        np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
        first = index.search(q, 10)
    with ModelIndex.open(
        tmp_path / "ix", encoder=None, config=cfg
    ) as index:  # from the saved cache
        assert index.stats()["kind"] == "ivfpq"
        again = index.search(q, 10)
        np.testing.assert_array_equal(again[1], first[1])
        np.testing.assert_allclose(again[0], first[0], atol=1e-6)
        gone = sorted(set(first[1][:, 0]))
        index.remove(gone)
        assert not np.isin(index.search(q, 10)[1], gone).any()
    with ModelIndex.open(tmp_path / "ix", encoder=None, config=cfg) as index:
        assert not np.isin(index.search(q, 10)[1], gone).any()
        assert len(index) == len(x) - len(gone)


def _built(index: ModelIndex) -> tuple[int, int]:
    """``(nlist, pq M)`` of the FAISS index `index` searches with."""
    inner = index._vectors._inner()  # type: ignore[union-attr]
    return int(inner.nlist), int(inner.pq.M)


def test_recorded_build_settings_survive_reopen_and_a_change_rebuilds(tmp_path, data):
    x, _, q = data
    path, ids = tmp_path / "ix", [f"m{i}" for i in range(len(x))]
    small = IndexConfig(pq_m=8, ivf_nlist=20, ivf_min_count=1000)
    with ModelIndex.open(path, encoder=None, kind="ivfpq", config=small) as index:
        index.add_embeddings(x, ids, encoder_id="test")
        index.search(q, 10)
        assert _built(index) == (20, 8)
    plain = IndexConfig(ivf_min_count=1000)  # pq_m 64, nlist auto: the recorded ones win
    with ModelIndex.open(path, encoder=None, config=plain) as index:
        assert (index.config.kind, index.config.ivf_nlist, index.config.pq_m) == ("ivfpq", 20, 8)
        index.search(q, 10)
        assert _built(index) == (20, 8)
    with ModelIndex.open(path, encoder=None, kind="ivfpq", config=replace(plain, pq_m=4)) as ix:
        ix.search(q, 10)  # the same kind with other settings: rebuilt, not the cache
        assert _built(ix) == (len(x) // 39, 4)  # auto nlist 4·√n, at most n / 39
    with ModelIndex.open(path, encoder=None) as index:
        assert index.stats()["pq_m"] == 4 and index.stats()["ivf_nlist"] is None
