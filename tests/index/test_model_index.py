"""ModelIndex: add, search against brute force, filters, dedup, reopen, encoders, caches."""

from __future__ import annotations

import glob
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import save_file

from zoolens.errors import EncoderMismatchError, ZoolensError
from zoolens.errors import IndexError as IndexStoreError
from zoolens.index import NO_HIT, IndexConfig, ModelIndex

from .fake_encoder import StatsEncoder

#: The interface metadata the index records for each of the tiny 4→8→2 nets.
INTERFACE = {"input_shape": [4], "n_outputs": 2}


def meta(i: int) -> dict:
    return {"task": "digits" if i % 2 else "fashion", "accuracy": i / 30, "seed": i}


@pytest.fixture
def filled(tmp_path, encoder, nets):
    """An index of the 30 tiny nets with `meta(i)`, ids n0..n29."""
    index = ModelIndex.open(tmp_path / "idx", encoder=encoder)
    index.add(
        nets,
        metadata=[meta(i) for i in range(30)],
        ids=[f"n{i}" for i in range(30)],
        batch_size=8,
        progress=False,
    )
    yield index
    index.close()


def brute_force(index, queries, k, keep=lambda m: True):
    """Reference ranking: every stored embedding, numpy, float64."""
    recs = [index.get(i, embedding=True) for i in index.ids()]
    recs = [r for r in recs if keep(r["metadata"])]
    emb = np.stack([r["embedding"] for r in recs]).astype(np.float64)
    scores = queries.astype(np.float64) @ emb.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.array([r["id"] for r in recs])[order]


def test_search_equals_brute_force(filled, nets, encoder):
    queries = encoder.encode(nets[:6])
    scores, ids = filled.search(queries, k=7)
    ref_scores, ref_ids = brute_force(filled, queries, 7)
    assert scores.shape == ids.shape == (6, 7) and ids.dtype == object
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    assert list(ids[:, 0]) == [f"n{i}" for i in range(6)]  # each net finds itself first


@pytest.mark.parametrize(
    ("where", "keep"),
    [
        ({"task": "digits"}, lambda m: m["task"] == "digits"),
        ({"accuracy": (">=", 0.8)}, lambda m: m["accuracy"] >= 0.8),
        (
            {"accuracy": [(">", 0.1), ("<", 0.7)], "task": "fashion"},
            lambda m: 0.1 < m["accuracy"] < 0.7 and m["task"] == "fashion",
        ),
        (["accuracy>=0.5", "seed!=20"], lambda m: m["accuracy"] >= 0.5 and m["seed"] != 20),
    ],
)
def test_filters_apply_before_top_k(filled, nets, encoder, where, keep):
    if isinstance(where, list):
        from zoolens.index import parse_where

        where = parse_where(where)
    queries = encoder.encode(nets[:4])
    scores, ids = filled.search(queries, k=5, where=where)
    ref_scores, ref_ids = brute_force(filled, queries, 5, keep)
    np.testing.assert_array_equal(ids, ref_ids)  # k hits come back: 5 of the matching models
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


def test_fewer_matches_than_k_pad_with_no_hit(filled, nets):
    scores, ids = filled.search(nets[0], k=6, where={"accuracy": (">", 0.9)})  # n28, n29
    assert sorted(ids[0, :2]) == ["n28", "n29"]
    assert all(i == NO_HIT for i in ids[0, 2:]) and np.isneginf(scores[0, 2:]).all()
    scores, ids = filled.search(nets[0], k=3, where={"task": "none"})
    assert (ids == NO_HIT).all() and np.isneginf(scores).all()


def test_query_forms(filled, nets, encoder, model_dir):
    vec = encoder.encode([nets[3]])[0]
    for query in (nets[3], model_dir(3), "n3", vec, vec[None], [nets[3]]):
        scores, ids = filled.search(query, k=2)
        assert ids.shape == (1, 2) and ids[0, 0] == "n3" and scores[0, 0] == pytest.approx(1.0)
    assert filled.search([nets[1], nets[2]], k=1)[1].tolist() == [["n1"], ["n2"]]
    with pytest.raises(ZoolensError):
        filled.search("no-such-model", k=1)
    with pytest.raises(ZoolensError):
        filled.search(np.ones(5), k=1)


def test_reopen_gives_identical_results(filled, nets, encoder):
    queries = encoder.encode(nets[::3])
    before = filled.search(queries, k=8, where={"task": "digits"})
    path = filled.path
    filled.close()
    for enc in (None, encoder, StatsEncoder()):
        with ModelIndex.open(path, encoder=enc, create=False) as again:
            after = again.search(queries, k=8, where={"task": "digits"})
            np.testing.assert_array_equal(before[0], after[0])
            np.testing.assert_array_equal(before[1], after[1])
            assert again.get("n4")["metadata"] == {**meta(4), **INTERFACE}


def test_duplicates_are_not_added_twice(filled, nets, model_dir):
    report = filled.add([model_dir(3), nets[5], nets[5]], progress=False)
    assert report.added == [] and len(filled) == 30
    assert [existing for _, existing in report.duplicates] == ["n3", "n5", "n5"]


def test_default_ids_and_suffixes(tmp_path, encoder, nets, model_dir):
    weights = tmp_path / "files" / "weights_only.safetensors"
    weights.parent.mkdir()
    save_file({k: v.contiguous() for k, v in nets[7].state_dict().items()}, str(weights))
    with ModelIndex.open(tmp_path / "idx", encoder=encoder) as index:
        report = index.add([model_dir(0), str(weights)], progress=False)
        assert report.added == ["m0", "weights_only"]
        assert index.get("m0")["source"] == os.path.abspath(model_dir(0))
        assert index.add(nets[1], ids=["m0"], progress=False).added == ["m0-2"]
        assert index.add(nets[2], ids=["m0"], progress=False).added == ["m0-3"]
        assert index.add(nets[4], progress=False).added == [f"net-{nets[4].content_hash()[:12]}"]


def test_bad_files_are_reported_and_skipped(tmp_path, encoder, model_dir):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not an onnx file")
    plain = tmp_path / "plain"
    plain.mkdir()
    with ModelIndex.open(tmp_path / "idx", encoder=encoder) as index:
        report = index.add(
            [model_dir(0), str(corrupt), str(tmp_path / "missing.pt"), str(plain), model_dir(1)],
            batch_size=2,
            progress=False,
        )
        assert report.added == ["m0", "m1"]
        failed = dict(report.failed)
        assert set(failed) == {str(corrupt), str(tmp_path / "missing.pt"), str(plain)}
        assert "recursive" in failed[str(plain)]
        assert index.add([str(tmp_path)], recursive=True, progress=False).added == []


def test_add_zoo_rows_become_metadata(tmp_path, encoder, nets):
    zoo = tmp_path / "zoo"
    for i in range(4):
        nets[i].save(str(zoo / "models" / f"z{i}"))
    pd.DataFrame(
        {
            "id": [f"z{i}" for i in range(4)],
            "task": ["digits", "digits", "fashion", "fashion"],
            "accuracy": [0.9, 0.5, np.nan, 0.95],
            "seed": np.arange(4),
        }
    ).to_parquet(zoo / "manifest.parquet")
    with ModelIndex.open(tmp_path / "idx", encoder=encoder) as index:
        assert index.add_zoo(zoo, progress=False).added == ["z0", "z1", "z2", "z3"]
        assert index.get("z2")["metadata"] == {
            "task": "fashion",
            "accuracy": None,
            "seed": 2,
            **INTERFACE,
        }
        _, ids = index.search(nets[0], k=4, where={"accuracy": (">=", 0.9)})
        assert sorted(ids[0, :2]) == ["z0", "z3"] and ids[0, 2] == NO_HIT
    with ModelIndex.open(tmp_path / "idx2", encoder=encoder) as index:  # a zoo given as a path
        assert len(index.add([str(zoo)], metadata={"owner": "me"}, progress=False).added) == 4
        assert index.get("z1")["metadata"]["owner"] == "me"


def test_remove(filled, nets):
    assert filled.remove(["n0", "n1"]) == ["n0", "n1"]
    _, ids = filled.search(nets[:2], k=28)
    assert not {"n0", "n1"} & set(ids.ravel()) and len(filled) == 28
    with pytest.raises(IndexStoreError):
        filled.remove(["n2", "nope"])
    assert "n2" in filled  # all or nothing
    assert filled.remove(["n2", "nope"], missing_ok=True) == ["n2"]
    with pytest.raises(IndexStoreError):
        filled.get("n0")


def test_encoder_mismatch_is_refused(filled):
    path = filled.path
    filled.close()
    with pytest.raises(EncoderMismatchError, match="reembed"):
        ModelIndex.open(path, encoder=StatsEncoder({"seed": 1}))


def test_reembed_switches_encoder(tmp_path, encoder, nets, model_dir):
    new = StatsEncoder({"seed": 1, "dim": 12})
    with ModelIndex.open(tmp_path / "idx", encoder=encoder) as index:
        index.add([model_dir(i) for i in range(6)], progress=False)
        index.add(nets[10], ids=["memory"], progress=False)
        with pytest.raises(IndexStoreError, match="drop_missing"):
            index.reembed(new, progress=False)
        assert index.encoder_id == encoder.id  # refused means untouched
        report = index.reembed(new, progress=False, drop_missing=True)
        assert [f for f, _ in report.failed] == ["memory"] and len(index) == 6
        assert index.encoder_id == new.id and index.stats()["dim"] == 12
        queries = new.encode(nets[:6])
        np.testing.assert_array_equal(
            index.search(queries, k=3)[1], brute_force(index, queries, 3)[1]
        )
    with ModelIndex.open(tmp_path / "idx", encoder=None) as index:
        assert index.encoder.id == new.id and index.search(nets[2], k=1)[1][0, 0] == "m2"


def test_empty_index_may_switch_encoder(tmp_path, encoder):
    ModelIndex.open(tmp_path / "idx", encoder=encoder).close()
    with ModelIndex.open(tmp_path / "idx", encoder=StatsEncoder({"seed": 2})) as index:
        assert index.encoder_id == StatsEncoder({"seed": 2}).id


def test_missing_stale_and_corrupt_caches_are_rebuilt(tmp_path, encoder, nets):
    path = tmp_path / "idx"
    with ModelIndex.open(path, encoder=encoder) as index:
        index.add(nets[:10], ids=[f"n{i}" for i in range(10)], progress=False)
    old = glob.glob(str(path / "vectors.*.faiss"))
    assert len(old) == 1
    shutil.copy(old[0], tmp_path / "old.faiss")
    with ModelIndex.open(path, encoder=encoder) as index:
        index.add(nets[10:15], ids=[f"n{i}" for i in range(10, 15)], progress=False)
        index.remove(["n0"])
        expected = index.search(nets[:15], k=5)
    queries = nets[:15]

    def check(stats_cache: str) -> None:
        with ModelIndex.open(path, encoder=None, create=False) as again:
            assert again.stats()["vector_cache"] == stats_cache
            got = again.search(queries, k=5)
            np.testing.assert_array_equal(got[1], expected[1])
            np.testing.assert_array_equal(got[0], expected[0])
        assert ModelIndex.open(path, encoder=None).stats()["vector_cache"] == "fresh"

    for f in glob.glob(str(path / "vectors.*.faiss")):  # stale: only the old version is left
        os.remove(f)
    shutil.copy(tmp_path / "old.faiss", old[0])
    check("stale")
    for f in glob.glob(str(path / "vectors.*.faiss")):  # missing
        os.remove(f)
    check("missing")
    (current,) = glob.glob(str(path / "vectors.*.faiss"))  # corrupt
    with open(current, "wb") as f:
        f.write(b"garbage")
    check("fresh")


def test_readers_search_while_a_writer_adds(tmp_path, encoder, nets):
    writer = ModelIndex.open(tmp_path / "idx", encoder=encoder)
    writer.add(nets[:5], ids=[f"n{i}" for i in range(5)], progress=False)
    reader = ModelIndex.open(tmp_path / "idx", encoder=None, autosave=False)
    assert reader.search(nets[7], k=10)[1][0, 5] == NO_HIT
    writer.add(nets[5:8], ids=[f"n{i}" for i in range(5, 8)], progress=False)
    assert reader.search(nets[7], k=1)[1][0, 0] == "n7"  # sees the committed batch
    with writer.catalog.write() as conn:  # a write in flight: the reader is not blocked ...
        writer.catalog.delete_rows(conn, [writer.get("n7")["row"]])
        assert reader.search(nets[7], k=1)[1][0, 0] == "n7"  # ... and sees its own snapshot
    assert reader.search(nets[7], k=1)[1][0, 0] != "n7"
    with writer.catalog.write() as conn:  # rows deleted behind the index's back
        conn.execute("DELETE FROM models WHERE id = 'n6'")
    assert "n6" not in reader.search(nets[6], k=3)[1][0]
    reader.close()
    writer.close()


def test_auto_kind_switches_to_hnsw(tmp_path, encoder, nets):
    config = IndexConfig(hnsw_threshold=12)
    with ModelIndex.open(tmp_path / "idx", encoder=encoder, config=config) as index:
        index.add(nets[:10], progress=False)
        assert index.stats()["kind"] == "flat"
        index.add(nets[10:], ids=[f"n{i}" for i in range(10, 30)], progress=False)
        assert index.stats()["kind"] == "hnsw"
        assert index.search(nets[20], k=1)[1][0, 0] == "n20"
    with ModelIndex.open(tmp_path / "idx", encoder=None, kind="flat") as index:
        assert index.search(nets[20], k=1)[1][0, 0] == "n20" and index.stats()["kind"] == "flat"
    with ModelIndex.open(tmp_path / "idx", encoder=None) as index:  # the kind was recorded
        assert index.config.kind == "flat"


def test_add_embeddings(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    with ModelIndex.open(tmp_path / "idx", encoder=None) as index:
        with pytest.raises(IndexStoreError):
            index.add_embeddings(x, [f"v{i}" for i in range(50)])
        added = index.add_embeddings(
            x,
            [f"v{i}" for i in range(50)],
            encoder_id="random",
            content_hashes=[f"h{i % 40}" for i in range(50)],
            batch_size=16,
        )
        assert added == [f"v{i}" for i in range(40)]  # v40.. repeat hashes h0..h9
        with pytest.raises(EncoderMismatchError):
            index.add_embeddings(x[:1], ["w"], encoder_id="other")
        assert index.search(x[3], k=1)[1][0, 0] == "v3"
        stats = index.stats()
        assert stats["count"] == 40 and stats["encoder"] == "random" and stats["dim"] == 8
        assert stats["size_bytes"] > 0 and stats["kind"] == "flat"


def test_concurrent_searches_equal_one_thread_while_a_writer_adds(tmp_path):
    """8 threads search (half of them filtered) while a writer adds and removes rows: the
    answers over the rows it never touches equal the single-thread ones, and probes that
    rank its rows see each row once, with its true score."""
    import threading

    rng = np.random.default_rng(0)
    base = np.abs(rng.standard_normal((500, 16))).astype(np.float32)
    base[:, 8:] = 0  # base and queries live in dims 0..7; the writer's rows in 8..15
    queries = np.abs(rng.standard_normal((24, 16))).astype(np.float32)
    queries[:, 8:] = 0
    probe = np.zeros(16, dtype=np.float32)
    probe[8:] = 1 / np.sqrt(8)  # ranks only the writer's rows above 0
    metas = [{"task": "digits" if i % 3 else "fashion"} for i in range(500)]
    index = ModelIndex.open(tmp_path / "idx", encoder=None)
    index.add_embeddings(base, [f"b{i}" for i in range(500)], metadata=metas, encoder_id="r")
    wheres = [None, {"task": "fashion"}]
    expected = {w is None: index.search(queries, k=10, where=w) for w in wheres}
    stop, errors, answers, probes, written = threading.Event(), [], [], [], {}

    def write() -> None:
        n = 0
        while not stop.is_set():
            extra = np.abs(rng.standard_normal((10, 16))).astype(np.float32)
            extra[:, :8] = 0  # orthogonal to every query: score 0 < every top-10 score
            ids = [f"w{n}-{j}" for j in range(10)]
            unit = extra / np.linalg.norm(extra, axis=1, keepdims=True)
            written.update(zip(ids, unit, strict=True))
            index.add_embeddings(extra, ids, metadata=[{"task": "fashion"}] * 10)
            index.remove(ids[::2])
            n += 1

    def read(t: int) -> None:
        try:
            for r in range(40):
                where = wheres[(t + r) % 2]
                q = (t * 7 + r) % len(queries)
                scores, ids = index.search(queries[q], k=10, where=where)
                answers.append((where is None, q, scores[0], ids[0]))
                probes.append(index.search(probe, k=10, where=where))
        except BaseException as e:  # reported by the test thread
            errors.append(e)

    writer = threading.Thread(target=write)
    readers = [threading.Thread(target=read, args=(t,)) for t in range(8)]
    writer.start()
    for t in readers:
        t.start()
    for t in readers:
        t.join(120)
    stop.set()
    writer.join(120)
    assert errors == [] and len(answers) == 320
    assert index.stats()["version"] > 2  # the writer did commit while they searched
    for unfiltered, q, scores, ids in answers:
        ref_scores, ref_ids = expected[unfiltered]
        np.testing.assert_array_equal(ids, ref_ids[q])
        np.testing.assert_allclose(scores, ref_scores[q], rtol=1e-6)
    for scores, ids in probes:
        hits = [i for s, i in zip(scores[0], ids[0], strict=True) if i != NO_HIT and s > 1e-6]
        assert len(hits) == len(set(hits))  # no row twice
        true = [float(written[i] @ probe) for i in hits]
        np.testing.assert_allclose(scores[0][: len(hits)], true, rtol=1e-5)
    index.close()


def test_searches_run_side_by_side(tmp_path, monkeypatch):
    """Two searches are inside FAISS at once; searches that must catch up with a write hold
    the vectors alone and never meet (the sensitivity twin)."""
    import threading

    from zoolens.index.vectors import VectorIndex

    x = np.random.default_rng(1).standard_normal((50, 8)).astype(np.float32)
    index = ModelIndex.open(tmp_path / "idx", encoder=None)
    metas = [{"task": "a"}] * 50
    index.add_embeddings(x, [f"v{i}" for i in range(50)], metadata=metas, encoder_id="r")
    where = {"task": "a"}  # filtered: not batched (see test_batching), each its own call
    index.search(x[0], k=1, where=where)  # in step: later searches take the shared path
    search = VectorIndex.search

    def meet(timeout: float):
        barrier = threading.Barrier(2, timeout=timeout)

        def waiting_search(self, *args, **kwargs):
            barrier.wait()
            return search(self, *args, **kwargs)

        monkeypatch.setattr(VectorIndex, "search", waiting_search)
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                assert index.search(x[i], k=1, where=where)[1][0, 0] == f"v{i}"
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        return errors

    assert meet(10.0) == []
    monkeypatch.setattr(index, "in_step", lambda: False)  # every search must catch up: alone
    errors = meet(0.5)
    assert errors and all(isinstance(e, threading.BrokenBarrierError) for e in errors)
    index.close()
