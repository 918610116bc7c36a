"""The JSON API through FastAPI's TestClient: answers, filters, paging, model pages, map."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import N_MODELS, TOKEN, model_metadata


def _scores(results: list[dict[str, Any]]) -> list[float]:
    return [r["score"] for r in results]


def test_health(client: Any) -> None:
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["count"] == N_MODELS
    assert body["heads"] == ["accuracy"] and body["read_only"] is False


def test_search_by_id_is_ranked_and_leaves_the_query_out(client: Any) -> None:
    r = client.post("/api/search?k=5", json={"id": "m4"})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 5 and "m4" not in [h["id"] for h in results]
    assert _scores(results) == sorted(_scores(results), reverse=True)
    assert all(-1.0 <= s <= 1.0 + 1e-6 for s in _scores(results))
    assert all("accuracy" in h["predictions"] for h in results)


def test_where_filters_before_ranking(client: Any) -> None:
    everything = client.post("/api/search?k=20", json={"id": "m0"}).json()["results"]
    assert {h["metadata"]["task"] for h in everything} == {"digits", "fashion"}  # sensitivity
    r = client.post("/api/search?k=20&where=task=fashion&where=accuracy>=0.6", json={"id": "m0"})
    hits = r.json()["results"]
    want = {
        f"m{i}"
        for i in range(N_MODELS)
        if model_metadata(i)["task"] == "fashion" and float(model_metadata(i)["accuracy"]) >= 0.6
    }
    assert {h["id"] for h in hits} == want


def test_search_by_upload_finds_the_same_weights_first(client: Any, checkpoints: dict) -> None:
    for kind, twin in (("zip", "m5"), ("safetensors", "m7")):
        path: Path = checkpoints[kind]
        with path.open("rb") as f:
            r = client.post("/api/search?k=3", files={"file": (path.name, f)})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["results"][0]["id"] == twin
        assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)
        assert body["results"][1]["score"] < 0.99999
        assert "accuracy" in body["query"]["predictions"]
    assert body["query"]["kind"] == "TensorSet"


def test_same_interface_needs_an_interface(client: Any, checkpoints: dict) -> None:
    with checkpoints["zip"].open("rb") as f:
        r = client.post("/api/search?same_interface=true", files={"file": ("n.zip", f)})
    assert r.status_code == 200 and len(r.json()["results"]) == 10
    with checkpoints["safetensors"].open("rb") as f:  # bare weights have no interface
        r = client.post("/api/search?same_interface=true", files={"file": ("w.safetensors", f)})
    assert r.status_code == 400 and "same_interface" in r.json()["detail"]


def test_models_pages_are_disjoint_and_counted(client: Any) -> None:
    first = client.get("/api/models?limit=5&offset=0").json()
    second = client.get("/api/models?limit=5&offset=5").json()
    assert first["total"] == second["total"] == N_MODELS
    ids = [m["id"] for m in first["models"] + second["models"]]
    assert ids == [f"m{i}" for i in range(10)]
    digits = client.get("/api/models?where=task=digits&limit=100").json()
    assert digits["total"] == N_MODELS // 2
    assert all(m["metadata"]["task"] == "digits" for m in digits["models"])


def test_model_page(client: Any) -> None:
    body = client.get("/api/models/m0?k=4").json()
    lineage = body["lineage"]
    assert (lineage["parent"], lineage["children"]) == (None, ["m1", "m2", "m3"])
    # no sources to read weights from here: only the recorded edges (tests/service/test_lineage.py)
    assert [c["how"] for c in lineage["inferred"]["children"]] == ["recorded"] * 3
    assert len(body["nearest"]) == 4 and "m0" not in [h["id"] for h in body["nearest"]]
    assert isinstance(body["predictions"]["accuracy"], float)
    child = client.get("/api/models/m2").json()
    assert (child["lineage"]["parent"], child["lineage"]["children"]) == ("m0", [])
    assert child["lineage"]["inferred"]["parent"] == {
        "id": "m0",
        "how": "recorded",
        "distance": None,
    }
    assert child["metadata"]["task"] == "digits"


@pytest.mark.parametrize("bad", ["nope", "..", "m0%2F..%2F..%2Fcatalog.sqlite", "a" * 300])
def test_unknown_ids_are_404(client: Any, bad: str) -> None:
    r = client.get(f"/api/models/{bad}")
    assert r.status_code == 404 and "detail" in r.json()
    r = client.post("/api/search", json={"id": bad.replace("%2F", "/")})
    assert r.status_code == 404
    assert client.post("/api/search", json={"id": 3}).status_code == 404


def test_bad_queries_are_one_line_4xx(client: Any) -> None:
    cases = [
        client.post("/api/search", json={"id": "m0"}, params={"where": "no-operator"}),
        client.post("/api/search", content=b"not json", headers={"content-type": "text/plain"}),
        client.post("/api/search?k=0", json={"id": "m0"}),
        client.get("/api/models?limit=-1"),
        client.get("/api/map?method=magic"),
    ]
    for r in cases:
        assert 400 <= r.status_code < 500, r.text
        detail = r.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail


def test_map_is_cached_per_index_version(client: Any, checkpoints: dict) -> None:
    first = client.get("/api/map").json()
    assert first["count"] == N_MODELS and first["method"] == "pca"
    xy = [(p["x"], p["y"]) for p in first["points"]]
    assert all(0.0 <= x <= 1.0 and 0.0 <= y <= 1.0 for x, y in xy)
    assert len(set(xy)) == N_MODELS  # distinct models, distinct places
    assert set(first["points"][0]["metadata"]) == {"task", "family", "accuracy"}  # not all
    again = client.get("/api/map").json()
    assert again == first
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with checkpoints["new"].open("rb") as f:
        assert (
            client.post("/api/models", files={"file": ("n.zip", f)}, headers=auth).status_code
            == 201
        )
    after = client.get("/api/map").json()
    assert after["version"] > first["version"] and after["count"] == N_MODELS + 1


def test_a_slow_map_is_202_until_laid_out(client: Any) -> None:
    first = client.get("/api/map?method=tsne")
    assert first.status_code == 202 and first.headers["retry-after"] == "5"
    assert first.json()["status"] == "computing" and first.json()["method"] == "tsne"
    assert "laying out the map of 12 models" in first.json()["detail"]
    deadline = time.monotonic() + 120
    while (r := client.get("/api/map?method=tsne")).status_code == 202:
        assert time.monotonic() < deadline, "the t-SNE map never came"
        time.sleep(0.2)
    body = r.json()
    assert r.status_code == 200 and body["method"] == "tsne" and body["count"] == N_MODELS


def test_page_and_assets_are_served_locally(client: Any) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN
    for asset in ("/static/app.js", "/static/style.css", "/docs", "/openapi.json"):
        assert client.get(asset).status_code == 200, asset
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/api/health",
        "/api/search",
        "/api/models",
        "/api/models/{model_id}",
        "/api/map",
    } <= set(paths)
    r = client.get("/models/m3", follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"] == "/#/models/m3"


def test_the_encoders_quality_head_predicts_uploads_and_sources(
    client: Any, checkpoints: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An encoder with a quality head (``predict_quality``) adds ``quality`` to predictions."""
    encoder = client.app.state.service.index.encoder
    with checkpoints["zip"].open("rb") as f:
        plain = client.post("/api/search", files={"file": ("a.zip", f)}).json()
    assert "quality" not in plain["query"]["predictions"]  # the fake encoder has none
    monkeypatch.setattr(encoder, "quality", object(), raising=False)
    monkeypatch.setattr(
        encoder, "predict_quality", lambda models: [0.25 + len(models) / 4], raising=False
    )
    with checkpoints["zip"].open("rb") as f:
        body = client.post("/api/search", files={"file": ("a.zip", f)}).json()
    assert body["query"]["predictions"]["quality"] == 0.5
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with checkpoints["new"].open("rb") as f:
        client.post("/api/models", files={"file": ("n.zip", f)}, data={"id": "q"}, headers=auth)
    assert client.get("/api/models/q").json()["predictions"]["quality"] == 0.5
    assert "quality" not in client.get("/api/models/m1").json()["predictions"]  # no source


def _slow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `auto` choose t-SNE even for the 12 test models."""
    from zoolens.service import map as zoo_map

    slow = lambda n, method="auto": "tsne" if method == "auto" else method  # noqa: E731
    monkeypatch.setattr(zoo_map, "choose_method", slow)


def test_a_slow_map_waits_for_a_visit_or_map_at_start(
    index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoolens.service.state import Service

    monkeypatch.setattr("zoolens.service.state.LINEAGE_MAX", 0)  # no lineage to recover
    _slow(monkeypatch)
    svc = Service(str(index_dir), None, 1)
    state = svc.index.state()
    assert svc.warm_up() is None and svc.maps.running(state, "auto") is None  # not at start
    svc.warm_up(map_at_start=True)
    thread = svc.maps.running(state, "auto")
    assert thread is not None
    thread.join(timeout=120)
    monkeypatch.setattr("zoolens.service.state.layout", lambda *a, **k: pytest.fail("recomputed"))
    first = svc.map("auto", wait=False)
    assert first is not None and first["method"] == "tsne"
    svc.close()
    again = Service(str(index_dir), None, 1)  # a restarted server reads it from disk
    assert again.map("auto", wait=False) == first
    again.close()


def test_a_failed_map_is_reported_then_tried_again(
    index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoolens.errors import MissingDependencyError
    from zoolens.service.state import Service

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise MissingDependencyError("the UMAP zoo map needs umap-learn")

    monkeypatch.setattr("zoolens.service.state.layout", broken)
    _slow(monkeypatch)
    svc = Service(str(index_dir), None, 1)
    state = svc.index.state()
    assert svc.map("auto", wait=False) is None
    svc.maps.running(state, "auto").join(timeout=60)
    with pytest.raises(MissingDependencyError):
        svc.map("auto", wait=False)
    assert svc.map("auto", wait=False) is None  # a new attempt
    svc.close()
