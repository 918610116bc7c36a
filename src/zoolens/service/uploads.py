"""Uploaded checkpoints: a size limit enforced while the body streams in, files written to a
private temporary directory (deleted afterwards), zipped model directories unpacked without
leaving it. Models are read by `zoolens.ir.load_net` only (PyTorch files with
``weights_only=True``): nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from typing import IO, Any

from zoolens.errors import LoadError

SUFFIXES = (".onnx", ".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".zip")
MAX_ZIP_MEMBERS = 1000
_CHUNK = 1 << 20


class TooLarge(LoadError):
    """An upload exceeded the server's limit."""


class UploadLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413, counted as it arrives.

    A declared ``Content-Length`` over the limit is refused before reading; otherwise the
    bytes received are counted and, once over, the app's response is replaced by the 413.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode() or "0"
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        over = False
        started = False

        async def counted() -> Any:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: dict[str, Any]) -> None:
            nonlocal started
            if over and not started:
                started = True
                await self._refuse(send)
            elif not over:
                started = True
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        mb = self.max_bytes / (1 << 20)
        detail = f"upload larger than the server limit of {mb:g} MB (--max-upload-mb)"
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def safe_suffix(filename: str | None) -> str:
    """The upload's extension if zoolens reads it, else a `LoadError` naming the accepted ones."""
    suffix = os.path.splitext(os.path.basename(filename or ""))[1].lower()
    if suffix not in SUFFIXES:
        raise LoadError(
            f"upload {os.path.basename(filename or '') or '(no name)'!r}: unknown extension "
            f"{suffix or '(none)'!r}; send {', '.join(SUFFIXES)} (a model directory as .zip)"
        )
    return suffix


@contextlib.contextmanager
def received(stream: IO[bytes], filename: str | None, max_bytes: int) -> Iterator[str]:
    """Copy an upload to a private temporary directory; yield the model path to load.

    Args:
        stream: the upload's file object.
        filename: the name the client gave (only its extension is used).
        max_bytes: the size limit (a second check beside `UploadLimit`).

    Yields:
        A checkpoint file, or the unpacked model directory of a ``.zip``; the temporary
        directory is deleted when the block ends, whatever happens.
    """
    suffix = safe_suffix(filename)
    tmp = tempfile.mkdtemp(prefix="zoolens-upload-")
    try:
        path = os.path.join(tmp, "upload" + suffix)
        _copy(stream, path, max_bytes)
        yield unzip_model(path, os.path.join(tmp, "model"), max_bytes) if suffix == ".zip" else path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _copy(stream: IO[bytes], path: str, max_bytes: int) -> None:
    size = 0
    with open(path, "wb") as out:
        while chunk := stream.read(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(f"upload larger than the server limit of {max_bytes} bytes")
            out.write(chunk)
    if size == 0:
        raise LoadError("upload: the file is empty")


def unzip_model(archive: str, root: str, max_bytes: int) -> str:
    """Unpack a zipped model directory into `root`, refusing anything that leaves it.

    Absolute names, ``..`` parts, symlinks, more than `MAX_ZIP_MEMBERS` entries or more
    than 4 × `max_bytes` unpacked are refused with a `LoadError`.

    Returns:
        The model inside: a directory holding ``arch.json``, or the archive's one checkpoint.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise LoadError(f"upload: not a readable zip archive ({e})") from None
    with zf:
        members = zf.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise LoadError(f"upload: the zip holds {len(members)} entries (at most 1000)")
        if sum(m.file_size for m in members) > 4 * max_bytes:
            raise LoadError("upload: the zip unpacks to more than 4x the upload limit")
        os.makedirs(root)
        for member in members:
            _extract(zf, member, root)
    return _find_model(root)


def _extract(zf: zipfile.ZipFile, member: zipfile.ZipInfo, root: str) -> None:
    name = member.filename.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    mode = member.external_attr >> 16
    if name.startswith("/") or ".." in parts or (":" in name) or stat.S_ISLNK(mode):
        raise LoadError(f"upload: zip entry {member.filename!r} leaves the archive; refused")
    target = os.path.join(root, *parts) if parts else root
    if os.path.commonpath([os.path.realpath(target), os.path.realpath(root)]) != (
        os.path.realpath(root)
    ):
        raise LoadError(f"upload: zip entry {member.filename!r} leaves the archive; refused")
    if member.is_dir():
        os.makedirs(target, exist_ok=True)
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with zf.open(member) as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out, _CHUNK)


def _find_model(root: str) -> str:
    for d, dirs, files in os.walk(root):
        dirs.sort()
        if "arch.json" in files:
            return d
    found = [
        os.path.join(d, f)
        for d, _, files in os.walk(root)
        for f in files
        if os.path.splitext(f)[1].lower() in SUFFIXES[:-1]
    ]
    if len(found) != 1:
        raise LoadError(
            "upload: the zip holds no zoolens model directory (arch.json) and "
            f"{len(found)} checkpoint files (expected one)"
        )
    return found[0]
