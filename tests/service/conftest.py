"""Fixtures for service tests: a small index of tiny MLPs (fake encoder, a quality head,
recorded lineage), checkpoints to upload, a token file, and a real uvicorn server."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")

from index.fake_encoder import StatsEncoder, tiny_net
from zoolens.index import ModelIndex

N_MODELS = 12
TOKEN = "s3cret-token-for-tests"


def model_metadata(i: int) -> dict[str, object]:
    """Two tasks; m1..m3 fine-tuned from m0 (recorded ``parent``)."""
    return {
        "task": "digits" if i % 2 == 0 else "fashion",
        "family": "mlp",
        "accuracy": round(0.5 + 0.04 * i, 3),
        "parent": "m0" if i in (1, 2, 3) else "",
    }


def build_index(path: Path, with_head: bool = True) -> Path:
    """`N_MODELS` tiny nets (seeds 0..11, ids m0..m11) and an ``accuracy`` head."""
    from zoolens.nn.heads import fit_head_on_embeddings

    nets = [tiny_net(i) for i in range(N_MODELS)]
    with ModelIndex.open(path, encoder=StatsEncoder()) as index:
        index.add(
            nets,
            metadata=[model_metadata(i) for i in range(N_MODELS)],
            ids=[f"m{i}" for i in range(N_MODELS)],
            progress=False,
        )
        if with_head:
            ids, z = index.embeddings()
            y = [float(model_metadata(int(i[1:]))["accuracy"]) for i in ids]
            head = fit_head_on_embeddings(
                z,
                y,
                None,
                None,
                label="accuracy",
                encoder_id=index.encoder_id,
                weight_decays=[1e-3],
                steps=20,
            )
            index.save_head(head)
    return path


@pytest.fixture(scope="session")
def built_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_index(tmp_path_factory.mktemp("svc") / "index")


@pytest.fixture
def index_dir(built_index: Path, tmp_path: Path) -> Path:
    """A private copy of the index (tests that write change only theirs)."""
    return Path(shutil.copytree(built_index, tmp_path / "index"))


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token.txt"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def client(index_dir: Path, token_file: Path) -> Iterator[object]:
    from fastapi.testclient import TestClient

    from zoolens.service import create_app

    with TestClient(create_app(index_dir, token_file, max_upload_mb=1)) as c:
        yield c


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``zip``: net 5 as a zipped zoolens directory; ``new``: an unseen net (seed 99) zipped;
    ``safetensors``: net 7's bare weights."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("ckpts")
    out: dict[str, Path] = {}
    for name, seed in (("zip", 5), ("new", 99)):
        tiny_net(seed).save(str(root / name))
        out[name] = root / f"{name}.zip"
        with zipfile.ZipFile(out[name], "w") as zf:
            for f in sorted(os.listdir(root / name)):
                zf.write(root / name / f, f"{name}/{f}")
    out["safetensors"] = root / "m7.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_net(7).state_dict().items()}, out["safetensors"])
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(index_dir: Path, token_file: Path) -> Iterator[str]:
    """A real uvicorn server in a thread on a free port; yields its base URL."""
    with serve(index_dir, token_file) as url:
        yield url


@contextlib.contextmanager
def serve(index_dir: Path, token_file: Path | None) -> Iterator[str]:
    """Serve `index_dir` with uvicorn in a thread on a free port; yields its base URL."""
    import uvicorn

    from zoolens.service import create_app

    app = create_app(index_dir, token_file, max_upload_mb=1)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)
