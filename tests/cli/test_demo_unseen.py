"""(d) of the quickstart: nets of tasks no zoo holds, neighbours by embedding and raw weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoolens.cli import demo_unseen
from zoolens.cli.demo_unseen import (
    UNSEEN_TASKS,
    flat_weights,
    same_task_neighbours,
    train_unseen_nets,
    unseen_task_data,
    unseen_tasks,
)
from zoolens.errors import ZoolensError
from zoolens.ir import Net
from zoolens.nn import NeuralGraphEncoder
from zoolens.zoo.tasks import TASKS

Trained = tuple[list[Net], list[str], list[float]]


@pytest.fixture(scope="module")
def trained() -> Trained:
    return train_unseen_nets()


def _encoder() -> NeuralGraphEncoder:
    # Untrained, but with a function fingerprint.
    return NeuralGraphEncoder({"n_probes": 64, "fingerprint": 0.5})


def test_tasks_share_one_interface_no_zoo_task_has() -> None:
    zoo_interfaces = {(t.kind, t.input_shape, t.n_outputs) for t in TASKS.values()}
    assert ("classification", (10,), 3) not in zoo_interfaces
    for task in UNSEEN_TASKS:
        x, y = unseen_task_data(task)
        assert x.shape == (800, 10) and x.dtype == torch.float32
        assert set(y.tolist()) == {0, 1, 2}, task
    with pytest.raises(ZoolensError, match="unknown unseen task"):
        unseen_task_data("digits")


def test_counts_are_well_formed(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_unseen, "train_unseen_nets", lambda: trained)
    u = unseen_tasks(_encoder())
    assert u.tasks == list(UNSEEN_TASKS) and u.k == 3 and u.possible == 48
    for t in u.tasks:
        assert 0 <= u.embedding_same[t] <= 12 and 0 <= u.raw_same[t] <= 12
        assert len(u.accuracies[t]) == 4 and min(u.accuracies[t]) > 0.6, (t, u.accuracies)
    emb, raw = sum(u.embedding_same.values()), sum(u.raw_same.values())
    assert emb >= 40 and emb > raw + 20, (emb, raw)


def test_shuffled_task_labels_lower_the_count(trained: Trained) -> None:
    nets, labels, _ = trained
    vectors = _encoder().encode(list(nets))
    true = int(same_task_neighbours(vectors, labels).sum())
    rng = np.random.default_rng(0)
    for _ in range(5):
        shuffled = list(rng.permutation(labels))
        assert shuffled != labels
        assert int(same_task_neighbours(vectors, shuffled).sum()) < true - 10


def test_same_task_neighbours_hand_worked() -> None:
    v = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert same_task_neighbours(v, ["a", "a", "b", "b"], k=1).tolist() == [1, 1, 1, 1]
    assert same_task_neighbours(v, ["a", "b", "a", "b"], k=1).tolist() == [0, 0, 0, 0]
    assert same_task_neighbours(v, ["a", "a", "b", "b"], k=3).tolist() == [1, 1, 1, 1]


def test_flat_weights_zero_pads(trained: Trained) -> None:
    nets = trained[0][:2]  # widths 32 and 48
    flat = flat_weights(nets)
    sizes = [sum(t.numel() for t in n.parameters()) for n in nets]
    assert flat.shape == (2, max(sizes)) and sizes[0] < sizes[1]
    assert np.all(flat[0, sizes[0] :] == 0) and np.any(flat[1, sizes[0] :] != 0)
