"""The manifest schema: columns, dtypes, splits."""

from __future__ import annotations

import collections

import pandas as pd
import pytest

from zoolens.zoo import COLUMNS, Zoo
from zoolens.zoo.manifest import (
    assign_split,
    complete_row,
    kept,
    parse_shape,
    rows_to_frame,
    shape_str,
)


def test_columns_and_dtypes(micro_zoo: Zoo) -> None:
    m = micro_zoo.manifest
    assert list(m.columns) == list(COLUMNS)
    for col, kind in COLUMNS.items():
        dtype = m[col].dtype
        if kind == "int":
            assert dtype == "int64", col
        elif kind == "float":
            assert dtype == "float64", col
        else:
            assert pd.api.types.is_string_dtype(dtype), col
    assert m["id"].is_unique and (m["index"].diff().dropna() > 0).all()
    assert set(m["kind"]) == {"classification", "regression", "inr"}
    assert set(m["split"]) <= {"train", "val", "test"}
    for col in ("lr", "epochs", "batch_size", "seed", "steps", "num_params", "depth", "width"):
        assert (m[col] > 0).all(), col
    for col in ("optimizer", "activation", "arch", "family", "dataset", "input_shape"):
        assert (m[col] != "").all(), col


def test_split_is_a_seeded_hash_with_the_right_fractions() -> None:
    ids = [f"m{i:05d}" for i in range(20000)]
    counts = collections.Counter(assign_split(i, 0) for i in ids)
    assert counts["train"] / 20000 == pytest.approx(0.70, abs=0.015)
    assert counts["val"] / 20000 == pytest.approx(0.15, abs=0.015)
    assert [assign_split(i, 0) for i in ids[:50]] == [assign_split(i, 0) for i in ids[:50]]
    assert [assign_split(i, 0) for i in ids[:200]] != [assign_split(i, 1) for i in ids[:200]]


def test_rows_are_completed_and_unknown_columns_refused() -> None:
    row = complete_row({"id": "a", "index": 0})
    assert set(row) == set(COLUMNS) and row["parent"] == "" and row["label"] == -1
    with pytest.raises(KeyError, match="bogus"):
        complete_row({"id": "a", "bogus": 1})
    df = rows_to_frame([{"id": "b", "index": 2}, {"id": "a", "index": 1}])
    assert list(df["id"]) == ["a", "b"]


def test_shape_strings_round_trip() -> None:
    assert shape_str((1, 8, 8)) == "1x8x8" and parse_shape("1x8x8") == (1, 8, 8)
    assert parse_shape(shape_str((16,))) == (16,)


def test_kept_drops_rows_of_excluded_tasks_or_families() -> None:
    m = pd.DataFrame({"task": ["a", "a", "b", "c"], "family": ["mlp", "cnn", "mlp", "cnn"]})
    assert kept(m).tolist() == [True] * 4
    assert kept(m, ["a"]).tolist() == [False, False, True, True]
    assert kept(m, exclude_families=["cnn"]).tolist() == [True, False, True, False]
    assert kept(m, ["b"], ["cnn"]).tolist() == [True, False, False, False]
