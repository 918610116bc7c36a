"""Writing a benchmark run: figures, ``results.json`` and ``report.md``."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from zoolens.bench import figures as figs
from zoolens.bench.measure import EncoderMeasurement
from zoolens.bench.prepare import pretrained_runs
from zoolens.bench.report import PUBLISHED, json_safe, render_report
from zoolens.eval.prediction import (
    FOLDS,
    MLP_ALPHAS,
    MLP_COMPONENTS,
    MLP_HIDDEN,
    MLP_INNER_FOLDS,
    RIDGE_ALPHAS,
)

log = logging.getLogger(__name__)


@dataclass
class FigureData:
    """What the figures need from the first seed, per encoder.

    Args:
        embeddings: encoder → model id → embedding.
        cosines: encoder → view → per-model cosine to the original's embedding.
        run_dirs: trained encoder → its training run directory.
    """

    embeddings: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    cosines: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    run_dirs: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, meas: EncoderMeasurement) -> None:
        self.embeddings[name] = meas.embeddings
        self.cosines[name] = meas.cosines
        if meas.prepared.run_dir:
            self.run_dirs[name] = meas.prepared.run_dir

    def drop(self, name: str) -> None:
        """Forget encoder `name` (it failed on a later seed)."""
        for store in (self.embeddings, self.cosines, self.run_dirs):
            store.pop(name, None)


def protocol_notes(results: Mapping[str, Any], quick: bool) -> list[str]:
    """How each number was measured, for the report's protocol section."""
    p = results["protocol"]
    notes = [
        f"Held-out models: the zoo's test split ({p['n_test_models']} models measured). "
        "Trainable encoders are trained on the train split (early stopping on val mAP, at "
        f"most {p['epochs']} epochs and {p['max_minutes_per_encoder']:g} min per encoder over "
        "all its runs, checked after each epoch); learned baselines are fit on the train "
        "split; the others are fixed"
        + (
            f"; at most {p['max_train_models']} train-split models are used (seeded sample)."
            if p.get("max_train_models")
            else "."
        ),
        "Retrieval: leave-one-out among held-out models by cosine similarity; a query with "
        "no relevant item is skipped (n_queries counts the others). Task relevance treats "
        "each INR digit as its own task.",
        "Robustness: each held-out model against a copy under a random exact action "
        "(permutations, scalings, sign flips; seeded), and apart under DropConnect p = 0.05 "
        "and Gaussian noise of 0.05 × each tensor's std.",
        "Clustering: silhouette (cosine) and Davies–Bouldin of held-out models by task.",
        "Accuracy prediction: held-out classifiers, out-of-fold predictions clipped to the "
        "training fold's range; folds grouped by task (every prediction is for a task the "
        f"regressor never saw), and apart shuffled {FOLDS}-fold (tasks seen: other models of the "
        "query's task are in the training folds). Ridge: standardised embeddings, alpha "
        f"chosen from {len(RIDGE_ALPHAS)} values in [{min(RIDGE_ALPHAS):g}, "
        f"{max(RIDGE_ALPHAS):g}] by an inner {FOLDS}-fold CV grouped like the outer one; MLP: "
        f"standardised embeddings projected on {MLP_COMPONENTS} principal components, one "
        f"hidden layer of {MLP_HIDDEN} ReLU units (L-BFGS), weight decay chosen from "
        f"{{{', '.join(f'{a:g}' for a in MLP_ALPHAS)}}} by an inner {MLP_INNER_FOLDS}-fold CV "
        "grouped like the outer one.",
        f"Transfer: tasks {p['transfer_tasks'] or 'none'}; per task the best held-out "
        f"classifiers are queries; the top {p['transfer_k']} of the candidates (other tasks' "
        f"models with the same input shape, pool sizes {p['transfer_pool_sizes']}) are "
        f"fine-tuned with Adam (lr 1e-3, batch 64) for {p['transfer_budgets']} steps, with a "
        "new head where the output size differs; references: k random candidates, and the "
        "same random candidates re-initialised (from scratch).",
        "INR classification: logistic regression (standardised) fit on train-split INR "
        f"embeddings, accuracy on test-split INRs ({p['n_inrs']} INRs in all); kNN (k = 5, "
        "cosine) beside it.",
        f"Generalisation: held-out tasks {p['heldout_tasks'] or 'none'} and architecture "
        f"families {p.get('heldout_families') or 'none'} are removed from training (every "
        "model of theirs) of one counterpart per encoder; retrieval (relevant = same task) is "
        "among all held-out models, scored on the queries of those tasks, and separately of "
        "those families; 'seen' is the encoder trained on everything, same queries.",
        "Retrieval among same-shape models: a query's gallery is the held-out models with its "
        "input shape and output count, where shapes and names cannot reveal the task.",
        "Cost: train_seconds is training or fitting wall time; throughput is models embedded "
        "per second over every embedding call of the measurement (plan models and "
        "transformed copies; loading excluded, graph building included); both depend on the "
        "machine's load. Time-budgeted training completes as many epochs as the budget "
        "allows (train_epochs), so results can vary with the load even at fixed seeds. "
        f"Torch and BLAS threads: {p.get('threads') or 'library default'}.",
        "Seeds change encoder initialisation, training batches and views, symmetry actions, "
        "transfer picks and fine-tuning batches, and cross-validation folds.",
    ]
    for name, spec in p.get("pretrained", {}).items():
        held = p.get("pretrained_heldout", {}).get(name)
        runs = pretrained_runs(spec)
        notes.append(
            (
                f"{name} is pretrained, measured as it is on every seed (seeds then vary only "
                f"views, actions, transfer picks and folds): `{spec}`"
                if len(runs) == 1
                else f"{name} is pretrained: seed i measures the (i mod {len(runs)})-th of "
                f"{len(runs)} training runs, so its spread includes training variance: `{spec}`"
            )
            + (
                f"; its counterpart trained without the held-out tasks and families: `{held}`."
                if held
                else "; it has no held-out-task counterpart, so no generalisation figures."
            )
        )
    if importlib.util.find_spec("umap") is None:
        notes.append("UMAP maps are not drawn: the optional umap-learn package is missing.")
    if quick:
        notes.append(
            "QUICK RUN: 1 seed, at most 2 epochs, reduced model sets — a smoke "
            "test, not a measurement."
        )
    return notes


def _maps(data: FigureData, manifest: pd.DataFrame, out: str) -> list[tuple[str, str]]:
    rows = manifest.set_index("id", drop=False)
    made = []
    for method in ("tsne", "umap"):
        coords, labels = {}, None
        for name, by_id in data.embeddings.items():
            ids = list(by_id)
            with threadpool_limits(1):
                xy = figs.project_2d(np.stack([by_id[i] for i in ids]), method)
            if xy is not None:
                coords[name], labels = xy, rows.loc[ids]
        if not coords or labels is None:
            continue
        for col in ("task", "family"):
            file = f"{method}_by_{col}.png"
            title = f"{method.upper()} of embedded models by {col} (first seed)"
            figs.embedding_maps(coords, labels[col].to_numpy(str), title, os.path.join(out, file))
            made.append((title, file))
    return made


def draw_figures(
    results: Mapping[str, Any], data: FigureData, manifest: pd.DataFrame, out: str
) -> list[tuple[str, str]]:
    """Every figure the data allows, as ``(caption, file name)``."""
    enc, budgets = results["encoders"], results["protocol"]["transfer_budgets"]
    if not enc:
        return []
    made = []
    jobs: list[tuple[str, str, Callable[[str], str | None]]] = [
        (
            "Precision@k, relevance = same task",
            "precision_at_k.png",
            lambda p: figs.precision_bars(enc, p),
        ),
        ("Radar chart of headline metrics", "radar.png", lambda p: figs.radar(enc, p)),
        (
            "Training curves by loss component",
            "training_curves.png",
            lambda p: figs.training_curves(data.run_dirs, p),
        ),
        (
            "Robustness histograms",
            "robustness_hist.png",
            lambda p: figs.robustness_histograms(data.cosines, p),
        ),
        (
            "Transfer: accuracy vs fine-tuning steps",
            "transfer.png",
            lambda p: figs.transfer_curves(enc, budgets, p),
        ),
    ]
    for caption, file, draw in jobs:
        if draw(os.path.join(out, file)):
            made.append((caption, file))
    return made + _maps(data, manifest, out)


def write_outputs(
    results: dict[str, Any],
    data: FigureData,
    manifest: pd.DataFrame,
    out: str,
    draw: bool = True,
    start: float | None = None,
) -> None:
    """Draw figures (unless `draw` is False), then write ``results.json`` and ``report.md``.

    Args:
        results: the aggregated results; ``seconds`` (wall time since `start`) and
            ``published`` are added.
        data: first-seed embeddings, cosines and run directories.
        manifest: the zoo manifest (labels of the maps).
        out: the report directory.
        draw: draw figures.
        start: `time.perf_counter` value at the run's start.
    """
    figures = draw_figures(results, data, manifest, out) if draw else []
    results["figures"] = [file for _, file in figures]
    results["published"] = PUBLISHED
    results["seconds"] = time.perf_counter() - start if start is not None else float("nan")
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(json_safe(results), f, indent=1)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(render_report(results, figures))
    log.info("benchmark: wrote %s", os.path.join(out, "report.md"))
