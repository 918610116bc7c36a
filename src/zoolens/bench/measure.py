"""Every held-out measurement of one prepared encoder for one benchmark seed.

Retrieval (task, family, lineage relevance), symmetry robustness (exact actions and
inexact views apart), clustering, accuracy prediction, INR classification, transfer and
cost: each a dict of floats, ready for `zoolens.bench.report.aggregate`.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import UndefinedMetricWarning
from threadpoolctl import threadpool_limits

from zoolens.bench.data import BenchPlan, lineage_roots
from zoolens.bench.prepare import Prepared, encoder_size_bytes
from zoolens.bench.transfer import TransferRunner
from zoolens.eval.clustering import clustering_metrics
from zoolens.eval.prediction import accuracy_prediction
from zoolens.eval.retrieval import gallery_retrieval_metrics, retrieval_metrics
from zoolens.eval.robustness import classification_accuracy, paired_cosine, robustness_metrics
from zoolens.ir import Net
from zoolens.nn import Encoder
from zoolens.symmetry import drop_connect, random_exact_action, weight_noise
from zoolens.train.data import group_labels

log = logging.getLogger(__name__)
Metrics = dict[str, object]

#: Strength of the inexact views: DropConnect probability and relative noise std.
INEXACT_STRENGTH = 0.05


@dataclass
class SeedData:
    """What every encoder of one seed is measured on.

    Args:
        manifest: the zoo manifest indexed by model id.
        plan: the benchmark's model sets.
        nets: model id → float32 `Net`, for every id of ``plan.embed_ids``.
        views: ``exact`` / ``dropconnect`` / ``noise`` → transformed copies of the nets
            of ``view_ids`` (made with this seed).
        view_ids: held-out models that have views (an action that fails drops a model).
        batch_size: embedding batch size.
        seed: the benchmark seed (cross-validation folds, MLP initialisation).
    """

    manifest: pd.DataFrame
    plan: BenchPlan
    nets: dict[str, Net]
    views: dict[str, list[Net]] = field(default_factory=dict)
    view_ids: list[str] = field(default_factory=list)
    batch_size: int = 64
    seed: int = 0
    _roots: pd.Series | None = field(default=None, repr=False)

    def labels(self, ids: list[str], kind: str) -> np.ndarray:
        """Labels of `ids`: ``task`` (task; INRs task:digit), ``family``, ``lineage`` (root
        of the parent chain) or ``shape`` (input shape and output count)."""
        if kind == "lineage":
            if self._roots is None:
                roots = lineage_roots(self.manifest)
                self._roots = pd.Series(roots, self.manifest.index)
            lineage: np.ndarray = self._roots.loc[ids].to_numpy(str)
            return lineage
        rows = self.manifest.loc[ids]
        if kind == "shape":
            shape = rows["input_shape"].astype(str) + "->" + rows["n_outputs"].astype(str)
            shapes: np.ndarray = shape.to_numpy(str)
            return shapes
        labels: np.ndarray = group_labels(rows) if kind == "task" else rows[kind].to_numpy(str)
        return labels


def make_views(nets: list[Net], seed: int) -> tuple[dict[str, list[Net]], list[int]]:
    """An exact-action copy, a DropConnect copy and a noisy copy of each net.

    Returns:
        ``(views, kept)``: view name → copies, and the indices of `nets` that have them
        (a net whose exact action fails is left out, with a warning).
    """
    gen = torch.Generator().manual_seed(seed)
    views: dict[str, list[Net]] = {"exact": [], "dropconnect": [], "noise": []}
    kept = []
    for i, net in enumerate(nets):
        try:
            exact = random_exact_action(net, gen)
        except Exception as e:  # an architecture the action does not support
            log.warning("robustness: no exact action for model %d (%s); skipped", i, e)
            continue
        views["exact"].append(exact)
        views["dropconnect"].append(drop_connect(net, INEXACT_STRENGTH, gen))
        views["noise"].append(weight_noise(net, INEXACT_STRENGTH, gen))
        kept.append(i)
    return views, kept


def subset_retrieval(emb: np.ndarray, labels: np.ndarray, queries: np.ndarray) -> dict[str, float]:
    """Leave-one-out retrieval scored only for the query rows where `queries` is True.

    Each query ranks every other row; metrics average over queries with a relevant item.
    """
    sums: dict[str, float] = {}
    n = 0
    for i in np.flatnonzero(queries):
        others = np.arange(len(labels)) != i
        m = gallery_retrieval_metrics(emb[[i]], labels[[i]], emb[others], labels[others])
        if m["n_queries"]:
            n += 1
            for key, v in m.items():
                sums[key] = sums.get(key, 0.0) + float(v)
    out = {k: v / n for k, v in sums.items() if k != "n_queries"} if n else {}
    return {**out, "n_queries": float(n)}


def grouped_retrieval(emb: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Leave-one-out retrieval inside each group (a query's gallery is the other members of
    its group), per-query metrics pooled over every group.
    """
    sums: dict[str, float] = {}
    n = 0
    for g in np.unique(groups):
        sel = groups == g
        if sel.sum() < 2:
            continue
        m = retrieval_metrics(emb[sel], labels[sel])
        k = int(m.pop("n_queries"))
        n += k
        for key, v in m.items():
            sums[key] = sums.get(key, 0.0) + (v * k if k else 0.0)
    return {**({k: v / n for k, v in sums.items()} if n else {}), "n_queries": float(n)}


class EncoderMeasurement:
    """Measures one prepared encoder on a seed's data.

    Args:
        prepared: the encoder and its training cost.
        data: the seed's models and views.
        transfer: the seed's shared transfer experiment (None skips transfer).
    """

    def __init__(self, prepared: Prepared, data: SeedData, transfer: TransferRunner | None) -> None:
        self.prepared, self.data, self.transfer = prepared, data, transfer
        self.encoder: Encoder = prepared.encoder
        self.embeddings: dict[str, np.ndarray] = {}
        self.cosines: dict[str, np.ndarray] = {}
        self.embed_seconds, self.n_embedded = 0.0, 0

    def run(self) -> Metrics:
        """All metrics; also fills ``embeddings`` and ``cosines`` (kept for figures)."""
        self._embed_plan()
        test = self.data.plan.test_ids
        emb = self.test_embeddings()
        out: Metrics = {}
        for kind, key in (
            ("task", "retrieval"),
            ("family", "retrieval_family"),
            ("lineage", "retrieval_lineage"),
        ):
            out[key] = retrieval_metrics(emb, self.data.labels(test, kind))
        out["retrieval_same_shape"] = grouped_retrieval(
            emb, self.data.labels(test, "task"), self.data.labels(test, "shape")
        )
        out["robustness"] = self.robustness()
        with threadpool_limits(1):  # small matrices: BLAS threads only contend
            out["clustering"] = clustering_metrics(emb, self.data.labels(test, "task"))
        out["accuracy_prediction"] = self.accuracy_prediction()
        out["inr"] = self.inr()
        out["transfer"] = self.transfer.measure(self.embeddings) if self.transfer else {}
        out["cost"] = self.cost()
        return out

    def encode(self, nets: list[Net]) -> np.ndarray:
        """Embed `nets`, adding to the time and count behind the throughput."""
        start = time.perf_counter()
        emb = self.encoder.encode(nets, batch_size=self.data.batch_size)  # (n, d)
        self.embed_seconds += time.perf_counter() - start
        self.n_embedded += len(nets)
        return emb

    def _embed_plan(self) -> None:
        ids = self.data.plan.embed_ids
        emb = self.encode([self.data.nets[i] for i in ids])  # (n, d)
        self.embeddings = dict(zip(ids, emb, strict=True))

    def test_embeddings(self) -> np.ndarray:
        return np.stack([self.embeddings[i] for i in self.data.plan.test_ids])

    def robustness(self) -> Metrics:
        base = np.stack([self.embeddings[i] for i in self.data.view_ids])
        out: Metrics = {}
        for name, copies in self.data.views.items():
            moved = self.encode(copies)
            self.cosines[name] = paired_cosine(base, moved)
            out[name] = robustness_metrics(base, moved)
        return out

    def accuracy_prediction(self) -> Metrics:
        """Ridge and MLP on held-out classifiers, cross-validated two ways: folds grouped
        by task (``ridge``, ``mlp``: every prediction is for a task the regressor never
        saw) and shuffled folds (``ridge_seen``, ``mlp_seen``: other models of the query's
        task are in the training folds — seed 001's "held-out models" setting).

        An encoder whose embedding appends features it does not learn (`module_dim` below
        the embedding's width: the neural-graph fingerprint) is also measured on its
        learned columns alone (``ridge_learned``, ``mlp_learned``, each ``_seen`` too).
        """
        rows = self.data.manifest.loc[self.data.plan.test_ids]
        cls = rows[(rows["kind"] == "classification") & rows["accuracy"].notna()]
        if len(cls) < 4 or cls["task"].nunique() < 2:
            return {}
        emb = np.stack([self.embeddings[i] for i in cls.index])
        acc, tasks = cls["accuracy"].to_numpy(float), cls["task"].to_numpy(str)
        parts = {"": emb}
        learned = getattr(self.encoder, "module_dim", emb.shape[1])
        if learned < emb.shape[1]:
            parts["_learned"] = emb[:, :learned]
        seed = self.data.seed
        out: Metrics = {}
        with threadpool_limits(1), warnings.catch_warnings():  # R² undefined on 1-row folds
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            warnings.filterwarnings("ignore", "One or more of the test scores are non-finite")
            for part, x in parts.items():
                for model in ("ridge", "mlp"):
                    name = f"{model}{part}"
                    out[name] = accuracy_prediction(x, acc, tasks, model=model, seed=seed)
                    out[f"{name}_seen"] = accuracy_prediction(x, acc, None, model=model, seed=seed)
        return out

    def inr(self) -> Metrics:
        """Digit of an INR from its embedding: fit on train-split INRs, scored on test ones."""
        rows = self.data.manifest.loc[self.data.plan.inr_ids]
        train = (rows["split"] == "train").to_numpy()
        labels = rows["label"].to_numpy()
        if train.all() or not train.any() or len(set(labels[train].tolist())) < 2:
            return {}
        emb = np.stack([self.embeddings[i] for i in rows.index])
        with threadpool_limits(1):
            return {
                "logistic_acc": classification_accuracy(
                    emb, labels, train, seed=self.data.seed, model="logistic"
                ),
                "knn_acc": classification_accuracy(emb, labels, train, model="knn"),
                "n_test": float((~train).sum()),
            }

    def cost(self) -> Metrics:
        dim = len(next(iter(self.embeddings.values())))
        return {
            "train_seconds": self.prepared.seconds,
            "train_epochs": float(len(self.prepared.history)),
            "embed_models_per_s": self.n_embedded / max(self.embed_seconds, 1e-9),
            "dim": float(dim),
            "bytes_per_model": float(4 * dim),
            "encoder_bytes": float(encoder_size_bytes(self.encoder)),
        }


def measure_generalisation(unseen: Encoder, seen_test_emb: np.ndarray, data: SeedData) -> Metrics:
    """Retrieval (task relevance) scored on queries of the tasks, and separately of the
    architecture families, held out of training.

    Args:
        unseen: the encoder trained (or fit) without the held-out tasks and families.
        seen_test_emb: (n_test, d) embeddings of the held-out models by the encoder
            trained on everything, for the same queries.
        data: the seed's data; ``data.plan.heldout_tasks`` and ``heldout_families`` name
            what was held out.

    Returns:
        ``{"tasks": {"unseen": metrics, "seen": metrics}, "families": {...}}`` over the
        same queries and gallery (all held-out models); a key only when something of its
        kind was held out.
    """
    test = data.plan.test_ids
    labels = data.labels(test, "task")
    emb = unseen.encode([data.nets[i] for i in test], batch_size=data.batch_size)
    out: Metrics = {}
    for key, column, held in (
        ("tasks", "task", data.plan.heldout_tasks),
        ("families", "family", data.plan.heldout_families),
    ):
        if held:
            queries = np.isin(data.manifest.loc[test, column].to_numpy(str), held)
            out[key] = {
                "unseen": subset_retrieval(emb, labels, queries),
                "seen": subset_retrieval(seen_test_emb, labels, queries),
            }
    return out
