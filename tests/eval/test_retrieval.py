"""Retrieval metrics: hand-worked rankings, scikit-learn parity, a loop reference, properties."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from zoolens.eval import (
    gallery_retrieval_metrics,
    rank_by_cosine,
    rank_by_similarity,
    retrieval_metrics,
    retrieval_metrics_from_similarity,
)


def on_circle(degrees: list[float]) -> np.ndarray:
    """Unit vectors at the given angles: cosine order = angular distance order."""
    rad = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


# Five items on the unit circle:  0:0° A   1:10° A   2:30° B   3:100° A   4:210° B
# Rankings (self removed) by angular distance and their relevance (same label):
#   q0 (A): 1(10°) 2(30°) 3(100°) 4(150°)  -> rel 1 0 1 0, n_rel 2
#   q1 (A): 0(10°) 2(20°) 3(90°)  4(160°)  -> rel 1 0 1 0, n_rel 2
#   q2 (B): 1(20°) 0(30°) 3(70°)  4(180°)  -> rel 0 0 0 1, n_rel 1
#   q3 (A): 2(70°) 1(90°) 0(100°) 4(110°)  -> rel 0 1 1 0, n_rel 2
#   q4 (B): 3(110°) 0(150°) 1(160°) 2(180°) -> rel 0 0 0 1, n_rel 1
# Per query (q0, q1, q2, q3, q4):
#   P@1  = 1, 1, 0, 0, 0               -> 2/5
#   P@2  = 1/2, 1/2, 0, 1/2, 0         -> 3/10
#   P@3  = 2/3, 2/3, 0, 2/3, 0         -> 2/5
#   R@1  = 1/2, 1/2, 0, 0, 0           -> 1/5
#   R@2  = 1/2, 1/2, 0, 1/2, 0         -> 3/10
#   R@3  = 1, 1, 0, 1, 0               -> 3/5
#   F1@1 = 2/3, 2/3, 0, 0, 0           -> 4/15
#   F1@2 = 1/2, 1/2, 0, 1/2, 0         -> 3/10
#   F1@3 = 4/5, 4/5, 0, 4/5, 0         -> 12/25
#   AP   = (1 + 2/3)/2 = 5/6, 5/6, 1/4, (1/2 + 2/3)/2 = 7/12, 1/4   -> 33/60 = 11/20
#   RR   = 1, 1, 1/4, 1/2, 1/4         -> 3/5
# Past the end of the 4-item rankings the denominator stays k:
#   P@10 = 2/10, 2/10, 1/10, 2/10, 1/10 -> 4/25;  R@10 = 1
HAND_EMB = on_circle([0, 10, 30, 100, 210])
HAND_LABELS = ["A", "A", "B", "A", "B"]
HAND_EXPECTED = {
    "P@1": 2 / 5, "P@2": 3 / 10, "P@3": 2 / 5,
    "R@1": 1 / 5, "R@2": 3 / 10, "R@3": 3 / 5,
    "F1@1": 4 / 15, "F1@2": 3 / 10, "F1@3": 12 / 25,
    "mAP": 11 / 20, "MRR": 3 / 5,
}  # fmt: skip


def assert_metrics(got: dict[str, float], expected: dict[str, float]) -> None:
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_hand_worked_leave_one_out() -> None:
    got = retrieval_metrics(HAND_EMB, HAND_LABELS, ks=(1, 2, 3))
    assert_metrics(got, HAND_EXPECTED)
    assert got["n_queries"] == 5
    assert list(got) == [*HAND_EXPECTED, "n_queries"]


def test_hand_worked_k_past_the_ranking() -> None:
    got = retrieval_metrics(HAND_EMB, HAND_LABELS, ks=(10,))
    assert_metrics(got, {"P@10": 4 / 25, "R@10": 1.0})


def test_hand_worked_from_similarity_matches_embeddings() -> None:
    sim = HAND_EMB @ HAND_EMB.T
    sim[np.diag_indices(5)] = -5.0  # the diagonal is ignored whatever it holds
    got = retrieval_metrics_from_similarity(sim, HAND_LABELS, ks=(1, 2, 3))
    assert_metrics(got, HAND_EXPECTED)


def test_query_without_relevant_item_is_skipped() -> None:
    # A sixth item with a unique label, least similar to everyone: it ranks last for the
    # other queries (so their P@k for k <= 3, AP and RR are unchanged) and has no
    # relevant item itself, so it is not a query.
    sim = np.full((6, 6), -1.0)
    sim[:5, :5] = HAND_EMB @ HAND_EMB.T
    got = retrieval_metrics_from_similarity(sim, [*HAND_LABELS, "C"], ks=(1, 2, 3))
    assert_metrics(got, HAND_EXPECTED)
    assert got["n_queries"] == 5


def test_ties_keep_gallery_index_order() -> None:
    # A query equally similar to gallery items 0, 1, 2; only item 2 shares its label. A
    # stable sort ranks 0, 1, 2 -> first relevant at rank 3: RR = AP = 1/3, P@1 = 0
    # (ranking 2 first would give 1).
    sim = np.array(
        [
            [1.0, 0.5, 0.5, 0.5],
            [0.5, 1.0, 0.0, 0.5],
            [0.5, 0.0, 1.0, 0.5],
            [0.5, 0.5, 0.5, 1.0],
        ]
    )
    got = retrieval_metrics_from_similarity(
        [[0.5, 0.5, 0.5]], ["a"], ks=(1,), gallery_labels=["b", "b", "a"]
    )
    assert got["MRR"] == pytest.approx(1 / 3)
    assert got["mAP"] == pytest.approx(1 / 3)
    assert got["P@1"] == 0.0
    # Leave-one-out on a tied square matrix: each row lists the others in index order
    # within each tie group.
    _, ids = rank_by_similarity(sim, exclude_self=True)
    np.testing.assert_array_equal(ids, [[1, 2, 3], [0, 3, 2], [0, 3, 1], [0, 1, 2]])


def test_gallery_mode_hand_worked() -> None:
    # gallery 0:0° x   1:90° y   2:180° x   (nothing is removed from a ranking)
    #   query 10° x : 0(10°) 1(80°) 2(170°) -> rel 1 0 1: AP = (1 + 2/3)/2 = 5/6, RR 1
    #   query 100° y: 1(10°) 2(80°) 0(100°) -> rel 1 0 0: AP = 1, RR 1
    # mAP = 11/12, P@1 = 1, P@2 = (1/2 + 1/2)/2 = 1/2, R@2 = (1/2 + 1)/2 = 3/4
    got = gallery_retrieval_metrics(
        on_circle([10, 100]), ["x", "y"], on_circle([0, 90, 180]), ["x", "y", "x"], ks=(1, 2)
    )
    assert_metrics(got, {"mAP": 11 / 12, "MRR": 1.0, "P@1": 1.0, "P@2": 0.5, "R@2": 0.75})
    assert got["n_queries"] == 2


def test_rank_by_cosine_leave_one_out_and_padding() -> None:
    scores, ids = rank_by_cosine(HAND_EMB, k=6)
    np.testing.assert_array_equal(ids[:, :4], [[1, 2, 3, 4], [0, 2, 3, 4], [1, 0, 3, 4],
                                               [2, 1, 0, 4], [3, 0, 1, 2]])  # fmt: skip
    np.testing.assert_array_equal(ids[:, 4:], -1)
    assert np.all(np.isneginf(scores[:, 4:]))
    np.testing.assert_allclose(scores[0, :4], np.cos(np.deg2rad([10, 30, 100, 150])), atol=1e-12)
    assert np.all(np.diff(scores[:, :4], axis=1) <= 0)


def test_rank_by_cosine_gallery_ties_and_scale() -> None:
    # Exact ties (one-hot dot products) keep index order; scaling rows changes nothing.
    gallery = np.array([[0.0, 1.0], [3.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    scores, ids = rank_by_cosine(np.array([[5.0, 0.0]]), gallery)
    np.testing.assert_array_equal(ids, [[1, 2, 0, 3]])
    np.testing.assert_array_equal(scores, [[1.0, 1.0, 0.0, 0.0]])


def test_rank_by_cosine_matches_brute_force_in_blocks() -> None:
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(17, 6)), rng.normal(size=(23, 6))
    scores, ids = rank_by_cosine(q, g, k=5, block_size=4)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    sim = qn @ gn.T
    np.testing.assert_array_equal(ids, np.argsort(-sim, axis=1)[:, :5])
    np.testing.assert_allclose(scores, np.sort(sim, axis=1)[:, ::-1][:, :5], atol=1e-12)


def reference_metrics(emb: np.ndarray, labels: np.ndarray, ks: tuple[int, ...]) -> dict:
    """Slow, obvious leave-one-out metrics with sklearn's average precision per query."""
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    per_query: dict[str, list[float]] = {}
    for i in range(len(emb)):
        others = [j for j in range(len(emb)) if j != i]
        scores = np.array([emb[i] @ emb[j] for j in others])
        relevant = np.array([labels[j] == labels[i] for j in others])
        if not relevant.any():
            continue
        ranked = relevant[np.argsort(-scores, kind="stable")]
        values = {"mAP": average_precision_score(relevant, scores),
                  "MRR": 1.0 / (1 + list(ranked).index(True))}  # fmt: skip
        for k in ks:
            p, r = ranked[:k].sum() / k, ranked[:k].sum() / relevant.sum()
            values |= {f"P@{k}": p, f"R@{k}": r, f"F1@{k}": 2 * p * r / (p + r) if p + r else 0.0}
        for name, v in values.items():
            per_query.setdefault(name, []).append(float(v))
    return {name: float(np.mean(v)) for name, v in per_query.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_sklearn_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(40, 8))
    labels = rng.integers(0, 5, size=40)
    labels[0] = 99  # a query with no relevant item
    got = retrieval_metrics(emb, labels, ks=(1, 5, 10), block_size=7)
    assert_metrics(got, reference_metrics(emb, labels, (1, 5, 10)))
    assert got["n_queries"] == 39


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_embeddings_metrics_in_unit_interval(seed: int) -> None:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(30, 5))
    got = retrieval_metrics(emb, rng.integers(0, 3, size=30), ks=(1, 5, 10, 50))
    for name, value in got.items():
        if name != "n_queries":
            assert 0.0 <= value <= 1.0, name
    assert got["R@50"] == 1.0  # every relevant item is within the whole ranking
    assert got["P@50"] < 1.0  # only 29 candidates: the denominator stays 50


def clustered(seed: int, n_classes: int = 4, per_class: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """One-hot class centroids plus small noise: every neighbour of a class shares it."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    emb = np.eye(n_classes)[labels] + 0.05 * rng.normal(size=(len(labels), n_classes))
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), labels


@pytest.mark.parametrize("seed", [0, 1])
def test_perfect_embedding_scores_one(seed: int) -> None:
    emb, labels = clustered(seed)
    got = retrieval_metrics(emb, labels, ks=(1, 5))
    assert got["mAP"] == 1.0 and got["MRR"] == 1.0 and got["P@1"] == 1.0 and got["P@5"] == 1.0
    assert got["R@5"] == 1.0 and got["R@1"] == pytest.approx(1 / 5)


@pytest.mark.parametrize("seed", [0, 1])
def test_shuffled_labels_lower_map(seed: int) -> None:
    emb, labels = clustered(seed)
    shuffled = np.random.default_rng(seed + 10).permutation(labels)
    assert retrieval_metrics(emb, shuffled)["mAP"] < retrieval_metrics(emb, labels)["mAP"] - 0.2


def test_invariant_to_reordering_items() -> None:
    rng = np.random.default_rng(5)
    emb, labels = rng.normal(size=(25, 4)), rng.integers(0, 3, size=25)
    perm = rng.permutation(25)
    assert_metrics(retrieval_metrics(emb[perm], labels[perm]), retrieval_metrics(emb, labels))


def test_labels_of_any_hashable_type() -> None:
    as_str = retrieval_metrics(HAND_EMB, HAND_LABELS, ks=(1, 2, 3))
    as_obj = retrieval_metrics(HAND_EMB, np.array([0, 0, "b", 0, "b"], dtype=object), ks=(1, 2, 3))
    assert_metrics(as_obj, as_str)


def test_no_query_with_relevant_item_gives_nan() -> None:
    got = retrieval_metrics(HAND_EMB, ["a", "b", "c", "d", "e"])
    assert got["n_queries"] == 0 and np.isnan(got["mAP"]) and np.isnan(got["P@1"])


@pytest.mark.parametrize(
    "call",
    [
        lambda: retrieval_metrics(HAND_EMB, HAND_LABELS[:4]),
        lambda: retrieval_metrics(HAND_EMB, HAND_LABELS, ks=(0,)),
        lambda: retrieval_metrics(np.zeros((3, 2)), [0, 0, 1]),
        lambda: retrieval_metrics(np.full((3, 2), np.nan), [0, 0, 1]),
        lambda: retrieval_metrics_from_similarity(np.ones((3, 4)), [0, 0, 1]),
        lambda: gallery_retrieval_metrics(HAND_EMB, HAND_LABELS, np.ones((2, 3)), [0, 1]),
    ],
)
def test_bad_inputs_raise(call) -> None:
    with pytest.raises(ValueError):
        call()
