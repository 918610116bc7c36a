"""The write paths of `ModelIndex`: batched add, committing a batch, and re-embedding.

Each batch is loaded, deduplicated by content hash, embedded, then committed in one SQLite
transaction: a process killed at any point loses at most the batch in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from zoolens.errors import EncoderMismatchError, ZoolensError
from zoolens.errors import IndexError as IndexStoreError
from zoolens.index.catalog import to_blob
from zoolens.index.interface import interface_metadata
from zoolens.index.sources import Entry

if TYPE_CHECKING:
    from zoolens.index.model_index import ModelIndex
    from zoolens.ir import Net, TensorSet
    from zoolens.nn.base import Encoder

log = logging.getLogger(__name__)


@dataclass
class AddReport:
    """What an add did.

    Args:
        added: ids of the models added.
        duplicates: ``(path or label, id already holding the same weights)``.
        failed: ``(path or label, error message)`` of the models skipped.
    """

    added: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"added {len(self.added)}, {len(self.duplicates)} duplicate(s) skipped, "
            f"{len(self.failed)} failed"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "duplicates": [{"item": a, "existing_id": b} for a, b in self.duplicates],
            "failed": [{"item": a, "error": b} for a, b in self.failed],
        }


def describe_error(e: BaseException) -> str:
    """The message of a zoolens error, or ``Type: message`` of anything else."""
    return str(e) if isinstance(e, ZoolensError) else f"{type(e).__name__}: {e}"


def add_entries(
    index: ModelIndex, entries: list[Entry], report: AddReport, batch_size: int, progress: bool
) -> None:
    """Add `entries` batch by batch, recording the outcome in `report`."""
    if not entries:
        return
    encoder = index.encoder
    seen: dict[str, str] = {}  # content hash → id, for models added earlier in this call
    starts: Any = range(0, len(entries), max(1, batch_size))
    if progress:
        from zoolens.progress import progress_bar

        starts = progress_bar(starts, desc="adding", unit="batch")
    for s in starts:
        _add_batch(index, encoder, entries[s : s + batch_size], seen, report)
    log.info("%s: %s", index.path, report)


def _add_batch(
    index: ModelIndex, encoder: Encoder, batch: list[Entry], seen: dict[str, str], report: AddReport
) -> None:
    from zoolens.nn.base import as_model

    loaded: list[tuple[Entry, Net | TensorSet, str]] = []
    for entry in batch:
        try:
            model = as_model(entry.item)
            entry.metadata = {**entry.metadata, **interface_metadata(model)}
            loaded.append((entry, model, model.content_hash()))
        except Exception as e:  # a bad file must not stop the batch
            report.failed.append((entry.label, describe_error(e)))
            log.info("skipped %s: %s", entry.label, describe_error(e))
    known = index.catalog.existing("content_hash", [h for _, _, h in loaded])
    fresh = []
    for entry, model, h in loaded:
        if h in known or h in seen:
            report.duplicates.append((entry.label, known.get(h) or seen[h]))
        else:
            fresh.append((entry, model, h))
    embeddings, kept = embed_models(
        encoder, [e.label for e, _, _ in fresh], [m for _, m, _ in fresh], report.failed
    )
    fresh = [fresh[i] for i in kept]
    if not fresh:
        return
    added, dups = commit_batch(
        index,
        [e.id for e, _, _ in fresh],
        [e.source for e, _, _ in fresh],
        [h for _, _, h in fresh],
        [e.metadata for e, _, _ in fresh],
        embeddings,
        encoder.id,
    )
    report.duplicates.extend((fresh[i][0].label, existing) for i, existing in dups)
    report.added.extend(added)
    new = [i for i in range(len(fresh)) if i not in {d for d, _ in dups}]
    seen.update((fresh[i][2], model_id) for i, model_id in zip(new, added, strict=True))


def embed_models(
    encoder: Encoder,
    labels: Sequence[str],
    models: Sequence[Net | TensorSet],
    failed: list[tuple[str, str]],
) -> tuple[np.ndarray, list[int]]:
    """Embed `models` together, or one by one when the batch fails, to isolate bad ones.

    Returns:
        ``(embeddings, kept)``: rows for the models at positions `kept`.
    """
    if not models:
        return np.zeros((0, max(encoder.dim, 1)), dtype=np.float32), []
    try:
        return encoder.encode(list(models), batch_size=len(models)), list(range(len(models)))
    except Exception as e:
        log.info("batch embedding failed (%s); embedding one by one", describe_error(e))
    rows, kept = [], []
    for i, model in enumerate(models):
        try:
            rows.append(encoder.encode([model], batch_size=1))
            kept.append(i)
        except Exception as e:  # one unsupported model must not stop the rest
            failed.append((labels[i], describe_error(e)))
            log.info("skipped %s: %s", labels[i], describe_error(e))
    return (np.concatenate(rows) if rows else np.zeros((0, 1), np.float32)), kept


def commit_batch(
    index: ModelIndex,
    ids: Sequence[str],
    sources: Sequence[str | None],
    hashes: Sequence[str | None],
    metadata: Sequence[dict[str, Any]],
    embeddings: np.ndarray,
    encoder_id: str | None,
) -> tuple[list[str], list[tuple[int, str]]]:
    """Insert one batch in one transaction, skipping content hashes already present.

    Returns:
        ``(ids added, [(position in batch, id already holding that hash)])``.
    """
    catalog = index.catalog
    with catalog.write() as conn:
        _check_encoder(index, catalog.meta(), encoder_id, embeddings.shape[1], conn)
        known = catalog.existing("content_hash", [h for h in hashes if h])
        keep: list[int] = []
        dups: list[tuple[int, Any]] = []
        first: dict[str, int] = {}
        for i, h in enumerate(hashes):
            if h and (h in known or h in first):
                dups.append((i, known.get(h, first.get(h))))
            else:
                keep.append(i)
                if h:
                    first[h] = len(keep) - 1
        final = catalog.unique_ids([ids[i] for i in keep])
        if keep:
            catalog.insert(
                conn,
                final,
                [sources[i] for i in keep],
                [hashes[i] for i in keep],
                [metadata[i] for i in keep],
                catalog.meta()["encoder_id"],
                embeddings[keep],
            )
    return final, [(i, final[e] if isinstance(e, int) else e) for i, e in dups]


def _check_encoder(
    index: ModelIndex, meta: dict[str, str], encoder_id: str | None, dim: int, conn: Any
) -> None:
    recorded = meta.get("encoder_id")
    if recorded is None:
        if encoder_id is None:
            raise IndexStoreError(
                f"{index.path}: no encoder recorded; open the index with an "
                "encoder or pass encoder_id"
            )
        index.catalog.set_meta(conn, encoder_id=encoder_id)
    elif encoder_id is not None and encoder_id != recorded:
        raise EncoderMismatchError(
            f"{index.path}: embeddings of encoder {encoder_id} cannot join "
            f"an index of encoder {recorded}; use reembed to switch"
        )
    held = int(meta.get("dim") or 0)
    if held and held != dim:
        raise IndexStoreError(
            f"{index.path}: embeddings of dimension {dim}; the index holds {held}"
        )
    if not held:
        index.catalog.set_meta(conn, dim=dim)


def reembed_all(
    index: ModelIndex,
    encoder: Encoder,
    source: str | None,
    batch_size: int,
    progress: bool,
    drop_missing: bool,
) -> AddReport:
    """Embed every model's source with `encoder`, then switch the catalog in one transaction."""
    catalog = index.catalog
    with catalog.snapshot():
        version = catalog.state()[1]
        todo = catalog.conn.execute("SELECT row, id, source FROM models ORDER BY row").fetchall()
    report = AddReport()
    done_rows: list[int] = []
    chunks: list[np.ndarray] = []
    starts: Any = range(0, len(todo), max(1, batch_size))
    if progress:
        from zoolens.progress import progress_bar

        starts = progress_bar(starts, desc="re-embedding", unit="batch")
    for s in starts:
        rows, vecs = _reembed_batch(encoder, todo[s : s + batch_size], report)
        done_rows.extend(rows)
        chunks.append(vecs)
    if report.failed and not drop_missing:
        first = report.failed[0]
        raise IndexStoreError(
            f"{index.path}: cannot re-embed {len(report.failed)} model(s) "
            f"(first: {first[0]}: {first[1]}); fix them, or drop them with "
            "drop_missing=True (--drop-missing)"
        )
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)
    dropped = sorted({r for r, _, _ in todo} - set(done_rows))
    _switch(index, encoder, source, version, done_rows, vectors, dropped)
    return report


def _reembed_batch(
    encoder: Encoder, batch: list[tuple[int, str, str | None]], report: AddReport
) -> tuple[list[int], np.ndarray]:
    from zoolens.nn.base import as_model

    labels, models, rows = [], [], []
    for row, model_id, src in batch:
        if src is None:
            report.failed.append(
                (model_id, "added from memory or as an embedding: no source file to re-read")
            )
            continue
        try:
            models.append(as_model(src))
        except Exception as e:
            report.failed.append((model_id, describe_error(e)))
            continue
        labels.append(model_id)
        rows.append(row)
    vecs, kept = embed_models(encoder, labels, models, report.failed)
    report.added.extend(labels[i] for i in kept)
    return [rows[i] for i in kept], vecs


def _switch(
    index: ModelIndex,
    encoder: Encoder,
    source: str | None,
    version: int,
    rows: list[int],
    vectors: np.ndarray,
    dropped: list[int],
) -> None:
    catalog = index.catalog
    with catalog.write() as conn:
        if catalog.state()[1] != version:
            raise IndexStoreError(
                f"{index.path}: the index changed while re-embedding; run reembed again"
            )
        conn.executemany(
            "UPDATE models SET embedding = ?, encoder_id = ? WHERE row = ?",
            [(to_blob(v), encoder.id, int(r)) for r, v in zip(rows, vectors, strict=True)],
        )
        catalog.delete_rows(conn, dropped)
        epoch = catalog.state()[0]
        dim = vectors.shape[1] if len(rows) else (encoder.dim or None)
        catalog.set_meta(
            conn, encoder_id=encoder.id, encoder_source=source, dim=dim, epoch=epoch + 1
        )
    log.info("%s: re-embedded %d models with %s", index.path, len(rows), encoder.id)
