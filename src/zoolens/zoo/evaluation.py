"""Re-run a zoo model on its task's test split and recompute its recorded metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from zoolens.errors import ZoolensError
from zoolens.ir import Net
from zoolens.zoo.inr import psnr
from zoolens.zoo.tasks import TASKS, image_coordinates, load_inr_images, load_task
from zoolens.zoo.train import metrics


def evaluate_metrics(net: Net, row: Mapping[str, Any]) -> dict[str, float]:
    """All test metrics of `net` for the task named in its manifest `row`.

    Args:
        net: the model (e.g. ``zoo.load(row["id"])``).
        row: its manifest row (needs ``task``; INRs also ``image_index``).

    Returns:
        ``accuracy``, ``test_loss`` and ``r2`` (classification / regression), or
        ``psnr`` and ``test_loss`` (INR).
    """
    task = str(row["task"])
    if task not in TASKS:
        raise ZoolensError(
            f"model {row.get('id')!r}: task {task!r} has no offline data in "
            "zoolens (only generated zoos can be re-evaluated)"
        )
    if TASKS[task].kind == "inr":
        images, _ = load_inr_images(task)
        image = images[int(row["image_index"])]
        with torch.no_grad():
            out = net(image_coordinates(image.shape[0], image.shape[1]))
        quality, mse = psnr(out, image)
        return {"psnr": quality, "test_loss": mse}
    data = load_task(task)
    with torch.no_grad():
        out = net(data.x_test)
    return metrics(out, data.y_test, data.spec.kind)


def evaluate(net: Net, row: Mapping[str, Any]) -> float:
    """The headline test metric of `net`, rebuilt from its task's deterministic test split.

    Args:
        net: the model.
        row: its manifest row.

    Returns:
        Test accuracy (classification), R² (regression) or PSNR in dB (INR) — the value
        recorded in the row's ``accuracy``, ``r2`` or ``psnr`` column.
    """
    m = evaluate_metrics(net, row)
    kind = TASKS[str(row["task"])].kind
    return (
        m["accuracy"] if kind == "classification" else m["r2" if kind == "regression" else "psnr"]
    )
