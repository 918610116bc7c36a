"""The quickstart (`make demo`): its four demonstrations hold on a fresh work directory."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from zoolens.cli import demo, demo_unseen
from zoolens.cli.demo import FreshModel, fresh_tasks
from zoolens.cli.demo_unseen import UnseenTasks
from zoolens.cli.quickstart import run_quickstart
from zoolens.index import ModelIndex
from zoolens.nn import load_encoder
from zoolens.zoo.tasks import get_task


def test_quickstart_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fresh MLPs are seeded: both runs below get the same ones, trained once.
    monkeypatch.setattr(demo, "train_fresh_model", functools.cache(demo.train_fresh_model))
    monkeypatch.setattr(
        demo_unseen, "train_unseen_nets", functools.cache(demo_unseen.train_unseen_nets)
    )
    # An earlier run with another encoder left its index behind (as an upgrade that ships
    # a new default encoder does): the quickstart re-embeds it instead of failing.
    first = run_quickstart(workdir=str(tmp_path / "qs"), encoder="weight-stats")
    out = run_quickstart(workdir=str(tmp_path / "qs"))
    index = ModelIndex.open(str(tmp_path / "qs" / "index"), encoder=None)
    assert index.encoder.id == load_encoder("default").id and len(index) == 108
    checks = out["symmetry"]
    assert isinstance(checks, list) and len(checks) == 4
    for c in checks:  # (a) found at rank 1, identical embedding, different raw weights
        assert c.rank == 1 and c.embedding_cosine >= 0.9999, c
        assert c.raw_weight_cosine < 0.9 and c.max_output_diff < 1e-3, c
    fresh, baseline = out["fresh"], first["fresh"]
    assert isinstance(fresh, list) and isinstance(baseline, list)
    assert [f.task for f in fresh] == fresh_tasks() and len(fresh) >= 10
    for f in fresh:  # every fresh MLP learnt its task; five neighbours; (c) in range
        assert isinstance(f, FreshModel) and len(f.neighbour_tasks) == 5
        assert f.true_accuracy > 1.5 / get_task(f.task).n_outputs, f
        assert 0.0 <= f.predicted_accuracy <= 1.0 and 1 <= f.possible <= 5
    # (b) mostly same-task neighbours with the shipped encoder, far more than with the
    # weight-statistics baseline (so the check can fail).
    assert _same_share(fresh) > 0.75 > _same_share(baseline) + 0.2
    # (c) the predicted accuracies rank the true ones; the baseline's ridge does not
    assert _rank_corr(fresh) > 0.5 > _rank_corr(baseline) + 0.3
    assert np.mean([abs(f.true_accuracy - f.predicted_accuracy) for f in fresh]) < 0.08
    # (d) nets of tasks no zoo holds: the embedding's neighbours share the task, raw
    # weights' do not (the same seeds and widths across tasks are what raw weights see).
    unseen = out["unseen"]
    assert isinstance(unseen, UnseenTasks) and unseen.possible == 48
    same, raw = sum(unseen.embedding_same.values()), sum(unseen.raw_same.values())
    assert same >= 40 and same > raw + 20, unseen


def _same_share(fresh: list[FreshModel]) -> float:
    return float(np.sum([f.same_task for f in fresh]) / np.sum([f.possible for f in fresh]))


def _rank_corr(fresh: list[FreshModel]) -> float:
    true, pred = [f.true_accuracy for f in fresh], [f.predicted_accuracy for f in fresh]
    return float(spearmanr(true, pred).statistic)
