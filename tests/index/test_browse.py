"""`ModelIndex` reads for the service: pages, embeddings, the state, heads kept in the index."""

from __future__ import annotations

import numpy as np
import pytest

from zoolens.errors import EncoderMismatchError, ZoolensError
from zoolens.index import ModelIndex
from zoolens.nn.heads import fit_head_on_embeddings

from .fake_encoder import StatsEncoder


@pytest.fixture
def index(tmp_path, nets, encoder):
    with ModelIndex.open(tmp_path / "idx", encoder=encoder) as idx:
        idx.add(
            nets[:10],
            metadata=[{"task": "a" if i < 4 else "b", "acc": i / 10} for i in range(10)],
            ids=[f"n{i}" for i in range(10)],
            progress=False,
        )
        yield idx


def test_page_counts_and_slices(index) -> None:
    total, first = index.page(limit=4)
    assert total == 10 and [r["id"] for r in first] == ["n0", "n1", "n2", "n3"]
    total, rest = index.page(limit=100, offset=8)
    assert [r["id"] for r in rest] == ["n8", "n9"]
    total, only_b = index.page({"task": "b"}, limit=2, offset=1)
    assert total == 6 and [r["id"] for r in only_b] == ["n5", "n6"]
    assert index.page(limit=0)[1] == [] and index.page(offset=50) == (10, [])
    with pytest.raises(ZoolensError, match="offset"):
        index.page(offset=-1)


def test_embeddings_are_the_stored_ones(index) -> None:
    ids, z = index.embeddings()
    assert ids == [f"n{i}" for i in range(10)] and z.shape == (10, index.dim)
    np.testing.assert_array_equal(z[3], index.get("n3", embedding=True)["embedding"])


def test_state_changes_with_every_write(index, nets) -> None:
    before = index.state()
    assert index.state() == before
    index.add([nets[20]], ids=["new"], progress=False)
    after_add = index.state()
    assert after_add[1] > before[1]
    index.remove("new")
    assert index.state()[1] > after_add[1]


def _head(index, label="acc", encoder_id=None):
    _, z = index.embeddings()
    y = [r["metadata"]["acc"] for r in index.records()]
    return fit_head_on_embeddings(
        z,
        y,
        None,
        None,
        label=label,
        encoder_id=encoder_id or index.encoder_id,
        weight_decays=[1e-3],
        steps=10,
    )


def test_heads_kept_with_the_index(index) -> None:
    assert index.heads() == {}
    head = _head(index)
    index.save_head(head)
    index.save_head(head, name="quality")
    heads = index.heads()
    assert sorted(heads) == ["acc", "quality"]
    z = index.get("n2", embedding=True)["embedding"][None]
    assert heads["acc"].predict(z) == pytest.approx(head.predict(z))


def test_heads_of_another_encoder_are_refused_or_skipped(index, tmp_path) -> None:
    other = _head(index, encoder_id=StatsEncoder({"seed": 1}).id)
    with pytest.raises(EncoderMismatchError):
        index.save_head(other)
    other.save(tmp_path / "idx" / "heads" / "stale")
    (tmp_path / "idx" / "heads" / "broken").mkdir()
    assert index.heads() == {}
    with pytest.raises(ZoolensError, match="head name"):
        index.save_head(_head(index), name="../escape")


def test_get_many_equals_get_one_by_one(index) -> None:
    wanted = ["n3", "n0", "gone", "n9"]
    got = index.get_many(wanted, embedding=True)
    assert list(got) != [] and set(got) == {"n0", "n3", "n9"}  # unknown ids left out
    for model_id, rec in got.items():
        one = index.get(model_id, embedding=True)
        np.testing.assert_array_equal(rec.pop("embedding"), one.pop("embedding"))
        one.pop("row")
        assert rec == one
    assert "embedding" not in index.get_many(["n1"])["n1"]
