"""A real uvicorn server: HTTP from other threads, searches while models are added and removed."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.request
import uuid
from typing import Any

from .conftest import N_MODELS, TOKEN


def call(url: str, method: str = "GET", body: Any = None, headers: dict | None = None) -> Any:
    """(status, JSON) of one request; `body` is JSON or ``(filename, bytes)`` for a file."""
    headers = dict(headers or {})
    data = None
    if isinstance(body, tuple):
        boundary = uuid.uuid4().hex
        name, payload = body
        head = (
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        data = head.encode() + payload + f"\r\n--{boundary}--\r\n".encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _declared_too_large(base: str) -> int:
    """Status of an upload that declares 2 MB (limit 1 MB): answered before the body is sent
    (a client still sending could see the connection close instead)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest("POST", "/api/search")
        conn.putheader("Content-Type", "multipart/form-data; boundary=b")
        conn.putheader("Content-Length", str(2 << 20))
        conn.endheaders()
        response = conn.getresponse()
        assert "limit" in json.loads(response.read())["detail"]
        return response.status
    finally:
        conn.close()


def test_real_server_answers(live_server: str, checkpoints: dict) -> None:
    assert call(live_server + "/api/health")[1]["count"] == N_MODELS
    status, body = call(
        live_server + "/api/search?k=3", "POST", ("m5.zip", checkpoints["zip"].read_bytes())
    )
    assert status == 200 and body["results"][0]["id"] == "m5"
    status, body = call(live_server + "/api/search", "POST", ("x.onnx", b"garbage"))
    assert status == 400 and "x.onnx" in body["detail"]
    assert _declared_too_large(live_server) == 413
    assert call(live_server + "/api/health")[0] == 200  # it lives on


def test_searches_during_writes_are_consistent(live_server: str, checkpoints: dict) -> None:
    """Readers search by id and list models while a writer adds and removes one model."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    upload = checkpoints["new"].read_bytes()
    errors: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            for _ in range(6):
                status, body = call(live_server + "/api/models", "POST", ("new.zip", upload), auth)
                assert status == 201, body
                status, body = call(
                    live_server + f"/api/models/{body['added'][0]}", "DELETE", headers=auth
                )
                assert status == 200, body
        except AssertionError as e:
            errors.append(f"writer: {e}")
        finally:
            stop.set()

    def reader(seed: int) -> None:
        n = 0
        while not stop.is_set() or n < 3:
            n += 1
            status, body = call(live_server + "/api/search?k=20", "POST", {"id": f"m{seed}"})
            hits = body.get("results", [])
            ids = [h["id"] for h in hits]
            scores = [h["score"] for h in hits]
            if status != 200 or len(ids) not in (N_MODELS - 1, N_MODELS):
                errors.append(f"search {status}: {len(ids)} hits")
            elif scores != sorted(scores, reverse=True) or len(set(ids)) != len(ids):
                errors.append(f"search out of order or repeated: {ids}")
            status, page = call(live_server + "/api/models?limit=100")
            if (
                status != 200
                or page["total"] != len(page["models"])
                or page["total"]
                not in (
                    N_MODELS,
                    N_MODELS + 1,
                )
            ):
                errors.append(
                    f"models {status}: {page.get('total')} / {len(page.get('models', []))}"
                )

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(i,)) for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:5]
    assert call(live_server + "/api/health")[1]["count"] == N_MODELS
