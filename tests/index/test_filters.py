"""Metadata filters: the string syntax, the dict forms, SQL and in-memory columns on real rows."""

from __future__ import annotations

import numpy as np
import pytest

from zoolens.index.catalog import Catalog
from zoolens.index.columns import MetadataColumns
from zoolens.index.filters import FilterError, normalise_where, parse_where, to_sql

ROWS = [
    {"task": "digits", "accuracy": 0.95, "seed": 3},
    {"task": "digits", "accuracy": 0.80, "seed": "3"},
    {"task": "fashion", "accuracy": 0.91, "tags": ["a", "é"]},
    {"task": "fashion", "accuracy": "n/a", "note": 'has "quotes"'},
    {"task.name": "dotted", "flag": True, "accuracy": None},
]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    catalog = Catalog(str(tmp_path_factory.mktemp("filters")))
    with catalog.write() as conn:
        catalog.set_meta(conn, encoder_id="e")
        catalog.insert(
            conn,
            [f"r{i}" for i in range(len(ROWS))],
            [None] * len(ROWS),
            [None] * len(ROWS),
            ROWS,
            "e",
            np.zeros((len(ROWS), 2), np.float32),
        )
    yield catalog
    catalog.close()


def by_sql(catalog, where) -> list[int]:
    sql, params = to_sql(normalise_where(where))
    return [r - 1 for r in catalog.select_rows(sql, params)]


def by_columns(catalog, where) -> list[int]:
    return [int(r) - 1 for r in MetadataColumns(catalog).select(normalise_where(where))]


CASES = [
    ({"task": "digits"}, [0, 1]),
    ({"accuracy": (">=", 0.9)}, [0, 2]),  # "n/a" never compares with a number
    ({"accuracy": [(">", 0.85), ("<", 0.93)]}, [2]),
    ({"task": ["digits", "fashion"]}, [0, 1, 2, 3]),
    ({"task": ("!=", "digits")}, [2, 3, 4]),  # != also matches a missing key
    ({"note": None}, [0, 1, 2, 4]),
    ({"accuracy": ("!=", None)}, [0, 1, 2, 3]),  # JSON null counts as missing
    ({"seed": 3}, [0]),  # the dict API compares JSON types exactly
    ({"task.name": "dotted"}, [4]),  # a dot is part of the key
    ({"flag": True}, [4]),
    ({"flag": (">=", 1)}, []),  # booleans take no part in ranges
    ({"note": 'has "quotes"'}, [3]),
    ({"tags": ["a", "é"]}, []),  # a list value means "in"
    ({"tags": '["a","é"]'}, [2]),  # an array compares as its JSON text
    ({"task": ("<", "e")}, [0, 1]),  # strings compare with strings only
    ({"task": "digits", "accuracy": ("<", 0.9)}, [1]),
    (None, [0, 1, 2, 3, 4]),
]


@pytest.mark.parametrize(("where", "rows"), CASES)
def test_sql_filters_select_the_right_rows(catalog, where, rows):
    assert by_sql(catalog, where) == rows


@pytest.mark.parametrize(("where", "rows"), CASES)
def test_in_memory_columns_agree_with_sql(catalog, where, rows):
    assert by_columns(catalog, where) == rows


def test_parse_where_types_and_operators():
    assert parse_where(["task=digits", "accuracy>=0.9", "flag == true", "x!=null"]) == [
        ("task", "=", "digits"),
        ("accuracy", ">=", 0.9),
        ("flag", "=", True),
        ("x", "!=", None),
    ]
    assert parse_where(["seed=3"]) == [("seed", "in", [3, "3"])]
    assert parse_where(['name="3"']) == [("name", "=", "3")]
    with pytest.raises(FilterError):
        parse_where(["no operator"])


def test_cli_syntax_matches_numbers_and_their_text(catalog):
    for select in (by_sql, by_columns):
        assert select(catalog, parse_where(["seed=3"])) == [0, 1]
        assert select(catalog, parse_where(["accuracy>=0.9", "task=fashion"])) == [2]


def test_columns_follow_catalog_changes(catalog, tmp_path):
    catalog = Catalog(str(tmp_path))
    with catalog.write() as conn:
        catalog.set_meta(conn, encoder_id="e")
        catalog.insert(
            conn,
            ["a", "b"],
            [None] * 2,
            [None] * 2,
            [{"k": 1}, {"k": "x"}],
            "e",
            np.zeros((2, 2), np.float32),
        )
    columns = MetadataColumns(catalog)
    assert list(columns.select([("k", "=", "x")])) == [2]
    with catalog.write() as conn:
        catalog.delete_rows(conn, [2])
        catalog.insert(
            conn,
            ["c", "d"],
            [None] * 2,
            [None] * 2,
            [{"k": "x"}, {"k": "y"}],
            "e",
            np.zeros((2, 2), np.float32),
        )
    assert list(columns.select([("k", "in", ["x", "y"])])) == [3, 4]
    assert list(columns.select([("k", "=", 1)])) == [1]
    catalog.close()


def test_bad_filters_are_refused():
    with pytest.raises(FilterError):
        normalise_where({"a": ("~", 1)})
    with pytest.raises(FilterError):
        normalise_where({"a": (">=", None)})
    with pytest.raises(FilterError):
        normalise_where({"a": {"nested": 1}})
    with pytest.raises(FilterError):
        normalise_where({"a": ("=", [1, 2])})
