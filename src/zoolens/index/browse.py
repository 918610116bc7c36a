"""Reads a service or a page needs on top of `search`: pages of records, counts, every
embedding at once, the catalog state, and heads kept beside the index.

Heads (``zoolens fit-head``) saved under ``INDEX/heads/<name>/`` belong to the index: `heads`
loads those fitted on the index's encoder, so a search can show each hit's predicted label
(``accuracy`` for a quality head) without naming the head again.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from zoolens.errors import ZoolensError
from zoolens.index.catalog import _CHUNK, Catalog, from_blobs
from zoolens.index.filters import normalise_where, to_sql

if TYPE_CHECKING:
    from zoolens.index.model_index import Where
    from zoolens.nn.heads import Head

log = logging.getLogger(__name__)

HEADS_DIR = "heads"
_HEAD_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Browse:
    """Mixed into `ModelIndex`: needs ``catalog`` and ``path``."""

    catalog: Catalog
    path: str

    def page(
        self, where: Where = None, limit: int = 50, offset: int = 0
    ) -> tuple[int, list[dict[str, Any]]]:
        """One page of the records matching `where`, in insertion order, and their total.

        Args:
            where: metadata filter (see `zoolens.index.filters`).
            limit: records per page (>= 0).
            offset: records skipped (>= 0).

        Returns:
            ``(total, records)``: how many match in all (one snapshot), and the page's
            records (id, source, content_hash, metadata, added_at).
        """
        if limit < 0 or offset < 0:
            raise ZoolensError(f"page limit {limit} / offset {offset}: both must be >= 0")
        sql, params = to_sql(normalise_where(where))
        with self.catalog.snapshot() as conn:
            total = int(
                conn.execute(f"SELECT COUNT(*) FROM models WHERE {sql}", params).fetchone()[0]
            )
            cur = conn.execute(
                "SELECT id, source, content_hash, metadata, added_at FROM models WHERE "
                f"{sql} ORDER BY row LIMIT ? OFFSET ?",
                [*params, int(limit), int(offset)],
            )
            records = [
                {"id": i, "source": s, "content_hash": h, "metadata": json.loads(m), "added_at": a}
                for i, s, h, m, a in cur
            ]
        return total, records

    def get_many(self, ids: Sequence[str], embedding: bool = False) -> dict[str, dict[str, Any]]:
        """Records (as `ModelIndex.get` gives them) of the `ids` the index holds, by id, read
        in one snapshot; ids it does not hold are left out."""
        cols = "id, source, content_hash, metadata, encoder_id, added_at" + (
            ", embedding" if embedding else ""
        )
        out: dict[str, dict[str, Any]] = {}
        with self.catalog.snapshot() as conn:
            for s in range(0, len(ids), _CHUNK):
                part = list(ids[s : s + _CHUNK])
                marks = ",".join("?" * len(part))
                cur = conn.execute(f"SELECT {cols} FROM models WHERE id IN ({marks})", part)
                names = [d[0] for d in cur.description]
                for row in cur:
                    rec = dict(zip(names, row, strict=True))
                    rec["metadata"] = json.loads(rec["metadata"])
                    if embedding:
                        blob = rec["embedding"]
                        rec["embedding"] = from_blobs([blob], len(blob) // 4)[0]
                    out[rec["id"]] = rec
        return out

    def embeddings(self) -> tuple[list[str], np.ndarray]:
        """Every model's id and embedding, in insertion order: ``(ids, (n, d) float32)``."""
        with self.catalog.snapshot() as conn:
            got = conn.execute("SELECT id, embedding FROM models ORDER BY row").fetchall()
            dim = int(self.catalog.meta().get("dim") or 0)
        return [i for i, _ in got], from_blobs([b for _, b in got], dim)

    def state(self) -> tuple[int, int]:
        """``(epoch, version)``: changes with every committed write (a cache key)."""
        with self.catalog.snapshot():
            return self.catalog.state()

    def heads(self) -> dict[str, Head]:
        """The heads saved in ``INDEX/heads/`` that read this index's embeddings, by name.

        A head of another encoder, or one that does not load, is skipped with a warning.
        """
        from zoolens.nn.heads import Head

        root = os.path.join(self.path, HEADS_DIR)
        found: dict[str, Head] = {}
        if not os.path.isdir(root):
            return found
        for name in sorted(os.listdir(root)):
            try:
                head = Head.load(os.path.join(root, name))
                head.check_encoder(self.catalog.meta().get("encoder_id"))
            except ZoolensError as e:
                log.warning("%s: skipped head %s: %s", self.path, name, e)
                continue
            found[name] = head
        return found

    def save_head(self, head: Head, name: str | None = None) -> str:
        """Keep `head` with the index (``INDEX/heads/<name>/``; name defaults to its label).

        Returns:
            The directory written.
        """
        head.check_encoder(self.catalog.meta().get("encoder_id"))
        name = name or head.config.label
        if not _HEAD_NAME.match(name) or name in (".", ".."):
            raise ZoolensError(f"head name {name!r}: use letters, digits, '_', '-' or '.'")
        out = os.path.join(self.path, HEADS_DIR, name)
        head.save(out)
        return out
