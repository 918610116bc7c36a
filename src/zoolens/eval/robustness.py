"""Symmetry robustness (paired embedding distances) and INR classification from embeddings."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from zoolens.eval._checks import as_labels, as_matrix, normalise_rows

Classifier = Literal["logistic", "knn"]


def paired_cosine(emb_a: ArrayLike, emb_b: ArrayLike) -> np.ndarray:
    """Cosine similarity between row i of `emb_a` and row i of `emb_b`.

    Args:
        emb_a: (n, d) embeddings.
        emb_b: (n, d) embeddings of the paired items (e.g. transformed copies).

    Returns:
        (n,) cosine similarities in [-1, 1].
    """
    a, b = _paired(emb_a, emb_b)
    cos: np.ndarray = np.sum(normalise_rows(a, "emb_a") * normalise_rows(b, "emb_b"), axis=1)
    clipped: np.ndarray = np.clip(cos, -1.0, 1.0)  # (n,)
    return clipped


def paired_l2(emb_a: ArrayLike, emb_b: ArrayLike) -> np.ndarray:
    """Euclidean distance between row i of `emb_a` and row i of `emb_b`.

    Args:
        emb_a: (n, d) embeddings.
        emb_b: (n, d) embeddings of the paired items.

    Returns:
        (n,) distances, on the embeddings as given (not re-normalised).
    """
    a, b = _paired(emb_a, emb_b)
    dist: np.ndarray = np.linalg.norm(a - b, axis=1)  # (n,)
    return dist


def robustness_metrics(emb_a: ArrayLike, emb_b: ArrayLike) -> dict[str, float]:
    """How far embeddings move under a transformation; row i of `emb_a` pairs with row i of `emb_b`.

    Args:
        emb_a: (n, d) embeddings of the original models.
        emb_b: (n, d) embeddings of their transformed copies (exact symmetry actions or
            inexact perturbations: report them apart).

    Returns:
        ``{"cos_mean", "cos_min", "l2_mean", "l2_max"}``; an exactly invariant encoder
        gives cosine 1 and distance 0.
    """
    cos = paired_cosine(emb_a, emb_b)
    l2 = paired_l2(emb_a, emb_b)
    return {
        "cos_mean": float(cos.mean()),
        "cos_min": float(cos.min()),
        "l2_mean": float(l2.mean()),
        "l2_max": float(l2.max()),
    }


def classification_accuracy(
    embeddings: ArrayLike,
    labels: ArrayLike,
    train_mask: ArrayLike,
    seed: int = 0,
    model: Classifier = "logistic",
    n_neighbors: int = 5,
) -> float:
    """Accuracy of a classifier fit on the `train_mask` rows, measured on the other rows.

    Used for INR classification (embedding of an implicit neural representation →
    the digit it draws).

    Args:
        embeddings: (n, d) embeddings.
        labels: (n,) class of each row.
        train_mask: (n,) bool, True for training rows; the False rows are held out.
        seed: seed of the logistic regression.
        model: ``"logistic"`` (standardised features, multinomial L2 logistic
            regression) or ``"knn"`` (cosine k-nearest neighbours).
        n_neighbors: k of the kNN classifier (capped at the number of training rows).

    Returns:
        Fraction of held-out rows whose predicted label equals the true one.
    """
    x = as_matrix(embeddings, "embeddings")
    y = as_labels(labels, x.shape[0])
    train = np.asarray(train_mask)
    if train.dtype != bool or train.shape != (x.shape[0],):
        raise ValueError(f"train_mask must be a bool array of shape ({x.shape[0]},)")
    if train.all() or not train.any():
        raise ValueError("train_mask must leave at least one training and one held-out row")
    if model == "logistic":
        if len(set(y[train].tolist())) < 2:
            raise ValueError("logistic regression needs at least 2 classes among training rows")
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    elif model == "knn":
        k = min(n_neighbors, int(train.sum()))
        clf = KNeighborsClassifier(n_neighbors=k, metric="cosine")
    else:
        raise ValueError(f"unknown model {model!r}; use 'logistic' or 'knn'")
    clf.fit(x[train], y[train])
    return float(np.mean(clf.predict(x[~train]) == y[~train]))


def _paired(emb_a: ArrayLike, emb_b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_matrix(emb_a, "emb_a"), as_matrix(emb_b, "emb_b")
    if a.shape != b.shape:
        raise ValueError(f"emb_a {a.shape} and emb_b {b.shape} must have the same shape")
    if a.shape[0] == 0:
        raise ValueError("robustness needs at least one pair of embeddings")
    return a, b
