"""Retrieval metrics: rank a gallery by cosine similarity to each query and score the ranking.

Two protocols:

* leave-one-out (`retrieval_metrics`): every embedding is a query against all the
  others; the query itself is removed from its own ranking;
* gallery (`gallery_retrieval_metrics`): separate query and gallery sets, nothing removed.

An item is relevant to a query when their labels are equal (same task, same family,
same lineage: the caller picks the labels). Rankings sort by similarity, highest first;
equal similarities keep gallery index order (a stable sort), so results are
deterministic. Metrics are per-query values averaged over the queries that have at
least one relevant item in their gallery; the others are skipped and counted out of
``n_queries``.

Per query, with ``hits@k`` the number of relevant items among the first k:

* ``P@k  = hits@k / k`` (k is the denominator even when fewer than k items exist),
* ``R@k  = hits@k / n_relevant``,
* ``F1@k`` = harmonic mean of that query's P@k and R@k (0 when both are 0),
* ``AP``  = mean over relevant items of the precision at each one's rank,
* ``RR``  = 1 / rank of the first relevant item.

``mAP`` and ``MRR`` are the means of AP and RR.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from numpy.typing import ArrayLike

from zoolens.eval._checks import as_labels, as_matrix, label_codes, normalise_rows

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
_Block = tuple[np.ndarray, np.ndarray, np.ndarray | None]  # (similarity, query codes, self ids)


def rank_by_similarity(
    similarity: ArrayLike, k: int | None = None, *, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Rank gallery items for each query by a precomputed similarity, highest first.

    Args:
        similarity: (q, g) similarities of queries to gallery items.
        k: how many hits to return per query; None returns the whole ranking.
        exclude_self: the matrix is square and query i is gallery item i; drop it from
            its own ranking (leave-one-out).

    Returns:
        ``(scores, ids)``, both (q, k): similarities and gallery indices of the hits.
        Where fewer than k items exist, ids are ``-1`` and scores ``-inf``.
        Ties keep gallery index order.
    """
    sim = as_matrix(similarity, "similarity")
    self_index = _self_index(sim) if exclude_self else None
    order = _order(sim, self_index)  # (q, m)
    return _top_k(sim, order, k)


def rank_by_cosine(
    queries: ArrayLike,
    gallery: ArrayLike | None = None,
    k: int | None = None,
    *,
    block_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank gallery embeddings for each query by cosine similarity, highest first.

    Args:
        queries: (q, d) query embeddings (rows are normalised here, so any non-zero
            scale works).
        gallery: (g, d) gallery embeddings; None means leave-one-out among `queries`,
            each query removed from its own ranking.
        k: hits per query; None returns the whole ranking.
        block_size: queries ranked at once (bounds memory to block_size × g).

    Returns:
        ``(scores, ids)``, both (q, k): cosine similarities and gallery indices.
        Missing hits are ``-1`` / ``-inf``. Ties keep gallery index order.
    """
    scores, ids = [], []
    q_emb, g_emb, leave_one_out = _embeddings(queries, gallery)
    for start, sim in _similarity_blocks(q_emb, g_emb, block_size):
        self_index = np.arange(start, start + sim.shape[0]) if leave_one_out else None
        s, i = _top_k(sim, _order(sim, self_index), k)
        scores.append(s)
        ids.append(i)
    m = g_emb.shape[0] - int(leave_one_out)
    width = m if k is None else k
    if not ids:
        return np.empty((0, width)), np.empty((0, width), dtype=np.int64)
    return np.concatenate(scores), np.concatenate(ids)


def retrieval_metrics(
    embeddings: ArrayLike,
    labels: ArrayLike,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    block_size: int = 1024,
) -> dict[str, float]:
    """Leave-one-out retrieval metrics by cosine similarity among `embeddings`.

    Args:
        embeddings: (n, d) embeddings, L2-normalised (re-normalised here for safety).
        labels: (n,) labels; items with equal labels are relevant to each other.
        ks: cut-offs for P@k, R@k and F1@k.
        block_size: queries scored at once (bounds memory to block_size × n).

    Returns:
        ``{"P@k", "R@k", "F1@k" for each k, "mAP", "MRR", "n_queries"}``; every metric
        is NaN when no query has a relevant item.
    """
    emb, _, _ = _embeddings(embeddings, None)
    (codes,) = label_codes(as_labels(labels, emb.shape[0]))
    blocks = (
        (sim, codes[start : start + len(sim)], np.arange(start, start + len(sim)))
        for start, sim in _similarity_blocks(emb, emb, block_size)
    )
    return _score(blocks, codes, ks)


def gallery_retrieval_metrics(
    query_embeddings: ArrayLike,
    query_labels: ArrayLike,
    gallery_embeddings: ArrayLike,
    gallery_labels: ArrayLike,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    block_size: int = 1024,
) -> dict[str, float]:
    """Retrieval metrics for queries ranked against a separate gallery by cosine similarity.

    Args:
        query_embeddings: (q, d) query embeddings.
        query_labels: (q,) query labels.
        gallery_embeddings: (g, d) gallery embeddings.
        gallery_labels: (g,) gallery labels; relevant = equal to the query's label.
        ks: cut-offs for P@k, R@k and F1@k.
        block_size: queries scored at once.

    Returns:
        The same keys as `retrieval_metrics`. Nothing is removed from any ranking.
    """
    q_emb, g_emb, _ = _embeddings(query_embeddings, gallery_embeddings)
    q_codes, g_codes = label_codes(
        as_labels(query_labels, q_emb.shape[0], "query_labels"),
        as_labels(gallery_labels, g_emb.shape[0], "gallery_labels"),
    )
    blocks = (
        (sim, q_codes[start : start + len(sim)], None)
        for start, sim in _similarity_blocks(q_emb, g_emb, block_size)
    )
    return _score(blocks, g_codes, ks)


def retrieval_metrics_from_similarity(
    similarity: ArrayLike,
    labels: ArrayLike,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    gallery_labels: ArrayLike | None = None,
) -> dict[str, float]:
    """Retrieval metrics from a precomputed similarity matrix (higher = more similar).

    Args:
        similarity: (n, n) for leave-one-out (the diagonal is ignored), or (q, g)
            when `gallery_labels` is given.
        labels: (n,) item labels, or (q,) query labels in gallery mode.
        ks: cut-offs for P@k, R@k and F1@k.
        gallery_labels: (g,) gallery labels; switches to gallery mode (nothing removed).

    Returns:
        The same keys as `retrieval_metrics`.
    """
    sim = as_matrix(similarity, "similarity")
    if gallery_labels is None:
        (codes,) = label_codes(as_labels(labels, sim.shape[0]))
        return _score(iter([(sim, codes, _self_index(sim))]), codes, ks)
    q_codes, g_codes = label_codes(
        as_labels(labels, sim.shape[0], "labels"),
        as_labels(gallery_labels, sim.shape[1], "gallery_labels"),
    )
    return _score(iter([(sim, q_codes, None)]), g_codes, ks)


# --- internals ------------------------------------------------------------------------------


def _embeddings(
    queries: ArrayLike, gallery: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Normalised (queries, gallery, leave_one_out); gallery is queries when None."""
    q_emb = normalise_rows(as_matrix(queries, "queries"), "queries")
    if gallery is None:
        return q_emb, q_emb, True
    g_emb = normalise_rows(as_matrix(gallery, "gallery"), "gallery")
    if g_emb.shape[1] != q_emb.shape[1]:
        raise ValueError(
            f"queries have dimension {q_emb.shape[1]} but gallery has {g_emb.shape[1]}"
        )
    return q_emb, g_emb, False


def _similarity_blocks(
    queries: np.ndarray, gallery: np.ndarray, block_size: int
) -> Iterator[tuple[int, np.ndarray]]:
    """(start row, cosine similarities) for consecutive blocks of queries."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1; got {block_size}")
    for start in range(0, queries.shape[0], block_size):
        yield start, queries[start : start + block_size] @ gallery.T  # (b, g)


def _self_index(sim: np.ndarray) -> np.ndarray:
    if sim.shape[0] != sim.shape[1]:
        raise ValueError(f"leave-one-out needs a square similarity matrix; got shape {sim.shape}")
    return np.arange(sim.shape[0])


def _order(sim: np.ndarray, self_index: np.ndarray | None) -> np.ndarray:
    """Gallery indices by decreasing similarity, ties in index order; self removed if given."""
    order = np.argsort(-sim, axis=1, kind="stable")  # (b, g)
    if self_index is None:
        return order
    keep = order != self_index[:, None]  # exactly one False per row
    kept: np.ndarray = order[keep].reshape(order.shape[0], order.shape[1] - 1)  # (b, g - 1)
    return kept


def _top_k(sim: np.ndarray, order: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first k of each ranking, padded with -1 / -inf past its end."""
    m = order.shape[1]
    k = m if k is None else k
    if k < 0:
        raise ValueError(f"k must be >= 0; got {k}")
    take = min(k, m)
    ids = np.full((order.shape[0], k), -1, dtype=np.int64)
    scores = np.full((order.shape[0], k), -np.inf)
    ids[:, :take] = order[:, :take]
    scores[:, :take] = np.take_along_axis(sim, order[:, :take], axis=1)
    return scores, ids


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    out = tuple(dict.fromkeys(int(k) for k in ks))
    if not out or any(k < 1 for k in out) or any(int(k) != k for k in ks):
        raise ValueError(f"ks must be positive integers; got {list(ks)}")
    return out


def _metric_names(ks: tuple[int, ...]) -> list[str]:
    names = [f"{m}@{k}" for m in ("P", "R", "F1") for k in ks]
    return [*names, "mAP", "MRR"]


def _per_query(relevant: np.ndarray, ks: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Per-query metric values for the rows of a ranked relevance matrix with a hit."""
    n_rel = relevant.sum(axis=1)  # (b,)
    relevant, n_rel = relevant[n_rel > 0], n_rel[n_rel > 0]
    if relevant.shape[0] == 0:
        return {name: np.empty(0) for name in _metric_names(ks)}
    m = relevant.shape[1]
    hits = np.cumsum(relevant, axis=1)  # (b, m) relevant items within the first j + 1
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hits_k = hits[:, min(k, m) - 1]
        p, r = hits_k / k, hits_k / n_rel
        out[f"P@{k}"], out[f"R@{k}"] = p, r
        out[f"F1@{k}"] = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    ranks = np.arange(1, m + 1)  # (m,)
    out["mAP"] = (relevant * hits / ranks).sum(axis=1) / n_rel
    out["MRR"] = 1.0 / (np.argmax(relevant, axis=1) + 1)
    return {name: out[name] for name in _metric_names(ks)}


def _score(
    blocks: Iterator[_Block], gallery_codes: np.ndarray, ks: Sequence[int]
) -> dict[str, float]:
    """Average per-query metrics over every block of queries."""
    ks = _check_ks(ks)
    sums = dict.fromkeys(_metric_names(ks), 0.0)
    n_queries = 0
    for sim, query_codes, self_index in blocks:
        if sim.shape[1] != gallery_codes.shape[0]:
            raise ValueError(
                f"similarity has {sim.shape[1]} columns but {gallery_codes.shape[0]} labels"
            )
        order = _order(sim, self_index)  # (b, m)
        relevant = gallery_codes[order] == query_codes[:, None]  # (b, m)
        values = _per_query(relevant, ks)
        n_queries += len(values["mAP"])
        for name, v in values.items():
            sums[name] += float(v.sum())
    result = {name: (s / n_queries if n_queries else float("nan")) for name, s in sums.items()}
    result["n_queries"] = n_queries
    return result
