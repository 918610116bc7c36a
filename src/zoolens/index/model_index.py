"""`ModelIndex`: the persistent catalog + vector index users add models to and search.

A directory holds ``catalog.sqlite`` (the truth: ids, sources, content hashes, metadata,
embeddings), ``vectors.*.faiss`` (a cache of the FAISS index, rebuilt from the catalog when
missing or stale) and ``encoders/<encoder id>/`` (a copy of the encoder, so path queries work
without naming it again).

Searching (``search(query, k) -> (scores, ids)``, FAISS-style) lives in
`zoolens.index.searching`; adding in `zoolens.index.adding`; pages and heads in
`zoolens.index.browse`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from zoolens.errors import IndexError as IndexStoreError
from zoolens.errors import LoadError
from zoolens.index.adding import AddReport, add_entries, commit_batch, reembed_all
from zoolens.index.browse import Browse
from zoolens.index.catalog import Catalog, from_blobs
from zoolens.index.encoders import (
    bind_encoder,
    encoder_source,
    load_recorded_encoder,
    resolve_encoder,
    save_encoder_copy,
)
from zoolens.index.filters import normalise_where, to_sql
from zoolens.index.searching import NO_HIT, Query, Search, Where
from zoolens.index.sources import Item, expand, zoo_entries
from zoolens.index.sync import record_config, recorded_config
from zoolens.index.vectors import KINDS, IndexConfig, unit_rows

if TYPE_CHECKING:
    from zoolens.nn.base import Encoder

__all__ = ["NO_HIT", "ModelIndex", "Query", "Where"]
log = logging.getLogger(__name__)


class ModelIndex(Browse, Search):
    """A searchable, durable collection of embedded models. Make one with `ModelIndex.open`."""

    def __init__(self, catalog: Catalog, config: IndexConfig, autosave: bool = True) -> None:
        super().__init__(catalog, config)
        self.path = catalog.dir
        self.autosave = autosave
        self._encoder: Encoder | None = None

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        encoder: Encoder | str | None = "default",
        *,
        create: bool = True,
        kind: str | None = None,
        config: IndexConfig | None = None,
        autosave: bool = True,
    ) -> ModelIndex:
        """Open (or create) the index in directory `path`.

        Args:
            path: the index directory.
            encoder: an `Encoder`, a name or a saved encoder directory; None uses the one the
                index recorded. Another encoder than the recorded one is refused
                (`EncoderMismatchError`) unless the index is empty; change it with `reembed`.
            create: create the index when `path` holds none.
            kind: ``"auto"``, ``"flat"``, ``"hnsw"``, ``"ivf"`` or ``"ivfpq"``; recorded for
                later opens together with `config`'s ``ivf_nlist`` and ``pq_m`` (a change of
                these rebuilds the vector index). None keeps the recorded ones (default
                ``"auto"``).
            config: vector-index hyper-parameters (the recorded kind, ``ivf_nlist`` and
                ``pq_m`` replace its own unless `kind` is given).
            autosave: write the vector-index cache after each add / remove.

        Returns:
            The open index; use it as a context manager or call `close`.
        """
        catalog = Catalog(os.fspath(path), create=create)
        meta = catalog.meta()
        if kind is not None and kind not in (*KINDS, "auto"):
            raise IndexStoreError(f"unknown index kind {kind!r}; use auto, {', '.join(KINDS)}")
        cfg = config or IndexConfig()
        if kind is None:
            cfg = recorded_config(meta, cfg)
        else:
            cfg = record_config(catalog, replace(cfg, kind=kind))
        index = cls(catalog, cfg, autosave)
        if encoder is not None:
            index._encoder = bind_encoder(catalog, encoder)
        return index

    @staticmethod
    def exists(path: str | os.PathLike[str]) -> bool:
        from zoolens.index.catalog import CATALOG_FILE

        return os.path.isfile(os.path.join(os.fspath(path), CATALOG_FILE))

    def close(self) -> None:
        """Save the vector cache if it changed and close the catalog."""
        try:
            if self.autosave:
                self.flush()
        finally:
            self.catalog.close()

    def __enter__(self) -> ModelIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the encoder ---------------------------------------------------------------------
    @property
    def encoder_id(self) -> str | None:
        return self.catalog.meta().get("encoder_id")

    @property
    def encoder(self) -> Encoder:
        """The index's encoder, loaded from its saved copy or recorded source when first used."""
        if self._encoder is None:
            self._encoder = load_recorded_encoder(self.catalog)
        return self._encoder

    # -- adding --------------------------------------------------------------------------
    def add(
        self,
        items: Sequence[Item] | Item,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
        *,
        batch_size: int = 64,
        progress: bool = True,
        recursive: bool = False,
    ) -> AddReport:
        """Embed and add models; each batch is committed on its own.

        Args:
            items: paths (files, net directories, zoo directories) or Nets / TensorSets.
            metadata: one dict for every item, or one per item.
            ids: one id per item; by default a file's name without extension, a directory's
                name, a zoo's manifest ids. Taken ids get ``-2``, ``-3``… appended.
            batch_size: models loaded, embedded and committed together; a crash loses at
                most the batch in flight.
            progress: show a progress bar.
            recursive: add the models found inside plain directories.

        Returns:
            An `AddReport`: ids added, duplicates skipped (same content hash), failures.
        """
        entries, failed = expand(items, metadata, ids, recursive)
        report = AddReport(failed=list(failed))
        add_entries(self, entries, report, batch_size, progress)
        self._after_write()
        return report

    def add_zoo(
        self, zoo_dir: str | os.PathLike[str], *, batch_size: int = 64, progress: bool = True
    ) -> AddReport:
        """Add every model of a zoo directory; its manifest row becomes the metadata."""
        entries, failed = zoo_entries(os.fspath(zoo_dir))
        if failed and not entries:
            raise LoadError(f"{zoo_dir}: {failed[0][1]}")
        report = AddReport(failed=list(failed))
        add_entries(self, entries, report, batch_size, progress)
        self._after_write()
        return report

    def add_embeddings(
        self,
        embeddings: np.ndarray,
        ids: Sequence[str],
        *,
        sources: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        content_hashes: Sequence[str | None] | None = None,
        encoder_id: str | None = None,
        batch_size: int = 10_000,
    ) -> list[str]:
        """Add precomputed embeddings (rows are L2-normalised before storing).

        Args:
            embeddings: ``(n, d)``.
            ids: n wanted ids (taken ones get a suffix).
            sources, metadata, content_hashes: optional, n each.
            encoder_id: the encoder that made them; must match the index's. Required when
                the index has none recorded yet and was opened without an encoder.
            batch_size: rows per committed transaction.

        Returns:
            The ids added (rows whose content hash is already present are skipped).
        """
        n = len(ids)
        vectors = unit_rows(np.asarray(embeddings).reshape(n, -1))
        sources = list(sources) if sources is not None else [None] * n
        metas = [dict(m) for m in metadata] if metadata is not None else [{} for _ in range(n)]
        hashes = list(content_hashes) if content_hashes is not None else [None] * n
        enc_id = encoder_id or (self._encoder.id if self._encoder else None)
        added: list[str] = []
        for s in range(0, n, batch_size):
            part = slice(s, s + batch_size)
            got, _ = commit_batch(
                self,
                list(ids[part]),
                sources[part],
                hashes[part],
                metas[part],
                vectors[part],
                enc_id,
            )
            added.extend(got)
        self._after_write()
        return added

    def reembed(
        self,
        encoder: Encoder | str | os.PathLike[str],
        *,
        batch_size: int = 64,
        progress: bool = True,
        drop_missing: bool = False,
    ) -> AddReport:
        """Re-embed every model from its source file with `encoder`, which the index then uses.

        Atomic: the catalog switches in one transaction after every embedding is computed.

        Args:
            encoder: the new encoder (object, name or directory).
            batch_size: models embedded together.
            progress: show a progress bar.
            drop_missing: remove models whose source cannot be read (added from memory, file
                gone or broken) instead of refusing.

        Returns:
            An `AddReport`: ``added`` lists the re-embedded ids, ``failed`` the dropped ones.
        """
        enc = resolve_encoder(encoder)
        report = reembed_all(self, enc, encoder_source(encoder), batch_size, progress, drop_missing)
        self._encoder = enc
        save_encoder_copy(self.path, enc)
        self.reset_vectors()
        self._after_write()
        return report

    def remove(self, ids: str | Iterable[str], missing_ok: bool = False) -> list[str]:
        """Remove models by id, all or none (unknown ids raise unless `missing_ok`).

        Returns:
            The ids removed.
        """
        wanted = [ids] if isinstance(ids, str) else list(ids)
        with self.catalog.write() as conn:
            found = self.catalog.existing("id", wanted, select="row")
            missing = [i for i in wanted if i not in found]
            if missing and not missing_ok:
                raise IndexStoreError(
                    f"{self.path}: no model with id {', '.join(missing[:5])}"
                    + (" …" if len(missing) > 5 else "")
                )
            self.catalog.delete_rows(conn, list(found.values()))
        self._after_write()
        return list(found)

    def _after_write(self) -> None:
        """Bring loaded vectors up to date; with autosave also load them and save the cache."""
        if self.vectors_loaded() or self.autosave:
            with self.rw.exclusive(), self.catalog.snapshot():
                self.sync()
        if self.autosave:
            self.flush()

    # -- reading (search and query_vectors: `zoolens.index.searching`) -------------------
    def get(self, model_id: str, embedding: bool = False) -> dict[str, Any]:
        """One model's record: id, source, content_hash, metadata, encoder_id, added_at.

        Args:
            model_id: the id.
            embedding: also return its ``(d,)`` embedding.
        """
        rec = self.catalog.record(model_id)
        if rec is None:
            raise IndexStoreError(f"{self.path}: no model with id {model_id!r}")
        blob = rec.pop("embedding")
        if embedding:
            rec["embedding"] = from_blobs([blob], len(blob) // 4)[0]
        return rec

    def records(self, where: Where = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Records of the models matching `where` (all by default), in insertion order."""
        sql, params = to_sql(normalise_where(where))
        with self.catalog.snapshot() as conn:
            cur = conn.execute(
                "SELECT id, source, content_hash, metadata, added_at FROM models WHERE "
                f"{sql} ORDER BY row" + (f" LIMIT {int(limit)}" if limit else ""),
                params,
            )
            return [
                {"id": i, "source": s, "content_hash": h, "metadata": json.loads(m), "added_at": a}
                for i, s, h, m, a in cur
            ]

    def ids(self) -> list[str]:
        """Every model id, in insertion order."""
        with self.catalog.snapshot() as conn:
            return [i for (i,) in conn.execute("SELECT id FROM models ORDER BY row")]

    def __len__(self) -> int:
        return self.catalog.count()

    def __contains__(self, model_id: object) -> bool:
        return isinstance(model_id, str) and self.catalog.record(model_id) is not None

    def stats(self) -> dict[str, Any]:
        """count, encoder, dim, kind, size on disk (bytes) and bookkeeping."""
        with self.catalog.snapshot():
            meta = self.catalog.meta()
            count = self.catalog.count()
            epoch, version = self.catalog.state()
        size = sum(
            os.path.getsize(os.path.join(d, f))
            for d, _, fs in os.walk(self.path)
            for f in fs
            if os.path.exists(os.path.join(d, f))
        )
        return {
            "path": self.path,
            "count": count,
            "encoder": meta.get("encoder_id"),
            "encoder_source": meta.get("encoder_source"),
            "dim": self.dim or None,
            "kind": self.current_kind(count),
            "kind_setting": self.config.kind,
            "ivf_nlist": self.config.ivf_nlist,
            "pq_m": self.config.pq_m,
            "vector_cache": self.cache_state(epoch, version),
            "size_bytes": size,
            "schema_version": self.catalog.conn.execute("PRAGMA user_version").fetchone()[0],
            "version": version,
            "epoch": epoch,
            "created_at": meta.get("created_at"),
        }
