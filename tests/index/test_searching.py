"""`Search.search_records` (hits with their records, one snapshot) against `search` + `get`."""

from __future__ import annotations

import numpy as np
import pytest

from zoolens.index import ModelIndex


@pytest.fixture
def index(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 8)).astype(np.float32)
    metadata = [{"task": "a" if i % 3 else "b", "i": i} for i in range(60)]
    with ModelIndex.open(tmp_path / "idx", encoder=None) as index:
        index.add_embeddings(x, [f"v{i}" for i in range(60)], metadata=metadata, encoder_id="r")
        yield index


@pytest.mark.parametrize("where", [None, {"task": "b"}])
def test_search_records_equal_search_and_get(index, where):
    query = index.get("v7", embedding=True)["embedding"]
    scores, ids = index.search(query, k=12, where=where)
    found = index.search_records(query, 12, where, embedding=True)
    assert [rec["id"] for _, rec in found] == list(ids[0])
    np.testing.assert_array_equal([s for s, _ in found], scores[0])
    for _, rec in found:
        stored = index.get(rec["id"], embedding=True)
        assert rec["metadata"] == stored["metadata"]
        np.testing.assert_array_equal(rec["embedding"], stored["embedding"])
    if where:
        assert {rec["metadata"]["task"] for _, rec in found} == {"b"}


def test_search_records_leave_out_missing_hits_and_embeddings(index):
    query = index.get("v1", embedding=True)["embedding"]
    found = index.search_records(query, 100, {"i": ("<", 5)})
    assert sorted(rec["id"] for _, rec in found) == [f"v{i}" for i in range(5)]  # not 100
    assert all("embedding" not in rec for _, rec in found)
    assert found[0][1]["id"] == "v1"  # the query itself, best first
    assert [s for s, _ in found] == sorted((s for s, _ in found), reverse=True)
