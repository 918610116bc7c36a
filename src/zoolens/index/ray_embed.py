"""Embedding on a Ray cluster: Ray Data loads checkpoints, encoder actors embed them.

The pipeline, streamed, in input order (the single-machine path is its local mode)::

    from_items(paths) ─map_batches(load_batch)──▶ nets, content hashes, interface metadata
                      ─map_batches(EncodeActor, concurrency=actors)──▶ vectors

Loading runs as stateless tasks; each actor holds one encoder replica and builds the graphs of
its batch itself (graphs depend on the encoder). Models whose content hash the index already
holds are hashed but not embedded, so an interrupted `add_with_ray` resumes where it stopped.
Paths must be readable by every node (a shared or replicated filesystem).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from zoolens.errors import ZoolensError
from zoolens.index.adding import AddReport, commit_batch, describe_error, embed_models
from zoolens.index.sources import Entry, expand
from zoolens.optional import optional_import

if TYPE_CHECKING:
    from zoolens.index.model_index import ModelIndex
    from zoolens.nn.base import Encoder

log = logging.getLogger(__name__)


@dataclass
class RayResult:
    """One input's outcome: `vector` ``(d,)`` unit float32, or None with `error` (or `known`)."""

    position: int
    content_hash: str
    metadata: dict[str, Any]
    vector: np.ndarray | None
    error: str
    known: bool


@contextlib.contextmanager
def ray_session(address: str) -> Iterator[Any]:
    """Connect to the cluster at `address` (``"local"``: start one in this process) for the
    block; a session already open is used as it is. Yields the ``ray`` module."""
    ray = optional_import("ray", "--ray", "ray")
    optional_import("ray.data", "--ray", "ray", package="ray[data]")
    if ray.is_initialized():
        yield ray
        return
    ray.init(
        address=None if address == "local" else address,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


def load_batch(batch: dict[str, np.ndarray], skip: frozenset[str]) -> dict[str, np.ndarray]:
    """Ray stage 1: load each path; a hash in `skip` is marked known and not passed on."""
    from zoolens.index.interface import interface_metadata
    from zoolens.nn.base import as_model

    out: dict[str, list[Any]] = {k: [] for k in ("position", "hash", "meta", "net", "error")}
    for position, path in zip(batch["position"], batch["path"], strict=True):
        h, meta, net, error = "", "{}", b"", ""
        try:
            model = as_model(str(path))
            h = model.content_hash()
            meta = json.dumps(interface_metadata(model))
            net = b"" if h in skip else pickle.dumps(model)  # in-cluster transport only
        except Exception as e:  # a bad file must not stop the run
            error = describe_error(e)
        for key, value in zip(out, (int(position), h, meta, net, error), strict=True):
            out[key].append(value)
    return {k: np.array(v, dtype=object if k == "net" else None) for k, v in out.items()}


class EncodeActor:
    """Ray stage 2: one encoder replica; embeds the loaded models of each batch.

    Args:
        encoder: the encoder (shipped once to the actor through Ray's object store).
        threads: torch threads inside the actor (None: torch's own).
    """

    def __init__(self, encoder: Encoder, threads: int | None) -> None:
        self.encoder, self.threads = encoder, threads

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from zoolens.nn.base import torch_threads

        n, dim = len(batch["position"]), self.encoder.dim
        vectors = np.zeros((n, dim), dtype=np.float32)  # (n, d); zeros where none
        errors = [str(e) for e in batch["error"]]
        todo = [i for i in range(n) if not errors[i] and len(batch["net"][i])]
        models = [pickle.loads(batch["net"][i]) for i in todo]
        failed: list[tuple[str, str]] = []
        with torch_threads(self.threads):
            z, kept = embed_models(self.encoder, [str(i) for i in todo], models, failed)
        for row, i in zip(z, (todo[j] for j in kept), strict=True):
            vectors[i] = row
        for label, message in failed:
            errors[int(label)] = message
        known = [not errors[i] and not len(batch["net"][i]) for i in range(n)]
        return {
            "position": batch["position"],
            "hash": batch["hash"],
            "meta": batch["meta"],
            "error": np.array(errors),
            "known": np.array(known),
            "vector": vectors,
        }


def ray_encode(
    encoder: Encoder,
    paths: Sequence[str],
    *,
    batch_size: int = 16,
    actors: int = 1,
    threads: int | None = None,
    skip: frozenset[str] = frozenset(),
) -> Iterator[RayResult]:
    """Embed `paths` on the connected Ray cluster (see `ray_session`), yielding in input order.

    Args:
        encoder: the encoder each actor holds a copy of.
        paths: checkpoint paths readable by every node.
        batch_size: models per Ray batch (loading and encoding).
        actors: encoder replicas (each takes one CPU; loading tasks take half a CPU).
        threads: torch threads per actor.
        skip: content hashes not to embed (yielded with ``known=True``).

    Returns:
        An iterator of `RayResult`, one per path, in order.
    """
    ray = optional_import("ray", "--ray", "ray")
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    data = ray.data.from_items(
        [{"position": i, "path": os.fspath(p)} for i, p in enumerate(paths)],
        override_num_blocks=max(1, min(len(paths), -(-len(paths) // batch_size))),
    )
    data = data.map_batches(
        load_batch, fn_kwargs={"skip": skip}, batch_size=batch_size, num_cpus=0.5
    )
    data = data.map_batches(
        EncodeActor,
        fn_constructor_args=(encoder, threads),
        batch_size=batch_size,
        concurrency=actors,
        num_cpus=1,
    )
    for batch in data.iter_batches(batch_size=batch_size, batch_format="numpy"):
        for i in range(len(batch["position"])):
            error = str(batch["error"][i])
            yield RayResult(
                position=int(batch["position"][i]),
                content_hash=str(batch["hash"][i]),
                metadata=json.loads(str(batch["meta"][i])),
                vector=None if error or batch["known"][i] else batch["vector"][i],
                error=error,
                known=bool(batch["known"][i]),
            )


def embed_with_ray(
    encoder: Encoder, paths: Sequence[str], address: str, **options: Any
) -> np.ndarray:
    """``(n, d)`` unit embeddings of `paths`, computed on the Ray cluster at `address`
    (``"local"`` for one started here); `options` as `ray_encode`'s."""
    from zoolens.nn.base import l2_normalise

    rows: list[np.ndarray] = []
    with ray_session(address):
        for r, path in zip(ray_encode(encoder, paths, **options), paths, strict=True):
            if r.vector is None:
                raise ZoolensError(f"{path}: {r.error or 'not embedded'}")
            rows.append(r.vector)
    return l2_normalise(np.stack(rows)) if rows else np.zeros((0, encoder.dim), np.float32)


def add_with_ray(
    index: ModelIndex,
    items: Sequence[str],
    address: str,
    *,
    metadata: dict[str, Any] | None = None,
    recursive: bool = False,
    batch_size: int = 16,
    actors: int = 1,
    threads: int | None = None,
) -> AddReport:
    """`ModelIndex.add` with loading and embedding on Ray; each batch of results is
    committed as it streams back (a killed run keeps every committed batch, and a re-run
    skips their content hashes)."""
    entries, failed = expand(list(items), metadata, None, recursive)
    report = AddReport(failed=list(failed))
    encoder = index.encoder
    with index.catalog.snapshot() as conn:
        got = conn.execute("SELECT content_hash FROM models WHERE content_hash IS NOT NULL")
        skip = frozenset(h for (h,) in got)
    seen: dict[str, str] = {}
    pending: list[tuple[Entry, RayResult]] = []
    paths = [e.item for e in entries]
    if not all(isinstance(p, (str, os.PathLike)) for p in paths):
        raise ZoolensError("--ray adds files only: add in-memory models without Ray")
    with ray_session(address):
        results = ray_encode(
            encoder,
            [os.fspath(cast("str", p)) for p in paths],
            batch_size=batch_size,
            actors=actors,
            threads=threads,
            skip=skip,
        )
        for r in results:
            entry = entries[r.position]
            if r.error:
                report.failed.append((entry.label, r.error))
            elif r.known or r.content_hash in seen:
                held = seen.get(r.content_hash) or _held_by(index, r.content_hash)
                report.duplicates.append((entry.label, held))
            else:
                entry.metadata = {**entry.metadata, **r.metadata}
                seen[r.content_hash] = entry.id
                pending.append((entry, r))
            if len(pending) >= batch_size:
                _commit(index, encoder.id, pending, report, seen)
        _commit(index, encoder.id, pending, report, seen)
    index._after_write()  # bring the vector index and its cache up to date
    return report


def _held_by(index: ModelIndex, content_hash: str) -> str:
    with index.catalog.snapshot():
        return str(index.catalog.existing("content_hash", [content_hash]).get(content_hash, ""))


def _commit(
    index: ModelIndex,
    encoder_id: str,
    pending: list[tuple[Entry, RayResult]],
    report: AddReport,
    seen: dict[str, str],
) -> None:
    if not pending:
        return
    added, dups = commit_batch(
        index,
        [e.id for e, _ in pending],
        [e.source for e, _ in pending],
        [r.content_hash for _, r in pending],
        [e.metadata for e, _ in pending],
        np.stack([r.vector for _, r in pending if r.vector is not None]),
        encoder_id,
    )
    report.duplicates.extend((pending[i][0].label, existing) for i, existing in dups)
    new = [i for i in range(len(pending)) if i not in {d for d, _ in dups}]
    seen.update((pending[i][1].content_hash, mid) for i, mid in zip(new, added, strict=True))
    report.added.extend(added)
    pending.clear()
