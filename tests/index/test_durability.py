"""A writer killed with SIGKILL mid-add loses nothing it committed; readers search meanwhile."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np

from zoolens.index import ModelIndex

from .conftest import HERE
from .fake_encoder import StatsEncoder, tiny_net

WRITER = """
import sys
import fake_encoder
from zoolens.index import ModelIndex

path, start = sys.argv[1], int(sys.argv[2])
index = ModelIndex.open(path, encoder=fake_encoder.StatsEncoder())
for call in range(start, start + 10_000):
    seeds = [call * 6 + j for j in range(6)]
    report = index.add([fake_encoder.tiny_net(s) for s in seeds], ids=[f"s{s}" for s in seeds],
                       metadata=[{"seed": s} for s in seeds], batch_size=2, progress=False)
    print(" ".join(report.added), flush=True)
"""


def run_and_kill(path: str, start: int, min_lines: int) -> list[str]:
    """Start a writer, kill -9 it at a random moment after `min_lines` add() calls returned."""
    env = {**os.environ, "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, path, str(start)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    reader = None
    try:
        while len(lines) < min_lines:
            line = proc.stdout.readline()
            assert line, f"writer died early: {proc.stderr.read()}"
            lines.append(line)
            # Another process searches while the writer goes on: never blocked, sees commits.
            reader = reader or ModelIndex.open(path, encoder=None, create=False, autosave=False)
            _, ids = reader.search(np.ones(16, dtype=np.float32), k=10_000)
            assert {i for ln in lines for i in ln.split()} <= set(ids[0])
        time.sleep(random.Random(start).uniform(0.0, 0.15))  # land anywhere in the next add
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if reader is not None:
            reader.close()
    assert proc.returncode == -signal.SIGKILL
    return [i for line in lines for i in line.split()]


def check_consistent(path: str, committed: list[str]) -> int:
    conn = sqlite3.connect(os.path.join(path, "catalog.sqlite"))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    encoder = StatsEncoder()
    with ModelIndex.open(path, encoder=encoder, create=False) as index:
        ids = index.ids()
        assert set(committed) <= set(ids)  # nothing acknowledged is lost
        seeds = [int(i[1:]) for i in ids]
        expected = encoder.encode([tiny_net(s) for s in seeds])
        stored = np.stack([index.get(i, embedding=True)["embedding"] for i in ids])
        np.testing.assert_array_equal(stored, expected)  # every row intact
        assert [index.get(i)["metadata"]["seed"] for i in ids] == seeds
        _, hits = index.search(stored, k=1)
        assert list(hits[:, 0]) == ids  # and searchable
        return len(ids)


def test_sigkill_mid_add_loses_nothing_committed(tmp_path):
    path = str(tmp_path / "idx")
    committed = run_and_kill(path, start=0, min_lines=3)
    n = check_consistent(path, committed)
    with ModelIndex.open(path, encoder=StatsEncoder()) as index:  # and it takes writes again
        report = index.add(
            [tiny_net(s) for s in (90_000, 90_001)],
            ids=["s90000", "s90001"],
            metadata=[{"seed": 90_000}, {"seed": 90_001}],
            progress=False,
        )
        assert report.added == ["s90000", "s90001"]
    assert check_consistent(path, committed) == n + 2
