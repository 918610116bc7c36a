"""Evaluation: retrieval, symmetry robustness, clustering and accuracy-prediction metrics.

Every metric is a function of numpy arrays (embeddings, labels, targets) returning a
dict of floats, so the benchmark runner can write them straight into ``results.json``.
"""

from __future__ import annotations

from typing import Any

from zoolens.eval.clustering import clustering_metrics
from zoolens.eval.prediction import accuracy_prediction, predict_out_of_fold, regression_metrics
from zoolens.eval.retrieval import (
    gallery_retrieval_metrics,
    rank_by_cosine,
    rank_by_similarity,
    retrieval_metrics,
    retrieval_metrics_from_similarity,
)
from zoolens.eval.robustness import (
    classification_accuracy,
    paired_cosine,
    paired_l2,
    robustness_metrics,
)

__all__ = [
    "BenchmarkConfig",
    "accuracy_prediction",
    "classification_accuracy",
    "clustering_metrics",
    "gallery_retrieval_metrics",
    "paired_cosine",
    "paired_l2",
    "predict_out_of_fold",
    "rank_by_cosine",
    "rank_by_similarity",
    "regression_metrics",
    "retrieval_metrics",
    "retrieval_metrics_from_similarity",
    "robustness_metrics",
    "run_benchmark",
]

#: Loaded on first use: the benchmark runner imports `zoolens.train`, which imports this package.
_LAZY = {"BenchmarkConfig": "zoolens.eval.benchmark", "run_benchmark": "zoolens.eval.benchmark"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zoolens.eval' has no attribute {name!r}")
