"""The index commands, run as a user runs them: in a subprocess, reading stdout / stderr / exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from .conftest import HERE
from .fake_encoder import StatsEncoder

# Registers the test encoder, then runs the real entry point with the real argv.
RUN_WITH_FAKE_ENCODER = "import fake_encoder; from zoolens.cli import main; main()"


def start(*args: str, fake_encoder: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}
    prefix = ["-c", RUN_WITH_FAKE_ENCODER] if fake_encoder else ["-m", "zoolens.cli"]
    return subprocess.Popen(
        [sys.executable, *prefix, *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def zoolens(*args: str, fake_encoder: bool = False) -> subprocess.CompletedProcess:
    return finish(start(*args, fake_encoder=fake_encoder))


@pytest.fixture(scope="module")
def world(tmp_path_factory, nets):
    """Saved nets m0..m3, a zoo z0..z2, a corrupt file, a saved encoder, and an index of them."""
    root = tmp_path_factory.mktemp("cli")
    for i in range(4):
        nets[i].save(str(root / "models" / f"m{i}"))
    for i in range(3):
        nets[10 + i].save(str(root / "zoo" / "models" / f"z{i}"))
    pd.DataFrame(
        {
            "id": ["z0", "z1", "z2"],
            "task": ["digits", "fashion", "digits"],
            "accuracy": [0.97, 0.6, 0.91],
        }
    ).to_parquet(root / "zoo" / "manifest.parquet")
    (root / "models" / "broken.onnx").write_bytes(b"\x00 not onnx")
    StatsEncoder().save(str(root / "encoder"))
    index = str(root / "idx")
    models = [str(root / "models" / f) for f in ("m0", "m1", "broken.onnx", "m2", "m3")]
    add = zoolens(
        "index",
        "add",
        *models,
        str(root / "zoo"),
        "--index",
        index,
        "--encoder",
        str(root / "encoder"),
        "--meta",
        "owner=me",
        "--meta",
        "batch=1",
        "--json",
        fake_encoder=True,
    )
    # Commands that do not change the index run side by side (each spends seconds importing).
    runs = {
        "add_bad": start(
            "index",
            "add",
            str(root / "models" / "broken.onnx"),
            "--index",
            index,
            fake_encoder=True,
        ),
        "search_path": start(
            "search",
            str(root / "models" / "m1"),
            "--index",
            index,
            "-k",
            "3",
            "--where",
            "accuracy>=0.9",
            "--json",
            fake_encoder=True,
        ),
        "search_id": start("search", "m2", "--index", index, "-k", "2", "--where", "task=fashion"),
        "ls": start("index", "ls", "--index", index, "--json"),
    }
    return root, index, {"add": add, **{k: finish(p) for k, p in runs.items()}}


def test_add_skips_the_bad_file_and_reports_it(world):
    root, _, runs = world
    add = runs["add"]
    assert add.returncode == 0, add.stderr
    out = json.loads(add.stdout)
    assert out["added"] == ["m0", "m1", "m2", "m3", "z0", "z1", "z2"] and out["count"] == 7
    assert [f["item"] for f in out["failed"]] == [str(root / "models" / "broken.onnx")]
    lines = add.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.onnx" in lines[0]


def test_add_of_only_bad_files_exits_2(world):
    run = world[2]["add_bad"]
    assert run.returncode == 2 and "broken.onnx" in run.stderr


def test_search_json(world, nets):
    root, _, runs = world
    run = runs["search_path"]
    assert run.returncode == 0, run.stderr
    hits = json.loads(run.stdout)["hits"]
    assert sorted(h["id"] for h in hits) == ["z0", "z2"]  # only two match: no padding rows
    encoder = StatsEncoder()
    q = encoder.encode([nets[1]])[0]
    for h in hits:
        assert set(h) >= {"id", "source", "score", "metadata"}
        assert h["metadata"]["accuracy"] >= 0.9 and h["metadata"]["owner"] == "me"
        assert h["source"] == str(root / "zoo" / "models" / h["id"])
        want = float(q @ encoder.encode([nets[10 + int(h["id"][1])]])[0])
        assert h["score"] == pytest.approx(want, abs=1e-5)


def test_search_by_id_prints_a_table(world):
    run = world[2]["search_id"]
    assert run.returncode == 0, run.stderr
    assert "z1" in run.stdout and "m0" not in run.stdout


def test_ls_rm_stats_json(world):
    _, index, runs = world
    ls = json.loads(runs["ls"].stdout)
    assert [r["id"] for r in ls] == ["m0", "m1", "m2", "m3", "z0", "z1", "z2"]
    interface = {"input_shape": [4], "n_outputs": 2}  # recorded for every Net added
    assert ls[0]["metadata"] == {"owner": "me", "batch": 1, **interface}
    assert ls[4]["metadata"] == {
        "task": "digits",
        "accuracy": 0.97,
        "owner": "me",
        "batch": 1,
        **interface,
    }
    rm = zoolens("index", "rm", "m3", "--index", index, "--json")
    assert rm.returncode == 0 and json.loads(rm.stdout) == {"removed": ["m3"], "count": 6}
    stats = json.loads(zoolens("index", "stats", "--index", index, "--json").stdout)
    assert stats["count"] == 6 and stats["encoder"] == StatsEncoder().id
    assert stats["dim"] == 16 and stats["kind"] == "flat" and stats["size_bytes"] > 0
    missing = zoolens("index", "stats", "--index", index + "-nope", "--json")
    assert missing.returncode == 2 and "no zoolens index" in missing.stderr


def test_add_kind_is_recorded_for_later_adds(tmp_path, nets):
    for i in range(2):
        nets[i].save(str(tmp_path / f"m{i}"))
    StatsEncoder().save(str(tmp_path / "encoder"))
    ix, plain, m0, m1 = (str(tmp_path / p) for p in ("ix", "plain", "m0", "m1"))
    enc = ("--encoder", str(tmp_path / "encoder"))
    runs = [
        start(
            "index",
            "add",
            m0,
            "-i",
            ix,
            *enc,
            "--kind",
            "ivfpq",
            "--nlist",
            "8",
            "--pq-m",
            "4",
            fake_encoder=True,
        ),
        start("index", "add", m0, "-i", plain, *enc, fake_encoder=True),
        start("index", "add", m0, "-i", str(tmp_path / "bad"), *enc, "--kind", "annoy"),
        start("index", "add", m0, "-i", str(tmp_path / "bad"), *enc, "--pq-m", "8"),
    ]
    made, made_plain, bad_kind, lone_pq = (finish(p) for p in runs)
    assert made.returncode == 0 and made_plain.returncode == 0, made.stderr + made_plain.stderr
    assert bad_kind.returncode != 0 and "annoy" in bad_kind.stderr
    assert lone_pq.returncode != 0 and "--kind" in lone_pq.stderr
    again = zoolens("index", "add", m1, "-i", ix, fake_encoder=True)  # no --kind: kept
    assert again.returncode == 0, again.stderr
    stats = [json.loads(zoolens("index", "stats", "-i", d, "--json").stdout) for d in (ix, plain)]
    assert stats[0]["count"] == 2 and stats[0]["kind"] == "flat"  # IVF-PQ needs 10 000 to train
    assert (stats[0]["kind_setting"], stats[0]["ivf_nlist"], stats[0]["pq_m"]) == ("ivfpq", 8, 4)
    assert (stats[1]["kind_setting"], stats[1]["ivf_nlist"], stats[1]["pq_m"]) == ("auto", None, 64)
