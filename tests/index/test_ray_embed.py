"""`zoolens embed --ray` and `zoolens index add --ray` on a real two-node local Ray cluster.

The cluster is this test's own: ``ray start --block`` processes in new sessions under a unique
``--temp-dir``, stopped by signalling their process groups (``ray stop`` would stop every Ray
process on the machine).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

import zoolens
from zoolens.index import ModelIndex
from zoolens.nn import load_encoder

from .fake_encoder import tiny_net

pytest.importorskip("ray.data")
pytestmark = pytest.mark.slow

BIN = os.path.dirname(sys.executable)
SRC = os.path.dirname(os.path.dirname(os.path.abspath(zoolens.__file__)))
N_MODELS = 40
TOKEN = secrets.token_hex(32)  # the cluster's own auth token (not ~/.ray's)


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": TOKEN,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [os.path.join(BIN, "ray"), "start", "--block", "--num-cpus=1", *args],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stopped without touching others
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the node's process group, then SIGKILL whatever of it is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=10)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _nodes_alive(address: str) -> int:
    got = subprocess.run(
        [os.path.join(BIN, "ray"), "status", f"--address={address}"],
        env=_env(),
        capture_output=True,
        text=True,
    )
    return got.stdout.count("node_") if got.returncode == 0 else 0


@pytest.fixture(scope="module")
def cluster():
    """The address of a head node plus one worker node, one CPU each."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    temp = tempfile.mkdtemp(prefix="zlray", dir="/tmp")  # short: Ray's socket paths are limited
    head = _ray_start("--head", f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false")
    procs = [head]
    try:
        deadline = time.time() + 120
        while not _nodes_alive(address):
            assert head.poll() is None and time.time() < deadline, "ray head did not start"
            time.sleep(1)
        procs.append(_ray_start(f"--address={address}"))
        while _nodes_alive(address) < 2:
            assert procs[1].poll() is None and time.time() < deadline, "ray worker did not join"
            time.sleep(1)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray_models")
    paths = [str(root / f"m{i:02d}") for i in range(N_MODELS)]
    for i, path in enumerate(paths):
        tiny_net(i).save(path)
    return paths, load_encoder("default").encode(paths)


def _zoolens(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "zoolens.cli", *args],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _count(index_dir: str) -> int:
    try:
        with sqlite3.connect(os.path.join(index_dir, "catalog.sqlite"), timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM models").fetchone()[0])
    except sqlite3.Error:
        return 0


def _vectors_by_source(index_dir: str) -> dict[str, np.ndarray]:
    with ModelIndex.open(index_dir, encoder=None) as index:
        return {
            r["source"]: index.get(r["id"], embedding=True)["embedding"] for r in index.records()
        }


def test_embed_on_ray_equals_local(cluster, models, tmp_path):
    paths, local = models
    out = tmp_path / "z.npy"
    proc = _zoolens("embed", *paths[:6], "--out", str(out), "--ray", cluster, "-b", "2")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    z = np.load(out)
    assert z.shape == (6, local.shape[1])
    assert np.abs(z - local[:6]).max() <= 1e-5
    assert np.abs(z - local[1:7]).max() > 1e-2  # order matters: a shifted answer is caught


def test_killed_index_add_on_ray_stays_consistent_and_resumes(cluster, models, tmp_path):
    paths, local = models
    index_dir = str(tmp_path / "ix")
    args = ("index", "add", *paths, "-i", index_dir, "--ray", cluster, "--batch-size", "2")
    first = _zoolens(*args)
    deadline = time.time() + 300
    while _count(index_dir) < 2 and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)  # mid-run: some batches committed, not all
    first.wait(timeout=30)
    partial = _count(index_dir)
    assert partial >= 2
    got = _vectors_by_source(index_dir)  # opens, reconciles, answers
    assert len(got) == partial and set(got) <= set(paths)
    second = _zoolens(*args, "--json")
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err.decode()[-2000:]
    report = json.loads(out)
    assert len(report["added"]) == N_MODELS - partial  # only what was missing was embedded
    assert len(report["duplicates"]) == partial and report["count"] == N_MODELS
    got = _vectors_by_source(index_dir)
    assert sorted(got) == sorted(paths)  # each model once: the re-run skipped the committed
    diff = max(np.abs(got[p] - local[i]).max() for i, p in enumerate(paths))
    assert diff <= 1e-5
    with ModelIndex.open(index_dir, encoder=None) as index:
        _, ids = index.search(local[:3], k=1)
        assert [index.get(i)["source"] for i in ids[:, 0]] == paths[:3]
