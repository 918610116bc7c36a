"""Lineage metrics on hand-checked cases."""

from __future__ import annotations

import math

import pytest

from zoolens.eval import lineage_metrics

TRUTH = [("a", "b"), ("a", "c"), ("c", "d")]


def test_perfect_recovery() -> None:
    got = lineage_metrics(TRUTH, list(reversed(TRUTH)))
    assert got["precision"] == got["recall"] == got["f1"] == got["direction_accuracy"] == 1.0
    assert got["n_found"] == 3.0


def test_hand_worked_case() -> None:
    # found a-b (right way), c-d (reversed); e-b is wrong; a-c is missed.
    got = lineage_metrics(TRUTH, [("a", "b"), ("d", "c"), ("e", "b")])
    assert got["precision"] == pytest.approx(2 / 3)
    assert got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 / 3)
    assert got["direction_accuracy"] == pytest.approx(1 / 2)


def test_all_reversed_is_found_but_misdirected() -> None:
    got = lineage_metrics(TRUTH, [(c, p) for p, c in TRUTH])
    assert got["recall"] == 1.0 and got["direction_accuracy"] == 0.0


def test_empty_and_disjoint() -> None:
    got = lineage_metrics(TRUTH, [])
    assert math.isnan(got["precision"]) and got["recall"] == 0.0
    assert math.isnan(got["direction_accuracy"])
    got = lineage_metrics(TRUTH, [("x", "y")])
    assert got["precision"] == 0.0 and got["f1"] == 0.0


def test_self_edge_refused() -> None:
    with pytest.raises(ValueError, match="itself"):
        lineage_metrics([("a", "a")], [])
