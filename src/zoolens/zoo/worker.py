"""What one worker does with one unit of work: train, import as a `Net`, verify, save.

A model is written to ``models/.tmp-<id>-<pid>/`` (``arch.json``, ``model.safetensors``,
``row.json``) and renamed to ``models/<id>/`` only when complete, so a directory named
after a model id always holds a whole model and its manifest row.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from zoolens.errors import ZoolensError
from zoolens.ir import Net, load_net, load_net_dir
from zoolens.zoo.archs import build_model, load_from_net, new_head, scale_init
from zoolens.zoo.inr import INRArch, fit_batch, forward_batch, psnr, split_batch
from zoolens.zoo.manifest import assign_split, count_params, shape_str
from zoolens.zoo.plan import ModelSpec, WorkUnit
from zoolens.zoo.tasks import get_task, image_coordinates, load_inr_images, load_task
from zoolens.zoo.train import fit, metrics, perturb_training_set
from zoolens.zoo.zoo import MODELS_DIR

log = logging.getLogger(__name__)

ROW_FILE = "row.json"
_MAX_RETRIES = 4


def model_dir(zoo_dir: str, model_id: str) -> str:
    """Directory of model `model_id` inside a zoo."""
    return os.path.join(zoo_dir, MODELS_DIR, model_id)


def read_row(path: str) -> dict[str, Any]:
    """The manifest row stored beside a saved model."""
    with open(os.path.join(path, ROW_FILE)) as f:
        return dict(json.load(f))


def save_model(net: Net, row: dict[str, Any], zoo_dir: str) -> None:
    """Write `net` and its row under ``models/<id>`` atomically (temp dir + rename)."""
    final = model_dir(zoo_dir, row["id"])
    tmp = os.path.join(zoo_dir, MODELS_DIR, f".tmp-{row['id']}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    net.save(tmp)
    with open(os.path.join(tmp, ROW_FILE), "w") as f:
        json.dump(row, f, indent=1)
    try:
        os.rename(tmp, final)
    except OSError:  # written meanwhile by another run: keep the existing one
        shutil.rmtree(tmp, ignore_errors=True)


def existing_rows(zoo_dir: str) -> dict[str, dict[str, Any]]:
    """Rows of every complete model under ``zoo_dir/models`` (temp dirs are removed)."""
    root = os.path.join(zoo_dir, MODELS_DIR)
    rows: dict[str, dict[str, Any]] = {}
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        path = os.path.join(root, name)
        if name.startswith(".tmp-"):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(os.path.join(path, ROW_FILE)):
            rows[name] = read_row(path)
    return rows


def run_unit(unit: WorkUnit, zoo_dir: str, zoo_seed: int) -> list[dict[str, Any]]:
    """Train every not-yet-saved model of `unit`, save it, and return the new rows.

    Args:
        unit: one model or one batch of INRs.
        zoo_dir: the zoo directory.
        zoo_seed: the zoo seed (for the split).

    Returns:
        Manifest rows of the models written by this call.
    """
    todo = [s for s in unit.specs if not os.path.isdir(model_dir(zoo_dir, s.id))]
    if not todo:
        return []
    if unit.kind == "inr":
        return _fit_inrs(unit, {s.id for s in todo}, zoo_dir, zoo_seed)
    return [_train_model(spec, zoo_dir, zoo_seed) for spec in todo]


def init_worker() -> None:
    """Pool initialiser: one torch thread per worker process."""
    torch.set_num_threads(1)


def run_unit_args(args: tuple[WorkUnit, str, int]) -> list[dict[str, Any]]:
    """`run_unit` taking one tuple (for ``Pool.imap_unordered``)."""
    return run_unit(*args)


# -- classifiers and regressors ----------------------------------------------------------
def _initial_model(spec: ModelSpec, zoo_dir: str) -> torch.nn.Module:
    """A fresh model, or the parent's weights (with a new head for ``head`` fine-tunes)."""
    torch.manual_seed(spec.seed)
    if not spec.parent:
        model = build_model(spec.arch())
        scale_init(model, spec.hp.init_scale)
        return model
    parent_path = model_dir(zoo_dir, spec.parent)
    if not os.path.isdir(parent_path):
        raise ZoolensError(f"{spec.id}: parent {spec.parent} missing in {zoo_dir}")
    parent_task = get_task(read_row(parent_path)["task"])
    model = build_model(replace(spec.arch(), n_outputs=parent_task.n_outputs))
    load_from_net(model, load_net_dir(parent_path))
    if spec.finetune == "head":
        new_head(model, get_task(spec.task).n_outputs)
    return model


def _fit_with_retries(spec: ModelSpec, zoo_dir: str) -> tuple[torch.nn.Module, ModelSpec, int]:
    """Train; on divergence retry from the same initialisation with lr / 4."""
    data = load_task(spec.task)
    for _ in range(_MAX_RETRIES):
        model = _initial_model(spec, zoo_dir)
        x, y = perturb_training_set(data, spec.hp, np.random.default_rng(spec.seed))
        steps = fit(model, x, y, data.spec.kind, spec.hp, spec.seed)
        finite = all(torch.isfinite(p).all() for p in model.state_dict().values())
        if steps is not None and finite:
            return model, spec, steps
        log.info("%s diverged at lr=%.3g; retrying with lr/4", spec.id, spec.hp.lr)
        spec = replace(spec, hp=replace(spec.hp, lr=spec.hp.lr / 4))
    raise ZoolensError(f"{spec.id}: training diverged {_MAX_RETRIES} times ({spec})")


def _check_same(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    err = float((a - b).abs().max()) if a.numel() else 0.0
    if not err <= 1e-4 * (1.0 + float(b.abs().max())):
        raise ZoolensError(f"{what}: imported Net differs from the trained model by {err:.3g}")


def _train_model(spec: ModelSpec, zoo_dir: str, zoo_seed: int) -> dict[str, Any]:
    model, spec, steps = _fit_with_retries(spec, zoo_dir)
    data = load_task(spec.task)
    model.eval()
    net = load_net(model, input_shape=data.spec.input_shape)  # torch.fx, else torch.export
    if not isinstance(net, Net):
        raise ZoolensError(f"{spec.id}: {spec.arch()} was not read as a Net")
    with torch.no_grad():
        out = net(data.x_test)
        _check_same(out, model(data.x_test), spec.id)
    row = _base_row(spec, net, zoo_seed)
    row.update(metrics(out, data.y_test, data.spec.kind), steps=steps, arch=str(spec.arch()))
    save_model(net, row, zoo_dir)
    return row


def _base_row(spec: ModelSpec, net: Net, zoo_seed: int) -> dict[str, Any]:
    t, hp = get_task(spec.task), spec.hp
    return {
        "id": spec.id,
        "index": spec.index,
        "task": t.name,
        "dataset": t.dataset,
        "kind": t.kind,
        "family": spec.family,
        "num_params": count_params(net),
        "lr": hp.lr,
        "optimizer": hp.optimizer,
        "weight_decay": hp.weight_decay,
        "epochs": hp.epochs,
        "batch_size": hp.batch_size,
        "dropout": spec.dropout,
        "init_scale": hp.init_scale,
        "label_noise": hp.label_noise,
        "train_fraction": hp.train_fraction,
        "activation": spec.activation,
        "depth": spec.depth,
        "width": spec.width,
        "seed": spec.seed,
        "parent": spec.parent,
        "finetune": spec.finetune,
        "split": assign_split(spec.parent or spec.id, zoo_seed),
        "input_shape": shape_str(t.input_shape),
        "n_outputs": t.n_outputs,
    }


# -- INRs --------------------------------------------------------------------------------
def _fit_inrs(
    unit: WorkUnit, wanted: set[str], zoo_dir: str, zoo_seed: int
) -> list[dict[str, Any]]:
    """Fit the unit's INRs as one batch (all of them: the batch is the unit of determinism)."""
    first = unit.specs[0]
    images_all, labels = load_inr_images(first.task)
    images = images_all[[s.image_index for s in unit.specs]]  # (B, H, W)
    coords = image_coordinates(images.shape[1], images.shape[2])
    arch = INRArch(first.depth, first.width, first.activation)
    params = fit_batch(arch, images, coords, first.hp.max_steps, first.hp.lr, first.seed)
    with torch.no_grad():
        batched = forward_batch(arch, params, coords)  # (B, P, 1)
    rows = []
    for spec, net, image, ref in zip(
        unit.specs, split_batch(arch, params), images, batched, strict=True
    ):
        if spec.id not in wanted:
            continue
        with torch.no_grad():
            out = net(coords)
        _check_same(out, ref, spec.id)
        quality, mse = psnr(out, image)
        row = _base_row(spec, net, zoo_seed)
        row.update(
            arch=str(arch),
            psnr=quality,
            test_loss=mse,
            steps=first.hp.max_steps,
            label=int(labels[spec.image_index]),
            image_index=spec.image_index,
        )
        save_model(net, row, zoo_dir)
        rows.append(row)
    return rows
