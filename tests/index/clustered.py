"""Clustered unit vectors and a brute-force reference, shared by the FAISS-layer tests."""

from __future__ import annotations

import numpy as np

D = 32


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4000 vectors around 40 centres, their sparse non-zero-based ids, and 25 queries."""
    rng = np.random.default_rng(0)
    centres = unit(rng.standard_normal((40, D)))
    noise = 0.7 / np.sqrt(D)
    x = unit(centres[rng.integers(0, 40, 4000)] + noise * rng.standard_normal((4000, D)))
    rows = np.arange(4000, dtype=np.int64) * 3 + 5  # sparse, non-zero-based ids
    q = unit(centres[rng.integers(0, 40, 25)] + noise * rng.standard_normal((25, D)))
    return x, rows, q


def brute(x, rows, q, k, allowed=None):
    """Reference: score everything in float64, keep the allowed rows, sort."""
    scores = q.astype(np.float64) @ x.astype(np.float64).T
    if allowed is not None:
        scores[:, ~np.isin(rows, allowed)] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), rows[order]
