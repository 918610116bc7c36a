"""Lineage recovery: how well predicted parent → child edges match the recorded ones.

An edge is a ``(parent, child)`` pair of model ids. Edge precision and recall count an
edge as found when the same two models are joined, in either direction; direction
accuracy is the share of found edges that also point the right way. So a method that
finds every pair but orients them at random scores recall 1 and direction about 0.5.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

Edge = tuple[Hashable, Hashable]


def _pairs(edges: Iterable[Edge], name: str) -> dict[frozenset[Hashable], Edge]:
    out: dict[frozenset[Hashable], Edge] = {}
    for edge in edges:
        parent, child = edge
        if parent == child:
            raise ValueError(f"{name}: edge {edge!r} joins a model to itself")
        out[frozenset((parent, child))] = (parent, child)
    return out


def lineage_metrics(true_edges: Iterable[Edge], pred_edges: Iterable[Edge]) -> dict[str, float]:
    """Edge precision / recall / F1 (undirected) and direction accuracy of `pred_edges`.

    Args:
        true_edges: recorded ``(parent, child)`` edges.
        pred_edges: recovered ``(parent, child)`` edges.

    Returns:
        ``{"precision", "recall", "f1", "direction_accuracy", "n_true", "n_pred",
        "n_found"}``. Precision is NaN without predictions, recall NaN without true
        edges, direction accuracy NaN when no edge is found.
    """
    truth, pred = _pairs(true_edges, "true_edges"), _pairs(pred_edges, "pred_edges")
    found = [key for key in pred if key in truth]
    nan = float("nan")
    precision = len(found) / len(pred) if pred else nan
    recall = len(found) / len(truth) if truth else nan
    f1 = (
        2 * precision * recall / (precision + recall)
        if pred and truth and precision + recall > 0
        else (0.0 if pred and truth else nan)
    )
    right = sum(pred[key] == truth[key] for key in found)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "direction_accuracy": right / len(found) if found else nan,
        "n_true": float(len(truth)),
        "n_pred": float(len(pred)),
        "n_found": float(len(found)),
    }
