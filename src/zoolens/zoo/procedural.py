"""A procedural zoo shard: fresh tasks (`procedural_tasks`), several networks trained on each.

Each call with a new seed draws tasks no earlier shard held, so training can read shard
after shard — an unbounded stream — and validate on shards of seeds it never trains on.
Networks are of every architecture family the input kind admits (MLPs and residual MLPs on
features; MLPs, CNNs, ResNet-, MobileNet-, ConvNeXt-like nets and ViTs on images; 1-D CNNs,
LSTMs, GRUs and transformers on signals; transformer encoders, decoders and Llama-style
decoders on tokens; ReLU and sine INRs on coordinates), with random size, activation,
optimiser settings and training length, so that positives (networks of one task) differ in
everything but what they were trained to compute. A shard is an ordinary zoo directory.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch

from zoolens.ir import Net, load_net
from zoolens.zoo.archs import ArchSpec, build_model
from zoolens.zoo.archs_modern import SIZES, clip_size
from zoolens.zoo.importers import write_zoo
from zoolens.zoo.inr import INRArch, fit_batch, forward_batch, psnr, split_batch
from zoolens.zoo.manifest import count_params, shape_str
from zoolens.zoo.procedural_tasks import ShapeTask, draw_task
from zoolens.zoo.tasks import TaskData, TaskSpec, image_coordinates
from zoolens.zoo.train import HParams, fit, metrics

#: Families per input kind, with their relative frequency.
FAMILIES: dict[str, dict[str, float]] = {
    "tabular": {"mlp": 0.65, "resmlp": 0.35},
    "image": {
        "mlp": 0.3,
        "cnn2d": 0.3,
        "cnn2d-bn": 0.2,
        "resnet": 0.05,
        "mobilenet": 0.05,
        "convnext": 0.05,
        "vit": 0.05,
    },
    "sequence": {
        "cnn1d": 0.25,
        "dwsep1d": 0.1,
        "lstm": 0.15,
        "gru": 0.15,
        "bilstm": 0.05,
        "bigru": 0.05,
        "signal-transformer": 0.1,
        "mlp": 0.15,
    },
    "tokens": {"tf-encoder": 0.4, "tf-decoder": 0.3, "llama": 0.3},
}
STEPS = (60, 120, 250)  # optimiser steps; a third of it for the slower modern families
ACTIVATIONS = ("relu", "tanh", "gelu", "leaky_relu", "sigmoid")
Item = tuple[Net, dict[str, Any]]


def _input_kind(data: TaskData) -> str:
    return data.spec.dataset.split(":", 1)[1]


def _draw_arch(rng: np.random.Generator, data: TaskData) -> ArchSpec:
    fams = FAMILIES[_input_kind(data)]
    family = str(rng.choice(list(fams), p=np.array(list(fams.values())) / sum(fams.values())))
    depth, width = int(rng.integers(1, 4)), int(rng.choice([16, 24, 32, 48, 64]))
    if family in SIZES:
        depth, width = clip_size(family, depth, width)
    act = str(rng.choice(ACTIVATIONS[:3] if family in SIZES else ACTIVATIONS))
    spec = data.spec
    return ArchSpec(family, spec.input_shape, spec.n_outputs, depth, width, act, vocab=spec.vocab)


def _train_one(data: TaskData, rng: np.random.Generator, index: int) -> Item | None:
    arch = _draw_arch(rng, data)
    seed = int(rng.integers(2**31))
    hp = HParams(
        lr=float(math.exp(rng.uniform(math.log(1e-3), math.log(1e-2)))),
        optimizer=str(rng.choice(["adam", "adamw"])),
        weight_decay=float(rng.choice([0.0, 1e-4, 1e-3])),
        epochs=100,
        batch_size=int(rng.choice([32, 64, 128])),
        max_steps=int(rng.choice(STEPS)) // (3 if arch.family in SIZES else 1),
    )
    torch.manual_seed(seed)
    model = build_model(arch)
    kind = data.spec.kind
    if fit(model, data.x_train, data.y_train, kind, hp, seed) is None:
        return None
    model.eval()
    net = load_net(model, input_shape=data.spec.input_shape)
    if not isinstance(net, Net):
        return None
    with torch.no_grad():
        out = net(data.x_test)
    row = _row(data.spec, arch.family, net, index)
    row.update(
        metrics(out, data.y_test, kind),
        arch=str(arch),
        steps=hp.max_steps,
        lr=hp.lr,
        optimizer=hp.optimizer,
        weight_decay=hp.weight_decay,
        batch_size=hp.batch_size,
        activation=arch.activation,
        depth=arch.depth,
        width=arch.width,
        seed=seed,
    )
    return net, row


def _fit_shapes(task: ShapeTask, rng: np.random.Generator, n: int, first: int) -> list[Item]:
    images = torch.as_tensor(np.stack([task.render(rng) for _ in range(n)]), dtype=torch.float32)
    coords = image_coordinates(task.size, task.size)
    act = str(rng.choice(["relu", "sine"]))
    arch = INRArch(int(rng.integers(1, 3)), int(rng.choice([16, 24, 32])), act)
    steps = int(rng.choice([200, 400]))
    params = fit_batch(
        arch, images, coords, steps, 1e-3 if act == "sine" else 5e-3, int(rng.integers(2**31))
    )
    with torch.no_grad():
        outs = forward_batch(arch, params, coords)
    items = []
    for i, (net, out, image) in enumerate(
        zip(split_batch(arch, params), outs, images, strict=True)
    ):
        row = _row(task.spec, f"inr-{act}", net, first + i)
        quality, mse = psnr(out, image)
        row.update(
            arch=str(arch),
            psnr=quality,
            test_loss=mse,
            steps=steps,
            activation=act,
            depth=arch.depth,
            width=arch.width,
        )
        items.append((net, row))
    return items


def _row(task: TaskSpec, family: str, net: Net, index: int) -> dict[str, Any]:
    return {
        "id": f"{task.name}-{index:02d}",
        "task": task.name,
        "dataset": task.dataset,
        "kind": task.kind,
        "family": family,
        "num_params": count_params(net),
        "index": index,
        "input_shape": shape_str(net.input_shape),
        "n_outputs": task.n_outputs,
        "split": "train",
    }


def task_items(seed: int, task_index: int, per_task: int) -> list[Item]:
    """The networks of one task: task `task_index` of the shard of `seed`."""
    rng = np.random.default_rng([seed, task_index])
    name = f"p{seed}-{task_index:05d}"
    task = draw_task(rng, name)
    if isinstance(task, ShapeTask):
        return _fit_shapes(task, rng, per_task, 0)
    torch.set_num_threads(1)
    items = [_train_one(task, rng, i) for i in range(per_task)]
    return [it for it in items if it is not None]


def _task_args(args: tuple[int, int, int]) -> list[Item]:
    return task_items(*args)


def generate_shard(
    out: str, seed: int, n_tasks: int, per_task: int = 6, workers: int = 1, split: str = "train"
) -> int:
    """Write a shard of `n_tasks` fresh tasks × `per_task` networks to zoo directory `out`.

    Returns:
        The number of networks written (a network whose training diverged is dropped).
    """
    os.makedirs(out, exist_ok=True)
    jobs = [(seed, i, per_task) for i in range(n_tasks)]
    items: list[Item] = []
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for chunk in pool.map(_task_args, jobs, chunksize=4):
                items.extend(chunk)
    else:
        for job in jobs:
            items.extend(_task_args(job))
    for _, row in items:
        row["split"] = split
    write_zoo(items, out)
    return len(items)
