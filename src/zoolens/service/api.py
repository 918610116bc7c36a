"""The JSON routes under ``/api``: each parses the request, calls the index, shapes the answer."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from zoolens.errors import IndexError as IndexStoreError
from zoolens.errors import LoadError, ZoolensError
from zoolens.index import parse_where
from zoolens.index.filters import Condition
from zoolens.index.interface import interface_conditions, interface_metadata
from zoolens.service import map as layouts
from zoolens.service.state import Service
from zoolens.service.uploads import received

router = APIRouter(prefix="/api")

MAX_K = 1000
MAX_PAGE = 1000
_ID = re.compile(r"^[A-Za-z0-9_.:@+=-][A-Za-z0-9_.:@+=/ -]{0,255}$")


def _service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def _where(values: list[str]) -> list[Condition]:
    return parse_where(values)


def _valid_id(model_id: Any) -> str:
    """The id if it has an id's form, else 404 (ids never reach the file system; `_record`
    gives 404 for a well-formed id the index does not hold)."""
    if not isinstance(model_id, str) or not _ID.match(model_id):
        raise _no_model(model_id)
    return model_id


def _no_model(model_id: Any) -> HTTPException:
    return HTTPException(404, f"no model with id {str(model_id)[:80]!r} in this index")


def _record(svc: Service, model_id: str) -> dict[str, Any]:
    """The record (with its embedding) of a model of the index, read once; else 404."""
    try:
        return svc.record(model_id)
    except IndexStoreError:  # no such model
        raise _no_model(model_id) from None


def _require_writer(svc: Service, request: Request) -> None:
    ok = svc.authorised(request.headers.get("authorization"))
    if ok is None:
        raise HTTPException(403, "this server is read-only (start it with --token-file)")
    if not ok:
        raise HTTPException(401, "write needs 'Authorization: Bearer <token>' from the token file")


async def _upload(request: Request) -> tuple[Any, dict[str, Any]]:
    """The multipart ``file`` field and the other (text) fields."""
    try:
        form = await request.form()
    except Exception as e:  # malformed multipart bodies
        raise HTTPException(400, f"unreadable multipart body ({type(e).__name__})") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise HTTPException(400, "send the checkpoint as the multipart field 'file'")
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    return upload, fields


def _read_model(path: str, name: str) -> Any:
    """Load an upload with `load_net` (never unpickling); any failure is the upload's fault."""
    from zoolens.ir import load_net

    try:
        return load_net(path)
    except ZoolensError as e:
        raise LoadError(f"upload {name!r}: {_unnamed(str(e), path)}") from None
    except Exception as e:  # a damaged file may raise anything from a parser
        raise LoadError(
            f"upload {name!r}: not a readable checkpoint ({type(e).__name__})"
        ) from None


def _unnamed(message: str, path: str) -> str:
    """A message without the server's temporary path (the client knows its file's name)."""
    return message.replace(path + ": ", "").replace(path, "the file")


def _embed(svc: Service, model: Any, name: str) -> np.ndarray:
    try:
        vector: np.ndarray = svc.index.query_vectors(model)[0]  # (d,)
    except ZoolensError:
        raise
    except Exception as e:  # an encoder that cannot read this network
        raise LoadError(f"upload {name!r}: cannot embed it ({type(e).__name__}: {e})") from None
    return vector


@router.get("/health")
def health(request: Request) -> dict[str, Any]:
    svc = _service(request)
    return {
        "status": "ok",
        "count": len(svc.index),
        "encoder": svc.index.encoder_id,
        "heads": sorted(svc.heads),
        "read_only": svc.token is None,
    }


@router.post("/search")
async def search(
    request: Request,
    k: int = Query(10, ge=1, le=MAX_K),
    where: list[str] = Query([]),
    same_interface: bool = False,
) -> dict[str, Any]:
    """Neighbours of an uploaded checkpoint (multipart ``file``) or of a model (``{"id"}``)."""
    svc = _service(request)
    conditions = _where(where)
    if request.headers.get("content-type", "").startswith("multipart/"):
        upload, _ = await _upload(request)
        return await run_in_threadpool(_search_upload, svc, upload, k, conditions, same_interface)
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, 'send a multipart "file" or a JSON body {"id": ...}') from None
    model_id = _valid_id(body.get("id") if isinstance(body, dict) else None)
    return await run_in_threadpool(_search_id, svc, model_id, k, conditions, same_interface)


def _search_upload(
    svc: Service, upload: Any, k: int, where: list[Condition], same_interface: bool
) -> dict[str, Any]:
    name = os.path.basename(upload.filename or "upload")
    with received(upload.file, upload.filename, svc.max_bytes) as path:
        model = _read_model(path, name)
        vector = _embed(svc, model, name)
    interface = interface_metadata(model)
    if same_interface:
        where = where + interface_conditions(interface, f"upload {name!r}")
    query = {"file": name, "kind": type(model).__name__, **interface}
    query["predictions"] = {**svc.predictions(vector[None])[0], **svc.quality(model)}
    return {"query": query, "results": svc.search(vector, k, where)}


def _search_id(
    svc: Service, model_id: str, k: int, where: list[Condition], same_interface: bool
) -> dict[str, Any]:
    rec = _record(svc, model_id)
    if same_interface:
        where = where + interface_conditions(rec["metadata"], model_id)
    query = {"id": model_id, "metadata": rec["metadata"]}
    return {"query": query, "results": svc.search(rec["embedding"], k, where, exclude=model_id)}


@router.get("/models")
def list_models(
    request: Request,
    where: list[str] = Query([]),
    limit: int = Query(50, ge=0, le=MAX_PAGE),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    total, records = _service(request).index.page(_where(where), limit, offset)
    models = [
        {"id": r["id"], "metadata": r["metadata"], "added_at": r["added_at"]} for r in records
    ]
    return {"total": total, "limit": limit, "offset": offset, "models": models}


@router.get("/models/{model_id}")
def get_model(
    request: Request, model_id: str, k: int = Query(10, ge=0, le=MAX_K)
) -> dict[str, Any]:
    """Metadata, predictions (the index's heads; the encoder's quality head when the model's
    source is readable), recorded lineage and nearest models."""
    svc = _service(request)
    rec = _record(svc, _valid_id(model_id))
    z = rec.pop("embedding")
    return {
        "id": model_id,
        "metadata": rec["metadata"],
        "source": os.path.basename(rec["source"] or "") or None,
        "content_hash": rec["content_hash"],
        "added_at": rec["added_at"],
        "predictions": {**svc.predictions(z[None])[0], **svc.source_quality(rec["source"])},
        "lineage": svc.lineage(model_id, rec["metadata"]),
        "nearest": svc.search(z, k, [], exclude=model_id) if k else [],
    }


@router.post("/models", status_code=201)
async def add_model(request: Request) -> dict[str, Any]:
    """Add an uploaded checkpoint (fields: ``file``, optional ``id`` and ``metadata`` JSON)."""
    svc = _service(request)
    _require_writer(svc, request)
    upload, fields = await _upload(request)
    metadata = _metadata(fields.get("metadata"))
    wanted = fields.get("id") or os.path.splitext(os.path.basename(upload.filename or ""))[0]
    if not _ID.match(wanted or "") or "/" in wanted:
        raise HTTPException(400, f"model id {wanted[:80]!r}: use letters, digits and _.:@+=-")
    return await run_in_threadpool(_add, svc, upload, wanted, metadata)


def _metadata(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise HTTPException(400, "the 'metadata' field must be a JSON object") from None
    if not isinstance(value, dict):
        raise HTTPException(400, "the 'metadata' field must be a JSON object")
    return value


def _add(svc: Service, upload: Any, wanted: str, metadata: dict[str, Any]) -> dict[str, Any]:
    name = os.path.basename(upload.filename or "upload")
    with svc.write_lock, received(upload.file, upload.filename, svc.max_bytes) as path:
        _read_model(path, name)  # a clear 400 before anything is kept
        kept = svc.keep_upload(path)
        try:
            report = svc.index.add([kept], metadata=metadata, ids=[wanted], progress=False)
        except BaseException:
            svc.forget_upload(kept)
            raise
    if report.added:
        return {"added": report.added, "count": len(svc.index)}
    svc.forget_upload(kept)
    if report.duplicates:
        raise HTTPException(409, f"upload {name!r} is already indexed as {report.duplicates[0][1]}")
    reason = report.failed[0][1] if report.failed else "nothing added"
    raise LoadError(f"upload {name!r}: {_unnamed(str(reason), kept)}")


@router.delete("/models/{model_id}")
def delete_model(request: Request, model_id: str) -> dict[str, Any]:
    svc = _service(request)
    _require_writer(svc, request)
    with svc.write_lock:
        rec = _record(svc, _valid_id(model_id))
        svc.index.remove(model_id)
        svc.forget_upload(rec["source"])
    return {"removed": model_id, "count": len(svc.index)}


MAP_RETRY_S = 5


@router.get("/map", response_model=None)
def zoo_map(request: Request, method: str = "auto") -> dict[str, Any] | JSONResponse:
    """2-D coordinates of every model (UMAP, t-SNE or PCA), cached until the next write.

    A slow layout (UMAP / t-SNE: minutes at 10^5 models) is made in the background: until
    it is ready the answer is 202 ``{"status": "computing", ...}`` with ``Retry-After``."""
    svc = _service(request)
    found = svc.map(method, wait=False)
    if found is not None:
        return found
    n = len(svc.index)
    used = layouts.choose_method(n, method)
    body = {
        "status": "computing",
        "method": used,
        "count": n,
        "retry_after": MAP_RETRY_S,
        "detail": f"laying out the map of {n} models ({used}); ask again in a few seconds",
    }
    return JSONResponse(body, status_code=202, headers={"Retry-After": str(MAP_RETRY_S)})
