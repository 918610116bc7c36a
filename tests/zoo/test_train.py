"""Training helpers: data perturbation, optimisers, the loop, metrics vs scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, r2_score

from zoolens.zoo.archs import ArchSpec, build_model
from zoolens.zoo.tasks import load_task
from zoolens.zoo.train import HParams, fit, make_optimizer, metrics, perturb_training_set

HP = HParams(lr=1e-2, optimizer="adam", weight_decay=0.0, epochs=3, batch_size=64)


def test_subset_and_label_noise_are_seeded() -> None:
    d = load_task("synth-a")
    hp = HParams(**{**HP.__dict__, "train_fraction": 0.25, "label_noise": 0.5})
    x1, y1 = perturb_training_set(d, hp, np.random.default_rng(0))
    x2, y2 = perturb_training_set(d, hp, np.random.default_rng(0))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert len(y1) == round(0.25 * len(d.y_train))
    rows = [(d.x_train == x).all(1).nonzero()[0, 0] for x in x1[:50]]
    flipped = (d.y_train[rows] != y1[:50]).float().mean()
    assert 0.1 < flipped < 0.7  # half are re-drawn, 3/4 of those land on another class


def test_fit_learns_and_counts_steps() -> None:
    d = load_task("iris")
    torch.manual_seed(0)
    model = build_model(ArchSpec("mlp", (4,), 3, 1, 16, "relu"))
    steps = fit(model, d.x_train, d.y_train, "classification", HP, seed=0)
    assert steps == 3 * (len(d.y_train) // 64)
    capped = fit(
        model,
        d.x_train,
        d.y_train,
        "classification",
        HParams(**{**HP.__dict__, "max_steps": 2}),
        seed=0,
    )
    assert capped == 2
    with torch.no_grad():
        assert metrics(model.eval()(d.x_test), d.y_test, "classification")["accuracy"] > 0.6


def test_fit_reports_divergence() -> None:
    d = load_task("diabetes")
    model = build_model(ArchSpec("mlp", (10,), 1, 2, 16, "relu"))
    wild = HParams(lr=1e30, optimizer="sgd", weight_decay=0.0, epochs=5, batch_size=32)
    assert fit(model, d.x_train, d.y_train, "regression", wild, seed=0) is None


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_optimizers(name: str) -> None:
    p = torch.nn.Parameter(torch.ones(2))
    opt = make_optimizer([p], HParams(**{**HP.__dict__, "optimizer": name}))
    assert type(opt).__name__.lower() == name


def test_metrics_agree_with_scikit_learn() -> None:
    g = torch.Generator().manual_seed(0)
    out, y = torch.randn(40, 3, generator=g), torch.randint(0, 3, (40,), generator=g)
    m = metrics(out, y, "classification")
    assert m["accuracy"] == pytest.approx(accuracy_score(y, out.argmax(1)))
    pred, target = torch.randn(40, 1, generator=g), torch.randn(40, 1, generator=g)
    r = metrics(pred, target, "regression")
    assert r["r2"] == pytest.approx(r2_score(target, pred))
    assert r["test_loss"] == pytest.approx(float(((pred - target) ** 2).mean()), rel=1e-6)
