"""The SQLite catalog: one row per model, the source of truth the vector index is built from.

Schema (``PRAGMA user_version`` = `SCHEMA_VERSION`):

- ``models(row INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, source, content_hash UNIQUE,
  metadata JSON, encoder_id, embedding BLOB float32, added_at)``. ``row`` is the FAISS id; it
  is never reused, so a vector index built at any earlier state can be brought up to date.
- ``meta(key, value)``: encoder id and source, dim, index kind, ``version`` (bumped by every
  write transaction; the FAISS cache records it) and ``epoch`` (bumped when every embedding
  changes, by `reembed`).
- ``tombstones(row, version)``: rows removed at a version, to update vector indexes.

The database runs in WAL mode with ``synchronous=FULL``: a committed transaction survives a
crash of the process (and of the machine); readers see their own snapshot while a writer adds.
One connection writes (write transactions take turns); every other thread reads through a
read-only connection of its own, so reads never wait for each other nor for a writer.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from zoolens.errors import IndexError as IndexStoreError
from zoolens.jsonable import jsonable

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CATALOG_FILE = "catalog.sqlite"
_CHUNK = 900  # parameters per IN (...) query, below every SQLite limit

_SCHEMA = """
CREATE TABLE models (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    source TEXT,
    content_hash TEXT UNIQUE,
    metadata TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    encoder_id TEXT NOT NULL,
    embedding BLOB NOT NULL,
    added_at TEXT NOT NULL
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE tombstones (row INTEGER PRIMARY KEY, version INTEGER NOT NULL);
"""


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def to_json(metadata: dict[str, Any]) -> str:
    return json.dumps(jsonable(metadata), allow_nan=False, ensure_ascii=False)


def to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def from_blobs(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """Stack float32 blobs into ``(n, dim)``."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim).astype(np.float32)


class Catalog:
    """A connection to ``DIR/catalog.sqlite`` with the transactions the index needs.

    Args:
        path: the index directory.
        create: create the directory and schema when missing.
    """

    def __init__(self, path: str, create: bool = True) -> None:
        self.dir = os.path.abspath(path)
        self.file = os.path.join(self.dir, CATALOG_FILE)
        if not os.path.exists(self.file):
            if not create:
                raise IndexStoreError(
                    f"{self.dir}: no zoolens index here (no {CATALOG_FILE}); "
                    "create one with `zoolens index add`"
                )
            os.makedirs(self.dir, exist_ok=True)
        try:
            self._writer = self._connect()
            self._writer.execute("PRAGMA journal_mode=WAL")
            self._writer.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as e:
            raise IndexStoreError(f"{self.file}: not a readable SQLite catalog ({e})") from None
        self.lock = threading.RLock()  # serialises the writer connection
        self._writing: int | None = None  # the thread inside `write`
        self._local = threading.local()  # each thread's reader connection
        self._readers: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._readers_lock = threading.Lock()
        self._init_schema()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            self.file, isolation_level=None, timeout=60.0, check_same_thread=False
        )

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection: the writer's inside `write`, else its own reader."""
        if self._writing == threading.get_ident():
            return self._writer
        reader: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if reader is None:
            reader = self._open_reader()
        return reader

    def _open_reader(self) -> sqlite3.Connection:
        """A read-only connection for this thread (those of finished threads are closed)."""
        try:
            reader = self._connect()
            reader.execute("PRAGMA query_only = ON")
        except sqlite3.DatabaseError as e:
            raise IndexStoreError(f"{self.file}: not a readable SQLite catalog ({e})") from None
        with self._readers_lock:
            alive = []
            for thread, conn in self._readers:
                if thread.is_alive():
                    alive.append((thread, conn))
                else:
                    conn.close()
            self._readers = [*alive, (threading.current_thread(), reader)]
        self._local.conn = reader
        return reader

    def _init_schema(self) -> None:
        version = self._writer.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise IndexStoreError(
                f"{self.file}: catalog schema {version} is newer than this "
                f"zoolens reads ({SCHEMA_VERSION}); upgrade zoolens"
            )
        with self.write(bump=False) as conn:
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                for stmt in _SCHEMA.strip().split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                for key, value in (("version", "0"), ("epoch", "0"), ("created_at", now_iso())):
                    conn.execute("INSERT INTO meta VALUES (?, ?)", (key, value))
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                log.info("created index catalog %s", self.file)

    def close(self) -> None:
        with self.lock, self._readers_lock:
            for _, conn in self._readers:
                conn.close()
            self._readers = []
            self._writer.close()

    # -- transactions ------------------------------------------------------------------
    @contextmanager
    def write(self, bump: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``); on success bumps ``version`` if anything
        changed, and commits."""
        with self.lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            self._writing = threading.get_ident()
            try:
                before = conn.total_changes
                yield conn
                if bump and conn.total_changes != before:
                    conn.execute(
                        "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'"
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            finally:
                self._writing = None

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction on this thread's connection: every query inside sees the same
        committed state (inside `write`: the writer's own); other threads are not held up."""
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    # -- meta ---------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, conn: sqlite3.Connection, **values: Any) -> None:
        for key, value in values.items():
            conn.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                (key, None if value is None else str(value)),
            )

    def state(self) -> tuple[int, int]:
        """``(epoch, version)`` of the committed catalog."""
        rows = dict(
            self.conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('epoch', 'version')"
            ).fetchall()
        )
        return int(rows["epoch"]), int(rows["version"])

    def high_water(self) -> int:
        """The largest row number ever allocated (0 when none)."""
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'models'").fetchone()
        return int(row[0]) if row else 0

    # -- reads --------------------------------------------------------------------------
    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM models").fetchone()[0])

    def rows(self) -> np.ndarray:
        return np.fromiter(
            (r for (r,) in self.conn.execute("SELECT row FROM models ORDER BY row")), dtype=np.int64
        )

    def select_rows(self, where_sql: str, params: Sequence[Any]) -> np.ndarray:
        cur = self.conn.execute(f"SELECT row FROM models WHERE {where_sql} ORDER BY row", params)
        return np.fromiter((r for (r,) in cur), dtype=np.int64)

    def embeddings(
        self, dim: int, after: int = 0, rows: np.ndarray | None = None, chunk: int = 20000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(rows, (n, dim) embeddings)`` chunks, all rows > `after` or the given rows."""
        if rows is not None:
            for s in range(0, len(rows), _CHUNK):
                part = [int(r) for r in rows[s : s + _CHUNK]]
                marks = ",".join("?" * len(part))
                got = self.conn.execute(
                    f"SELECT row, embedding FROM models WHERE row IN ({marks}) ORDER BY row", part
                ).fetchall()
                yield self._stack(got, dim)
            return
        last = after
        while True:
            got = self.conn.execute(
                "SELECT row, embedding FROM models WHERE row > ? ORDER BY row LIMIT ?",
                (last, chunk),
            ).fetchall()
            if not got:
                return
            last = got[-1][0]
            yield self._stack(got, dim)

    @staticmethod
    def _stack(got: list[tuple[int, bytes]], dim: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.array([r for r, _ in got], dtype=np.int64)
        return rows, from_blobs([b for _, b in got], dim)

    def tombstones_since(self, version: int) -> np.ndarray:
        cur = self.conn.execute("SELECT row FROM tombstones WHERE version > ?", (version,))
        return np.fromiter((r for (r,) in cur), dtype=np.int64)

    def record(self, key: str, by: str = "id") -> dict[str, Any] | None:
        """The row of model `key` (by ``id`` or ``row``) as a dict, or None."""
        cur = self.conn.execute(
            "SELECT row, id, source, content_hash, metadata, encoder_id, added_at, embedding "
            f"FROM models WHERE {'row' if by == 'row' else 'id'} = ?",
            (key,),
        )
        row = cur.fetchone()
        if row is None:
            return None
        names = [d[0] for d in cur.description]
        rec = dict(zip(names, row, strict=True))
        rec["metadata"] = json.loads(rec["metadata"])
        return rec

    def _pairs_where_in(self, select: str, column: str, values: Sequence[Any]) -> dict[Any, Any]:
        """``{column: select}`` for rows whose `column` is in `values` (chunked IN queries)."""
        out: dict[Any, Any] = {}
        for s in range(0, len(values), _CHUNK):
            part = list(values[s : s + _CHUNK])
            marks = ",".join("?" * len(part))
            sql = f"SELECT {column}, {select} FROM models WHERE {column} IN ({marks})"
            out.update(self.conn.execute(sql, part).fetchall())
        return out

    def ids_for_rows(self, rows: Sequence[int]) -> dict[int, str]:
        return self._pairs_where_in("id", "row", [int(r) for r in rows])

    def records_for_rows(
        self, rows: Sequence[int], embedding: bool = False
    ) -> dict[int, dict[str, Any]]:
        """``{row: {"id", "metadata"[, "embedding" (d,)]}}`` of the `rows` present."""
        cols = "row, id, metadata" + (", embedding" if embedding else "")
        out: dict[int, dict[str, Any]] = {}
        for s in range(0, len(rows), _CHUNK):
            part = [int(r) for r in rows[s : s + _CHUNK]]
            marks = ",".join("?" * len(part))
            for row, *rest in self.conn.execute(
                f"SELECT {cols} FROM models WHERE row IN ({marks})", part
            ):
                rec = {"id": rest[0], "metadata": json.loads(rest[1])}
                if embedding:
                    rec["embedding"] = from_blobs([rest[2]], len(rest[2]) // 4)[0]
                out[row] = rec
        return out

    def existing(self, column: str, values: Sequence[str], select: str = "id") -> dict[str, Any]:
        """``{value: select}`` for the values of `column` (``id`` or ``content_hash``) present."""
        assert column in ("id", "content_hash") and select in ("id", "row")
        return self._pairs_where_in(select, column, values)

    # -- writes (inside `write`) ----------------------------------------------------------
    def unique_ids(self, wanted: Sequence[str]) -> list[str]:
        """`wanted` ids with ``-2``, ``-3``… appended where taken (in the catalog or earlier)."""
        taken = set(self.existing("id", wanted))
        out: list[str] = []
        seen: set[str] = set()
        for base in wanted:
            new, n = base, 1
            while new in seen or new in taken or (new != base and self._has_id(new)):
                n += 1
                new = f"{base}-{n}"
            if new != base:
                log.info("id %r is taken; using %r", base, new)
            seen.add(new)
            out.append(new)
        return out

    def _has_id(self, model_id: str) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM models WHERE id = ?", (model_id,)).fetchone()
            is not None
        )

    def insert(
        self,
        conn: sqlite3.Connection,
        ids: Sequence[str],
        sources: Sequence[str | None],
        hashes: Sequence[str | None],
        metadata: Sequence[dict[str, Any]],
        encoder_id: str,
        embeddings: np.ndarray,
    ) -> np.ndarray:
        """Insert rows (ids already unique) and return their row numbers."""
        start = self.high_water() + 1
        rows = np.arange(start, start + len(ids), dtype=np.int64)
        added = now_iso()
        conn.executemany(
            "INSERT INTO models (row, id, source, content_hash, metadata, encoder_id, embedding, "
            "added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (int(r), i, s, h, to_json(m), encoder_id, to_blob(e), added)
                for r, i, s, h, m, e in zip(
                    rows, ids, sources, hashes, metadata, embeddings, strict=True
                )
            ],
        )
        return rows

    def delete_rows(self, conn: sqlite3.Connection, rows: Sequence[int]) -> None:
        version = self.state()[1] + 1  # the version this transaction commits as
        conn.executemany("DELETE FROM models WHERE row = ?", [(int(r),) for r in rows])
        conn.executemany(
            "INSERT OR REPLACE INTO tombstones VALUES (?, ?)", [(int(r), version) for r in rows]
        )
