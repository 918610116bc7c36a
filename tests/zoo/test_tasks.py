"""Offline tasks: shapes, fixed splits, tasks that share shapes but differ in function."""

from __future__ import annotations

import pytest
import torch

from zoolens.errors import ZoolensError
from zoolens.zoo.tasks import (
    INR_IMAGES,
    TASKS,
    image_coordinates,
    load_inr_images,
    load_task,
    same_shape_tasks,
    transfer_tasks,
)

SUPERVISED = [t for t, s in TASKS.items() if s.kind != "inr"]


@pytest.mark.parametrize("name", SUPERVISED)
def test_task_tensors_have_the_declared_shapes(name: str) -> None:
    d = load_task(name)
    assert d.x_train.shape[1:] == d.spec.input_shape == d.x_test.shape[1:]
    if d.spec.vocab:  # token ids
        assert d.x_train.dtype == torch.int64
        assert int(d.x_train.min()) >= 0 and int(d.x_train.max()) < d.spec.vocab
    else:
        assert d.x_train.dtype == torch.float32 and torch.isfinite(d.x_train).all()
    assert len(d.x_test) >= 25 and len(d.x_train) > len(d.x_test)
    if d.spec.kind == "classification":
        assert d.y_train.dtype == torch.int64
        assert set(d.y_test.tolist()) == set(range(d.spec.n_outputs))
    else:
        assert d.y_train.shape == (len(d.x_train), d.spec.n_outputs)


def test_there_are_enough_tasks_and_groups_of_identical_shape() -> None:
    kinds = {TASKS[t].kind for t in SUPERVISED}
    assert len(SUPERVISED) >= 12 and kinds == {"classification", "regression"}
    assert set(same_shape_tasks("synth-a")) >= {"synth-b", "synth-c", "blobs"}
    assert set(same_shape_tasks("digits")) == {"digits-perm"}
    assert set(same_shape_tasks("diabetes")) == {"friedman1", "synth-reg"}
    assert "digits-parity" in transfer_tasks("digits") and "iris" not in transfer_tasks("wine")


def test_same_shape_tasks_differ_in_what_they_ask() -> None:
    a, b = load_task("digits"), load_task("digits-perm")
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.y_train, b.y_train)
    s1, s2 = load_task("synth-a"), load_task("synth-b")
    assert not torch.equal(s1.x_train, s2.x_train)


def test_splits_are_fixed_and_cached() -> None:
    assert load_task("wine") is load_task("wine")
    load_task.cache_clear()
    again = load_task("digits")
    assert torch.equal(again.x_test, load_task("digits").x_test)


def test_inr_images_and_coordinates() -> None:
    for name, (n, h, w) in INR_IMAGES.items():
        images, labels = load_inr_images(name)
        assert images.shape == (n, h, w) and images.min() >= 0 and images.max() <= 1
        assert set(labels.tolist()) == set(range(10))
    c = image_coordinates(2, 3)
    assert c.shape == (6, 2) and c.min() == -1 and c.max() == 1
    assert c[1].tolist() == [0.0, -1.0]  # row-major: x varies fastest


def test_unknown_task_is_a_clear_error() -> None:
    with pytest.raises(ZoolensError, match="unknown task"):
        load_task("imagenet")
    with pytest.raises(ZoolensError, match="load_inr_images"):
        load_task("inr-digits")
