"""Evaluation: retrieval, symmetry robustness, clustering, accuracy-prediction and lineage
metrics.

Every metric is a function of numpy arrays (embeddings, labels, targets) returning a
dict of floats, so the benchmark runner (`zoolens.bench`) can write them straight into
``results.json``. A leaf package: it imports no other zoolens package.
"""

from __future__ import annotations

from zoolens.eval.clustering import clustering_metrics
from zoolens.eval.lineage import lineage_metrics
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
    "accuracy_prediction",
    "classification_accuracy",
    "clustering_metrics",
    "gallery_retrieval_metrics",
    "lineage_metrics",
    "paired_cosine",
    "paired_l2",
    "predict_out_of_fold",
    "rank_by_cosine",
    "rank_by_similarity",
    "regression_metrics",
    "retrieval_metrics",
    "retrieval_metrics_from_similarity",
    "robustness_metrics",
]
