"""Clustering quality of embeddings grouped by a label (task, family).

Silhouette on cosine distance and Davies–Bouldin, both from scikit-learn.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import davies_bouldin_score, silhouette_score

from zoolens.eval._checks import as_labels, as_matrix, label_codes


def clustering_metrics(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    sample_size: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Silhouette (cosine distance) and Davies–Bouldin (Euclidean) of `embeddings` by `labels`.

    Higher silhouette (in [-1, 1]) and lower Davies–Bouldin (>= 0) mean tighter, better
    separated groups. On L2-normalised embeddings Euclidean distance is a monotone
    function of cosine distance, so both scores see the same geometry.

    Args:
        embeddings: (n, d) embeddings.
        labels: (n,) group of each embedding.
        sample_size: compute the silhouette on a random subset of this many rows
            (it costs O(n²)); None uses every row.
        seed: seed of that subset.

    Returns:
        ``{"silhouette": float, "davies_bouldin": float}``; both NaN unless
        2 <= number of distinct labels <= n - 1 (where the scores are undefined).
    """
    emb = as_matrix(embeddings, "embeddings")
    lab = as_labels(labels, emb.shape[0])
    (codes,) = label_codes(lab)
    n_labels = len(np.unique(codes))
    if not 2 <= n_labels <= emb.shape[0] - 1:
        return {"silhouette": float("nan"), "davies_bouldin": float("nan")}
    if sample_size is not None and sample_size >= emb.shape[0]:
        sample_size = None
    silhouette = silhouette_score(
        emb, codes, metric="cosine", sample_size=sample_size, random_state=seed
    )
    davies_bouldin = davies_bouldin_score(emb, codes)
    return {"silhouette": float(silhouette), "davies_bouldin": float(davies_bouldin)}
