"""`Service`: what one server process holds — the open `ModelIndex`, its heads, the write
token and the map cache — and the few steps each route shares (hits as JSON, lineage)."""

from __future__ import annotations

import hmac
import logging
import os
import shutil
import threading
from typing import Any

import numpy as np

from zoolens.errors import ZoolensError
from zoolens.index import ModelIndex
from zoolens.index.filters import Condition
from zoolens.index.lineage import Lineage, index_lineage
from zoolens.service.map import MapCache, is_slow, layout

UPLOADS_DIR = "uploads"
MAPS_DIR = "maps"  # zoo-map layouts kept on disk, per index state
MAP_KEYS = ("task", "family", "dataset", "arch", "accuracy")  # what map points carry
LINEAGE_MAX = 2000  # lineage from weights reads every model: only for indexes this small
log = logging.getLogger(__name__)


class Service:
    """One server's state.

    Args:
        index_dir: an existing index directory (opened once, shared by every request;
            searches run side by side, each on a committed state).
        token_file: a file holding the write token; None makes the server read-only.
        max_upload_mb: the upload size limit.
    """

    def __init__(self, index_dir: str, token_file: str | None, max_upload_mb: float) -> None:
        self.index = ModelIndex.open(index_dir, encoder=None, create=False)
        self.token = read_token(token_file) if token_file else None
        self.max_bytes = int(max_upload_mb * (1 << 20))
        self.heads = self.index.heads()
        self.maps = MapCache(os.path.join(self.index.path, MAPS_DIR))
        self.write_lock = threading.Lock()
        self._lineage_lock = threading.Lock()
        self._lineage: tuple[tuple[int, int], Lineage | None] | None = None

    def close(self) -> None:
        self.index.close()

    def warm_up(self, map_at_start: bool = False) -> threading.Thread | None:
        """Recover lineage (indexes up to `LINEAGE_MAX` models) in the background, so the
        first visitor does not wait; with `map_at_start` also start laying out a slow map
        (else that waits for the first ``GET /api/map``). None when there is nothing to do."""
        if map_at_start and is_slow(len(self.index)):
            self.map("auto", wait=False)
        if len(self.index) > LINEAGE_MAX:
            return None

        def run() -> None:
            try:
                self.inferred()
            except Exception as e:  # the routes report the same error when asked
                log.warning("lineage warm-up failed: %s", e)

        thread = threading.Thread(target=run, name="zoolens-lineage-warm-up", daemon=True)
        thread.start()
        return thread

    # -- access --------------------------------------------------------------------------
    def authorised(self, header: str | None) -> bool | None:
        """None when read-only; else whether ``Authorization: Bearer <token>`` matches."""
        if self.token is None:
            return None
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), self.token)

    def record(self, model_id: str) -> dict[str, Any]:
        """A model's record with its embedding; `IndexStoreError` (→ 404) when unknown."""
        return self.index.get(model_id, embedding=True)

    # -- answers -------------------------------------------------------------------------
    def predictions(self, z: np.ndarray) -> list[dict[str, Any]]:
        """Each head's prediction for each row of ``(n, d)`` `z` (one dict per row)."""
        out: list[dict[str, Any]] = [{} for _ in range(len(z))]
        for name, head in self.heads.items():
            for row, value in zip(out, head.predict(z, self.index.encoder_id), strict=True):
                row[name] = value.item() if hasattr(value, "item") else value
        return out

    def quality(self, model: Any) -> dict[str, float]:
        """``{"quality": q}``: the encoder's own quality head (``predict_quality``, accuracy
        or R² in [0, 1]) on a loaded model; ``{}`` when the encoder has none."""
        encoder = self.index.encoder
        if getattr(encoder, "quality", None) is None or not hasattr(encoder, "predict_quality"):
            return {}
        try:
            return {"quality": round(float(encoder.predict_quality([model])[0]), 6)}
        except Exception as e:  # a model the quality head cannot read: no prediction
            log.info("no quality prediction: %s", e)
            return {}

    def source_quality(self, source: str | None) -> dict[str, float]:
        """`quality` of a model read again from its source; ``{}`` when it cannot be read."""
        if not source or not os.path.exists(source):
            return {}
        from zoolens.ir import load_net

        try:
            model = load_net(source)
        except Exception as e:  # a source changed or gone bad since it was indexed
            log.info("no quality for %s: %s", source, e)
            return {}
        return self.quality(model)

    def search(
        self,
        vector: np.ndarray,
        k: int,
        where: list[Condition],
        exclude: str | None = None,
    ) -> list[dict[str, Any]]:
        """The k best hits of one ``(d,)`` query vector as JSON rows, best first (records
        read in the search's snapshot)."""
        found = self.index.search_records(
            vector, k + (exclude is not None), where, embedding=bool(self.heads)
        )
        hits = [(score, rec) for score, rec in found if rec["id"] != exclude][:k]
        lineage = self.inferred()
        rows = []
        for score, rec in hits:
            rows.append({"id": rec["id"], "score": round(score, 6), "metadata": rec["metadata"]})
            if lineage is not None:
                rows[-1]["lineage"] = _hit_lineage(lineage, rec["id"])
        if self.heads and hits:
            vectors = np.stack([rec["embedding"] for _, rec in hits])
            for row, pred in zip(rows, self.predictions(vectors), strict=True):
                row["predictions"] = pred
        return rows

    def lineage(self, model_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
        """Recorded lineage (the manifest's ``parent`` and the models naming this one) and
        ``inferred``: recorded and recovered edges with near-duplicates (see
        `zoolens.index.lineage`), None for an index over `LINEAGE_MAX` models."""
        parent = metadata.get("parent") or None
        children = [r["id"] for r in self.index.records({"parent": model_id})]
        lineage = self.inferred()
        inferred = lineage.describe(model_id) if lineage is not None else None
        return {"parent": parent, "children": children, "inferred": inferred}

    def inferred(self) -> Lineage | None:
        """Lineage from weights at the index's current state (cached until the next write);
        None when the index holds more than `LINEAGE_MAX` models."""
        from zoolens.merge import align

        state = self.index.state()
        with self._lineage_lock:
            if self._lineage is None or self._lineage[0] != state:
                small = len(self.index) <= LINEAGE_MAX
                self._lineage = (state, index_lineage(self.index, align=align) if small else None)
            return self._lineage[1]

    def map(self, method: str, wait: bool = True) -> dict[str, Any] | None:
        """The zoo map at the index's current state (cached until the next write).

        Args:
            method: ``auto``, ``umap``, ``tsne`` or ``pca``.
            wait: lay a slow map (UMAP, t-SNE) out here; else start doing so in the
                background (once) and return None until it is ready.
        """

        def make() -> dict[str, Any]:
            ids, z = self.index.embeddings()
            used, xy = layout(z, method)
            metas = {
                r["id"]: {k: r["metadata"][k] for k in MAP_KEYS if k in r["metadata"]}
                for r in self.index.records()
            }
            points = [
                {
                    "id": i,
                    "x": round(float(x), 5),
                    "y": round(float(y), 5),
                    "metadata": metas.get(i),
                }
                for i, (x, y) in zip(ids, xy, strict=True)
            ]
            return {"method": used, "count": len(points), "points": points}

        state = self.index.state()
        found = self.maps.peek(state, method)
        if found is None and not wait and is_slow(len(self.index), method):
            self.maps.start(state, method, make)
            return None
        if found is None:
            found = self.maps.get(state, method, make)
        return {**found, "version": state[1]}

    # -- writes --------------------------------------------------------------------------
    def keep_upload(self, path: str) -> str:
        """Move an uploaded model into ``INDEX/uploads/`` (it stays the model's source)."""
        root = os.path.join(self.index.path, UPLOADS_DIR)
        os.makedirs(root, exist_ok=True)
        target = os.path.join(root, os.urandom(8).hex() + _ext(path))
        shutil.move(path, target)
        return target

    def forget_upload(self, source: str | None) -> None:
        """Delete a model's kept upload (sources outside ``INDEX/uploads/`` are left alone)."""
        if not source:
            return
        root = os.path.realpath(os.path.join(self.index.path, UPLOADS_DIR))
        real = os.path.realpath(source)
        if os.path.dirname(real) == root:
            if os.path.isdir(real):
                shutil.rmtree(real, ignore_errors=True)
            elif os.path.exists(real):
                os.remove(real)


def _hit_lineage(lineage: Lineage, model_id: str) -> dict[str, Any]:
    """What a search hit shows: its parent (recorded or recovered) and near-duplicates."""
    parent = lineage.parent_of(model_id)
    return {
        "parent": parent.parent if parent else None,
        "how": parent.how if parent else None,
        "near_duplicates": lineage.duplicates_of(model_id),
    }


def _ext(path: str) -> str:
    return "" if os.path.isdir(path) else os.path.splitext(path)[1]


def read_token(path: str) -> str:
    """The write token: the file's first line, stripped; refused when empty or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
    except OSError as e:
        raise ZoolensError(f"{path}: cannot read the token file ({e.strerror})") from None
    if len(token) < 8:
        raise ZoolensError(f"{path}: the token file must hold a token of at least 8 characters")
    return token
