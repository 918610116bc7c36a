"""Input checks shared by the metric modules: shapes, finiteness, label arrays.

Bad inputs to a metric are programming errors in the caller (a benchmark
passing mismatched arrays), so they raise ``ValueError`` naming the argument.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def as_matrix(x: ArrayLike, name: str) -> np.ndarray:
    """`x` as a finite float64 matrix of shape (n, d)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, d); got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds NaN or Inf values; drop or repair those rows first")
    return arr


def as_vector(x: ArrayLike, name: str, n: int | None = None) -> np.ndarray:
    """`x` as a finite float64 vector, of length `n` when given."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array; got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but {n} rows were given")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds NaN or Inf values")
    return arr


def as_labels(labels: ArrayLike, n: int, name: str = "labels") -> np.ndarray:
    """`labels` as a 1-D array of length `n` (any comparable dtype)."""
    arr: np.ndarray[Any, Any] = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but {n} embeddings were given")
    return arr


def normalise_rows(x: np.ndarray, name: str) -> np.ndarray:
    """Rows of `x` scaled to unit L2 norm; a zero row has no direction and is an error."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)  # (n, 1)
    zero = np.flatnonzero(norm[:, 0] == 0.0)
    if zero.size:
        raise ValueError(f"{name} row {int(zero[0])} is all zeros; cosine is undefined for it")
    unit: np.ndarray = x / norm  # (n, d)
    return unit


def label_codes(*label_arrays: np.ndarray) -> list[np.ndarray]:
    """Integer codes for label arrays, sharing one code space (equal labels, equal codes).

    Works for any hashable labels (ints, strings, mixed objects), in order of first
    appearance.
    """
    table: dict[object, int] = {}
    codes = []
    for arr in label_arrays:
        values = arr.tolist()
        codes.append(np.fromiter((table.setdefault(v, len(table)) for v in values), np.int64))
    return codes
