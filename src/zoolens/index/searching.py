"""The query side of `ModelIndex`: query vectors from anything a user holds, and searches that
filter by metadata, run side by side and answer from one committed catalog state.

Search follows FAISS: ``search(query, k) -> (scores, ids)``, both ``(n_queries, k)``, best first;
where fewer than k models qualify the remaining slots hold score ``-inf`` and id ``NO_HIT`` (-1).
Scores are cosine similarities (stored embeddings and queries are L2-normalised).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from zoolens.errors import IndexError as IndexStoreError
from zoolens.errors import LoadError
from zoolens.index.batching import SearchBatcher
from zoolens.index.catalog import Catalog, from_blobs
from zoolens.index.columns import MetadataColumns
from zoolens.index.filters import Condition, normalise_where
from zoolens.index.interface import query_interface
from zoolens.index.sources import Item, is_model
from zoolens.index.sync import VectorSync
from zoolens.index.vectors import IndexConfig, unit_rows

if TYPE_CHECKING:
    from zoolens.nn.base import Encoder

log = logging.getLogger(__name__)

NO_HIT = -1
Where = Mapping[str, Any] | Iterable[Condition] | None
Query = Item | np.ndarray | Sequence[Any]
Found = TypeVar("Found")  # what a search reads for its hit rows: ids or records


class Search(VectorSync):
    """Mixed into `ModelIndex` (which provides `encoder` and `path`): searching."""

    path: str
    if TYPE_CHECKING:

        @property
        def encoder(self) -> Encoder: ...

    def __init__(self, catalog: Catalog, config: IndexConfig) -> None:
        super().__init__(catalog, config)
        self._columns = MetadataColumns(catalog)
        self._batcher = SearchBatcher()  # concurrent one-query searches share FAISS calls

    def search(
        self, query: Query, k: int = 10, where: Where = None, *, same_interface: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k models most similar to each query, filtered by metadata before ranking.

        Args:
            query: a path, a Net / TensorSet, a model id of this index, an embedding ``(d,)``
                or a batch ``(n, d)``, or a list of paths / nets.
            k: hits per query.
            where: metadata filter (see `zoolens.index.filters`): k hits come back whenever
                at least k models match.
            same_interface: keep only models whose ``input_shape`` and ``n_outputs``
                metadata equal the query's (one query model: a path, Net or id). Rows of
                indexes built before zoolens recorded them lack the keys and never match
                (see `zoolens.index.interface`).

        Returns:
            ``(scores, ids)``, both ``(n_queries, k)``: float32 cosine similarities (best
            first) and an object array of model ids; ``-inf`` and ``NO_HIT`` (-1) where no
            model fills the slot.
        """
        conditions = normalise_where(where)
        if same_interface:
            query, extra = query_interface(query, self.catalog)
            conditions += extra
        queries = self.query_vectors(query)
        scores, rows, names = self._search(queries, k, conditions, self.catalog.ids_for_rows)
        ids = np.full(rows.shape, NO_HIT, dtype=object)
        hit = rows >= 0
        ids[hit] = [names.get(int(r), NO_HIT) for r in rows[hit]]
        return scores, ids

    def search_records(
        self, vector: np.ndarray, k: int, where: Where = None, *, embedding: bool = False
    ) -> list[tuple[float, dict[str, Any]]]:
        """The k best hits of one stored or unit query embedding with their records, read in
        the search's own snapshot (what a service answers with, in one transaction).

        Args:
            vector: ``(d,)`` query embedding (L2-normalised here).
            k: hits wanted.
            where: metadata filter, as for `search`.
            embedding: also give each hit's stored ``(d,)`` embedding.

        Returns:
            ``[(score, {"id", "metadata"[, "embedding"]}), ...]``, best first, at most k.
        """
        queries = self.query_vectors(np.asarray(vector).reshape(1, -1))

        def fetch(rows: Sequence[int]) -> dict[int, dict[str, Any]]:
            return self.catalog.records_for_rows(rows, embedding)

        scores, rows, records = self._search(queries, k, normalise_where(where), fetch)
        return [
            (float(s), records[int(r)])
            for s, r in zip(scores[0], rows[0], strict=True)
            if int(r) in records
        ]

    def _search(
        self,
        queries: np.ndarray,
        k: int,
        conditions: list[Condition],
        fetch: Callable[[Sequence[int]], dict[int, Found]],
    ) -> tuple[np.ndarray, np.ndarray, dict[int, Found]]:
        """``(scores, rows, fetch(hit rows))`` at one committed state."""
        found = None
        with self.rw.shared(), self.catalog.snapshot():  # concurrent searches run side by side
            if self.in_step() and self._columns.ready(conditions):
                found = self._search_rows(queries, k, conditions, fetch, shared=True)
        if found is None:  # the vectors or columns must catch up first: alone
            with self.rw.exclusive(), self.catalog.snapshot():
                found = self._search_rows(queries, k, conditions, fetch, shared=False)
        assert found is not None  # only a shared hold gives up
        return found

    def _search_rows(
        self,
        queries: np.ndarray,
        k: int,
        conditions: list[Condition],
        fetch: Callable[[Sequence[int]], dict[int, Found]],
        shared: bool,
    ) -> tuple[np.ndarray, np.ndarray, dict[int, Found]] | None:
        """Search at the open snapshot; None (under a `shared` hold) when the vectors turn
        out to be out of step with the catalog, which only an exclusive hold may mend."""
        allowed = self._columns.select(conditions) if conditions else None
        for attempt in range(2):
            vectors = self.sync()
            if shared and allowed is None and len(queries) == 1:
                scores, rows = self._batcher.search(vectors, queries, k)
            else:
                scores, rows = vectors.search(queries, k, allowed)
            held = np.unique(rows[rows >= 0]).tolist()
            names = fetch(held)
            if len(names) == len(held) or attempt:
                break
            if shared:
                return None
            log.warning("%s: vector index out of step with the catalog; reconciling", self.path)
            self.reset_vectors()
        return scores, rows, names

    def query_vectors(self, query: Query) -> np.ndarray:
        """``(n, d)`` unit query vectors for anything `search` accepts."""
        if (
            isinstance(query, (list, tuple))
            and query
            and (isinstance(query[0], (str, os.PathLike)) or is_model(query[0]))
        ):
            return np.concatenate([self.query_vectors(q) for q in cast("Sequence[Item]", query)])
        if is_model(query):
            return self.encoder.encode([cast("Item", query)])
        if isinstance(query, (str, os.PathLike)):
            path = os.fspath(query)
            if os.path.exists(path):
                return self.encoder.encode([path])
            rec = self.catalog.record(path)
            if rec is None:
                raise LoadError(f"{path}: no such file, nor a model id in {self.path}")
            return from_blobs([rec["embedding"]], len(rec["embedding"]) // 4)
        vectors = np.asarray(query, dtype=np.float32)
        vectors = vectors[None] if vectors.ndim == 1 else vectors
        dim = self.dim
        if vectors.ndim != 2 or (dim and vectors.shape[1] != dim):
            raise IndexStoreError(
                f"query of shape {vectors.shape}; this index holds {dim}-dimensional embeddings"
            )
        return unit_rows(vectors)
