"""Uploads and writes: size limit, temporary files, unsafe zips and pickles, bearer token."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from zoolens.errors import LoadError
from zoolens.service.uploads import received, unzip_model

from .conftest import N_MODELS, TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary files of the server go here, so a test can see they are gone."""
    d = tmp_path / "server-tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def _one_line_4xx(r: Any, status: int | None = None) -> str:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
    return detail


def test_upload_over_the_limit_is_413_and_leaves_nothing(client: Any, private_tmp: Path) -> None:
    big = b"\0" * (1 << 20) + b"x"  # the client fixture allows 1 MB
    r = client.post("/api/search", files={"file": ("big.onnx", big)})
    assert "limit" in _one_line_4xx(r, 413)
    # a body that hides its length (chunked) is cut while it streams
    r = client.post(
        "/api/search",
        content=iter([b"--b\r\n", big, b"\r\n--b--\r\n"]),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    _one_line_4xx(r, 413)
    assert list(private_tmp.iterdir()) == []
    assert client.get("/api/health").status_code == 200


def test_small_uploads_are_deleted_afterwards(
    client: Any, private_tmp: Path, checkpoints: dict
) -> None:
    with checkpoints["zip"].open("rb") as f:
        assert client.post("/api/search", files={"file": ("a.zip", f)}).status_code == 200
    assert [p.name for p in private_tmp.iterdir() if p.name.startswith("zoolens-")] == []


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        ("junk.onnx", b"this is not a protobuf at all" * 10, "junk.onnx"),
        ("junk.safetensors", b"\x05\x00\x00\x00\x00\x00\x00\x00{}", "junk.safetensors"),
        ("empty.pt", b"", "empty"),
        ("notes.txt", b"hello", "extension"),
        ("noext", b"hello", "extension"),
        ("bad.zip", b"PK\x03\x04 broken", "zip"),
    ],
)
def test_bad_uploads_get_a_reason(client: Any, name: str, data: bytes, words: str) -> None:
    r = client.post("/api/search", files={"file": (name, data)})
    assert words in _one_line_4xx(r)
    assert client.get("/api/health").json()["status"] == "ok"


class _Trap:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("touch PWNED",))


def test_a_pickle_with_code_is_refused_not_run(
    client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    torch.save({"w": _Trap()}, tmp_path / "trap.pt")
    r = client.post(
        "/api/search", files={"file": ("model.pt", (tmp_path / "trap.pt").read_bytes())}
    )
    assert "refuses to unpickle code" in _one_line_4xx(r, 400)
    assert not (tmp_path / "PWNED").exists()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("evil", ["../evil.onnx", "/abs/evil.onnx", "a/../../evil.onnx"])
def test_zip_entries_that_leave_the_archive_are_refused(
    client: Any, tmp_path: Path, evil: str
) -> None:
    r = client.post("/api/search", files={"file": ("m.zip", _zip({evil: b"x"}))})
    assert "leaves the archive" in _one_line_4xx(r, 400)
    with pytest.raises(LoadError, match="leaves the archive"):
        archive = tmp_path / "m.zip"
        archive.write_bytes(_zip({evil: b"x"}))
        unzip_model(str(archive), str(tmp_path / "out"), 1 << 20)
    assert not (tmp_path / "evil.onnx").exists()


def test_a_symlink_in_a_zip_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("m/arch.json")
        info.external_attr = 0o120777 << 16  # a symlink entry
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(LoadError, match="leaves the archive"):
        unzip_model(str(archive), str(tmp_path / "out"), 1 << 20)


def test_received_cleans_up_even_when_the_block_fails(private_tmp: Path) -> None:
    with pytest.raises(RuntimeError), received(io.BytesIO(b"abc"), "x.onnx", 100) as path:
        assert os.path.exists(path)
        raise RuntimeError
    assert list(private_tmp.iterdir()) == []
    with pytest.raises(LoadError, match="limit"), received(io.BytesIO(b"x" * 101), "x.onnx", 100):
        pass


def test_writes_need_the_token(client: Any, checkpoints: dict) -> None:
    def add(headers: dict[str, str]) -> Any:
        with checkpoints["new"].open("rb") as f:
            return client.post(
                "/api/models",
                files={"file": ("new.zip", f)},
                data={"id": "fresh", "metadata": '{"task": "digits"}'},
                headers=headers,
            )

    assert "Bearer" in _one_line_4xx(add({}), 401)
    assert "Bearer" in _one_line_4xx(add({"Authorization": "Bearer wrong-token"}), 401)
    r = add(AUTH)
    assert r.status_code == 201, r.text
    assert r.json() == {"added": ["fresh"], "count": N_MODELS + 1}
    page = client.get("/api/models/fresh").json()
    assert page["metadata"]["task"] == "digits" and page["source"]
    assert client.post("/api/search", json={"id": "fresh"}).status_code == 200
    assert "already indexed" in _one_line_4xx(add(AUTH), 409)
    assert client.delete("/api/models/fresh").status_code == 401
    r = client.delete("/api/models/fresh", headers=AUTH)
    assert r.status_code == 200 and r.json()["count"] == N_MODELS
    assert client.get("/api/models/fresh").status_code == 404
    assert client.delete("/api/models/fresh", headers=AUTH).status_code == 404
    kept = Path(client.app.state.service.index.path) / "uploads"
    assert list(kept.iterdir()) == []  # the deleted model's upload went with it


def test_bad_adds_keep_nothing(client: Any) -> None:
    r = client.post("/api/models", files={"file": ("x.onnx", b"junk")}, headers=AUTH)
    _one_line_4xx(r, 400)
    r = client.post(
        "/api/models", files={"file": ("x.onnx", b"junk")}, data={"id": "../x"}, headers=AUTH
    )
    _one_line_4xx(r, 400)
    kept = Path(client.app.state.service.index.path) / "uploads"
    assert not kept.exists() or list(kept.iterdir()) == []
    assert client.get("/api/health").json()["count"] == N_MODELS


def test_without_a_token_file_the_server_is_read_only(index_dir: Path, checkpoints: dict) -> None:
    from fastapi.testclient import TestClient

    from zoolens.service import create_app

    with TestClient(create_app(index_dir)) as c:
        with checkpoints["new"].open("rb") as f:
            r = c.post("/api/models", files={"file": ("n.zip", f)}, headers=AUTH)
        assert "read-only" in _one_line_4xx(r, 403)
        _one_line_4xx(c.delete("/api/models/m1", headers=AUTH), 403)
        assert (
            c.get("/api/health").json() | {"count": N_MODELS, "read_only": True}
            == c.get("/api/health").json()
        )
