"""Metadata columns held in memory, so a filtered search costs milliseconds at 10⁶ models.

Filtering with SQL would parse every row's JSON on every query (seconds at 10⁶). Instead each
metadata key used in a filter is read once into numpy arrays and then kept in step with the
catalog like the vector index: rows added since are appended, tombstoned rows dropped.

The semantics are those of `zoolens.index.filters.to_sql` (tests hold them equal): numbers and
booleans compare as numbers with ``=``, only JSON numbers take part in ranges, strings compare
with strings, arrays and objects as their JSON text, ``None`` means missing or null.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoolens.index.catalog import Catalog
from zoolens.index.filters import Condition, json_path

log = logging.getLogger(__name__)

_RANGE: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass
class Column:
    """One metadata key over the catalog rows.

    Args:
        rows: sorted catalog rows, ``(n,)`` int64.
        number: value of JSON numbers and booleans (1 / 0), NaN otherwise, ``(n,)``.
        is_bool: the value is a JSON boolean (excluded from ranges), ``(n,)``.
        codes: index into `vocab` of string values (arrays / objects as JSON text), -1 for
            the others, ``(n,)`` int64.
        vocab: the distinct strings.
    """

    rows: np.ndarray
    number: np.ndarray
    is_bool: np.ndarray
    codes: np.ndarray
    vocab: dict[str, int]

    @classmethod
    def read(cls, catalog: Catalog, key: str, after: int = 0) -> Column:
        """The column of `key` for catalog rows above `after`."""
        path = json_path(key)
        cur = catalog.conn.execute(
            "SELECT row, json_type(metadata, ?), json_extract(metadata, ?) FROM models "
            "WHERE row > ? ORDER BY row",
            (path, path, after),
        )
        rows, number, is_bool, codes = [], [], [], []
        vocab: dict[str, int] = {}
        for row, kind, value in cur:
            rows.append(row)
            numeric = kind in ("integer", "real", "true", "false")
            number.append(float(value) if numeric else np.nan)
            is_bool.append(kind in ("true", "false"))
            codes.append(
                vocab.setdefault(value, len(vocab)) if kind in ("text", "array", "object") else -1
            )
        return cls(
            np.array(rows, dtype=np.int64),
            np.array(number, dtype=np.float64),
            np.array(is_bool, dtype=bool),
            np.array(codes, dtype=np.int64),
            vocab,
        )

    def extend(self, other: Column) -> None:
        """Append `other`'s rows (all above this column's), merging vocabularies."""
        remap = np.array(
            [self.vocab.setdefault(t, len(self.vocab)) for t in other.vocab] + [-1], dtype=np.int64
        )  # remap[-1] keeps -1
        self.rows = np.concatenate([self.rows, other.rows])
        self.number = np.concatenate([self.number, other.number])
        self.is_bool = np.concatenate([self.is_bool, other.is_bool])
        self.codes = np.concatenate([self.codes, remap[other.codes]])

    def drop(self, rows: np.ndarray) -> None:
        keep = ~np.isin(self.rows, rows)
        self.rows, self.number = self.rows[keep], self.number[keep]
        self.is_bool, self.codes = self.is_bool[keep], self.codes[keep]

    # -- evaluation ----------------------------------------------------------------------
    def mask(self, op: str, value: Any) -> np.ndarray:
        """Boolean mask of the rows satisfying ``key op value``."""
        if op == "in":
            out = np.zeros(len(self.rows), dtype=bool)
            for v in value:
                if v is not None:
                    out |= self._equal(v)
            return out
        if value is None:
            missing = np.asarray(np.isnan(self.number) & (self.codes < 0))
            return missing if op == "=" else ~missing
        if op == "=":
            return self._equal(value)
        if op == "!=":
            return ~self._equal(value)
        compare = _RANGE[op]
        if isinstance(value, str):
            ok = np.array([compare(t, value) for t in self.vocab] + [False], dtype=bool)
            return np.asarray(ok[self.codes])
        with np.errstate(invalid="ignore"):
            return np.asarray(compare(self.number, float(value)) & ~self.is_bool)

    def _equal(self, value: Any) -> np.ndarray:
        if isinstance(value, (bool, int, float)):
            with np.errstate(invalid="ignore"):
                return np.asarray(self.number == float(value))
        return np.asarray(self.codes == self.vocab.get(value, -2))


class MetadataColumns:
    """The columns of the keys filters have used, kept at the catalog's state.

    Args:
        catalog: the catalog they come from.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._columns: dict[str, Column] = {}
        self._state = (-1, -1)
        self._high = 0

    def ready(self, conditions: list[Condition]) -> bool:
        """Whether `select` of `conditions` changes nothing at the open transaction's state
        (so concurrent searches may call it side by side)."""
        if not conditions:
            return True
        return self._state == self.catalog.state() and all(
            key in self._columns for key, _, _ in conditions
        )

    def select(self, conditions: list[Condition]) -> np.ndarray:
        """Sorted rows matching every condition (call inside a catalog transaction, alone
        unless `ready`)."""
        self._sync()
        rows, out = None, None
        for key, op, value in conditions:
            column = self._column(key)  # every column holds the same rows
            mask = column.mask(op, value)
            rows, out = column.rows, mask if out is None else out & mask
        if rows is None or out is None:
            return self.catalog.rows()
        return np.asarray(rows[out])

    def _column(self, key: str) -> Column:
        if key not in self._columns:
            self._columns[key] = Column.read(self.catalog, key)
            log.debug("loaded metadata column %r (%d rows)", key, len(self._columns[key].rows))
        return self._columns[key]

    def _sync(self) -> None:
        epoch, version = self.catalog.state()
        if (epoch, version) == self._state:
            return
        if epoch != self._state[0]:
            self._columns.clear()
        elif self._columns:
            removed = self.catalog.tombstones_since(self._state[1])
            for key, column in self._columns.items():
                column.drop(removed)
                column.extend(Column.read(self.catalog, key, after=self._high))
        self._high = self.catalog.high_water()
        self._state = (epoch, version)
