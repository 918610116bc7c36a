"""Lineage and near-duplicates in the API: an index of models kept on disk (a parent, its
fine-tunes, one stored permuted, an unrelated model and a permuted copy of it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from index.fake_encoder import StatsEncoder
from index.lineage_family import family
from zoolens.index import ModelIndex
from zoolens.symmetry import random_exact_action


def build_lineage_index(root: Path) -> Path:
    """``p``, ``c1..c3`` (``c1``'s parent recorded), ``u`` and ``u-copy`` as files."""
    nets, _ = family(n_children=3)  # a fresh dict
    nets["u-copy"] = random_exact_action(nets["u"], torch.Generator().manual_seed(3))
    paths, metadata = [], []
    for model_id, net in nets.items():
        net.save(str(root / model_id))
        paths.append(str(root / model_id))
        metadata.append({"task": "t", "parent": "p" if model_id == "c1" else ""})
    with ModelIndex.open(root / "index", encoder=StatsEncoder()) as index:
        index.add(paths, metadata=metadata, ids=list(nets), progress=False)
    return root / "index"


@pytest.fixture(scope="module")
def lineage_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lineage_index(tmp_path_factory.mktemp("lineage"))


@pytest.fixture
def lclient(lineage_index: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from zoolens.service import create_app

    with TestClient(create_app(lineage_index, None, max_upload_mb=1)) as c:
        yield c


def test_model_page_shows_recorded_and_recovered_edges(lclient: Any) -> None:
    body = lclient.get("/api/models/p").json()["lineage"]
    assert body["parent"] is None and body["children"] == ["c1"]  # recorded only
    children = {c["id"]: c["how"] for c in body["inferred"]["children"]}
    assert children == {"c1": "recorded", "c2": "weights", "c3": "weights"}
    assert all(0 < c["distance"] < 0.6 for c in body["inferred"]["children"])
    c2 = lclient.get("/api/models/c2").json()["lineage"]
    assert c2["parent"] is None  # nothing recorded ...
    assert c2["inferred"]["parent"]["id"] == "p"  # ... recovered from the weights
    assert c2["inferred"]["near_duplicates"] == []


def test_near_duplicates_on_pages_and_in_search(lclient: Any) -> None:
    u = lclient.get("/api/models/u").json()["lineage"]["inferred"]
    assert u["near_duplicates"] == ["u-copy"]
    hits = lclient.post("/api/search", json={"id": "u"}).json()["results"]
    by_id = {h["id"]: h["lineage"] for h in hits}
    assert by_id["u-copy"]["near_duplicates"] == ["u"]
    assert by_id["c2"] == {"parent": "p", "how": "weights", "near_duplicates": []}
    assert by_id["c1"]["how"] == "recorded"
    assert by_id["p"]["parent"] is None
