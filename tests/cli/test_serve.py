"""``zoolens serve``: the real command in a subprocess; one-line errors without the extra or
without an index."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cli_runner import run_zoolens
from index.fake_encoder import StatsEncoder, tiny_net
from zoolens.index import ModelIndex

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_the_api(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn", reason="the serve extra is not installed")
    index = tmp_path / "index"
    with ModelIndex.open(index, encoder=StatsEncoder()) as model_index:
        model_index.add([tiny_net(0), tiny_net(1)], ids=["a", "b"], progress=False)
    token = tmp_path / "token"
    token.write_text("a-long-enough-token\n")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "zoolens.cli", "serve", "--index", str(index)]
    command += ["--port", str(port), "--token-file", str(token), "--max-upload-mb", "2"]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health") as r:
                    health = json.loads(r.read())
                break
            except OSError:
                assert time.monotonic() < deadline, "zoolens serve did not answer"
                time.sleep(0.2)
        assert health["count"] == 2 and health["read_only"] is False
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_without_an_index_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    code, _, err = run_zoolens(capsys, "serve", "--index", str(tmp_path / "none"))
    assert code == 2 and "no zoolens index here" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("missing", ["uvicorn", "fastapi"])
def test_serve_without_the_extra_names_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)
    code, _, err = run_zoolens(capsys, "serve", "--index", "x")
    assert code == 2
    assert f"needs the optional package {missing!r}: pip install 'zoolens[serve]'" in err
    assert len(err.strip().splitlines()) == 1
