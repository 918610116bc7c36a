"""Benchmark figures (PNG): precision@k bars, radar chart, t-SNE maps, training curves,
robustness histograms and transfer curves.

Drawn on `matplotlib.figure.Figure` objects (no pyplot state, no display needed).
UMAP maps are drawn too when the optional ``umap-learn`` package is installed.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from zoolens.bench.report import get

log = logging.getLogger(__name__)
Figure = Any  # matplotlib.figure.Figure, imported lazily


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig: Figure, path: str) -> str:
    fig.savefig(path)
    return path


def _mean_std(res: Mapping[str, Any], path: str) -> tuple[float, float]:
    stat = get(res, path)
    if stat is None or stat["mean"] is None or not math.isfinite(stat["mean"]):
        return math.nan, 0.0
    return float(stat["mean"]), float(stat["std"] or 0.0)


def precision_bars(encoders: Mapping[str, Any], path: str, ks: Sequence[int] = (1, 5, 10)) -> str:
    """Grouped bars of P@k (task relevance) per encoder, error bars = std over seeds."""
    fig = _figure(max(6.0, 1.1 * len(encoders) + 2), 4)
    ax = fig.add_subplot()
    width = 0.8 / len(ks)
    x = np.arange(len(encoders))
    for j, k in enumerate(ks):
        stats = [_mean_std(res, f"retrieval.P@{k}") for res in encoders.values()]
        ax.bar(
            x + (j - (len(ks) - 1) / 2) * width,
            [s[0] for s in stats],
            width,
            yerr=[s[1] for s in stats],
            capsize=2,
            label=f"P@{k}",
        )
    ax.set_xticks(x, list(encoders), rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("precision (relevant = same task)")
    ax.set_title("Retrieval precision@k on held-out models")
    ax.legend()
    return _save(fig, path)


RADAR_AXES = [
    ("mAP", "retrieval.mAP", False),
    ("P@1", "retrieval.P@1", False),
    ("exact cos", "robustness.exact.cos_mean", False),
    ("silhouette (0–1)", "clustering.silhouette", True),
    ("acc. R² (ridge)", "accuracy_prediction.ridge.R2", False),
    ("INR acc.", "inr.logistic_acc", False),
    ("transfer acc@100", "transfer.acc@100", False),
    ("mAP unseen tasks", "generalisation.tasks.unseen.mAP", False),
    ("mAP unseen families", "generalisation.families.unseen.mAP", False),
]


def radar(encoders: Mapping[str, Any], path: str) -> str | None:
    """A radar chart of headline metrics scaled to [0, 1] (silhouette as (s + 1) / 2,
    others clipped); axes no encoder has are left out. None when fewer than 3 axes remain."""
    axes = [
        a
        for a in RADAR_AXES
        if any(math.isfinite(_mean_std(r, a[1])[0]) for r in encoders.values())
    ]
    if len(axes) < 3:
        return None
    angles = np.linspace(0, 2 * np.pi, len(axes), endpoint=False)
    fig = _figure(8, 6)
    ax = fig.add_subplot(projection="polar")
    for name, res in encoders.items():
        vals = []
        for _, key, shift in axes:
            v = _mean_std(res, key)[0]
            v = (v + 1) / 2 if shift else v
            vals.append(0.0 if not math.isfinite(v) else min(max(v, 0.0), 1.0))
        ax.plot(np.append(angles, angles[0]), [*vals, vals[0]], label=name)
    ax.set_xticks(angles, [a[0] for a in axes], fontsize=8)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right", bbox_to_anchor=(1.35, 1.1), fontsize=7)
    ax.set_title("Overall comparison (higher is better)")
    return _save(fig, path)


def project_2d(emb: np.ndarray, method: str, seed: int = 0) -> np.ndarray | None:
    """(n, 2) t-SNE or UMAP coordinates; None when too few points or UMAP is missing."""
    n = emb.shape[0]
    if n < 5:
        return None
    if method == "umap":
        try:
            import umap
        except ImportError:
            return None
        reducer = umap.UMAP(n_neighbors=min(15, n - 1), random_state=seed, n_jobs=1)
        return np.asarray(reducer.fit_transform(emb))
    from sklearn.manifold import TSNE

    tsne = TSNE(2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed)
    return np.asarray(tsne.fit_transform(emb))


def embedding_maps(
    maps: Mapping[str, np.ndarray], labels: np.ndarray, title: str, path: str
) -> str:
    """One scatter panel per encoder of precomputed 2-D points coloured by `labels`."""
    names = list(maps)
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig = _figure(3.6 * cols + 1.8, 3.3 * rows)
    classes = sorted(set(labels.tolist()))
    from matplotlib import colormaps

    cmap = colormaps["tab20" if len(classes) > 10 else "tab10"]
    for p, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, p + 1)
        for c, cls in enumerate(classes):
            sel = labels == cls
            ax.scatter(*maps[name][sel].T, s=10, color=cmap(c % cmap.N), label=str(cls))
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def read_metrics_csv(path: str) -> dict[str, list[float]]:
    """Columns of a training run's ``metrics.csv`` as float lists (empty cells → NaN)."""
    cols: dict[str, list[float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for key, v in row.items():
                cols.setdefault(key, []).append(float(v) if v not in ("", None) else math.nan)
    return cols


def training_curves(run_dirs: Mapping[str, str], path: str) -> str | None:
    """Per-epoch loss components and validation mAP of each trained encoder."""
    runs = {
        n: read_metrics_csv(os.path.join(d, "metrics.csv"))
        for n, d in run_dirs.items()
        if os.path.exists(os.path.join(d, "metrics.csv"))
    }
    if not runs:
        return None
    panels = ["loss", "contrastive", "accuracy_mse", "val_mAP"]
    fig = _figure(12, 3.2)
    for p, key in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        for name, cols in runs.items():
            if key in cols:
                ax.plot(cols["epoch"], cols[key], marker="o", ms=3, label=name)
        ax.set_title(key)
        ax.set_xlabel("epoch")
    fig.axes[0].legend(fontsize=7)
    fig.suptitle("Training curves by loss component (first seed)")
    return _save(fig, path)


def robustness_histograms(cosines: Mapping[str, Mapping[str, np.ndarray]], path: str) -> str:
    """Histograms of cos(embedding, embedding of a transformed copy), one panel per view."""
    views = ["exact", "dropconnect", "noise"]
    fig = _figure(12, 3.4)
    for p, view in enumerate(views):
        ax = fig.add_subplot(1, len(views), p + 1)
        for name, by_view in cosines.items():
            if view in by_view and len(by_view[view]):
                ax.hist(by_view[view], bins=np.linspace(-1, 1, 41), histtype="step", label=name)
        ax.set_title(f"{view}")
        ax.set_xlabel("cosine to the original's embedding")
    fig.axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle("Symmetry robustness (first seed; exact actions should sit at 1)")
    return _save(fig, path)


def transfer_curves(encoders: Mapping[str, Any], budgets: Sequence[int], path: str) -> str | None:
    """Test accuracy vs fine-tuning steps: each encoder's top-k, random picks, scratch."""
    if not any(get(r, f"transfer.acc@{budgets[-1]}") for r in encoders.values()):
        return None
    fig = _figure(6.5, 4)
    ax = fig.add_subplot()
    for name, res in encoders.items():
        ax.plot(
            budgets,
            [_mean_std(res, f"transfer.acc@{b}")[0] for b in budgets],
            marker="o",
            label=name,
        )
    ref = next(iter(encoders.values()))
    for key, style in (("random", "k--"), ("scratch", "k:")):
        ax.plot(
            budgets,
            [_mean_std(ref, f"transfer.{key}_acc@{b}")[0] for b in budgets],
            style,
            label=f"{key} (reference)",
        )
    ax.set_xlabel("fine-tuning steps")
    ax.set_ylabel("test accuracy on the query task")
    ax.set_title("Transfer: fine-tuning the top-k retrieved models")
    ax.legend(fontsize=7)
    return _save(fig, path)
