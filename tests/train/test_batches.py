"""Batch sampling: every model once, same-group positives, and batches by input shape."""

from __future__ import annotations

import numpy as np
import pytest

from zoolens.train.data import sample_batches


def _zoo(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Groups (tasks) and strata (input shapes) of a random zoo: each task has one shape."""
    rng = np.random.default_rng(seed)
    n_tasks = int(rng.integers(6, 15))
    shape_of = rng.integers(0, 3, n_tasks)  # task → one of 3 shapes
    sizes = rng.integers(3, 30, n_tasks)
    groups = np.repeat([f"t{k}" for k in range(n_tasks)], sizes)
    strata = np.repeat([f"s{shape_of[k]}" for k in range(n_tasks)], sizes)
    return groups, strata


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("by_shape", [False, True])
def test_every_model_once_and_groups_in_chunks(seed: int, by_shape: bool) -> None:
    groups, strata = _zoo(seed)
    rng = np.random.default_rng(seed)
    batches = sample_batches(groups, 16, 4, rng, strata if by_shape else None)
    seen = np.concatenate(batches)
    assert len(seen) == len(set(seen.tolist()))  # no model twice
    assert len(seen) >= len(groups) - 1  # at most a lone leftover dropped
    assert all(len(b) <= 16 for b in batches)


def _mixed_batches(batches: list[np.ndarray], strata: np.ndarray) -> int:
    return sum(len(set(strata[b])) > 1 for b in batches)


@pytest.mark.parametrize("seed", range(5))
def test_shape_batches_hold_one_input_shape(seed: int) -> None:
    groups, strata = _zoo(seed)
    batches = sample_batches(groups, 16, 4, np.random.default_rng(seed), strata)
    n_strata = len(set(strata))
    # a batch spans two shapes only where one shape's models run out
    assert _mixed_batches(batches, strata) <= n_strata - 1


def test_mixed_batches_mix_shapes() -> None:
    """Sensitivity: without strata the same zoo gives many multi-shape batches."""
    groups, strata = _zoo(0)
    batches = sample_batches(groups, 16, 4, np.random.default_rng(0))
    assert _mixed_batches(batches, strata) > len(set(strata))
