"""The plan of a zoo: every model's task, architecture, hyper-parameters and seed.

The plan is a pure function of ``(preset, seed)``; model ``i`` draws from ``(seed, i)``
only. Work is grouped into units: one unit per trained model, one per batch of INRs fitted
together. Fine-tuned children run in a second phase, after their parents exist on disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from zoolens.errors import ZoolensError
from zoolens.zoo.archs import FAMILIES, FIXED_ACTIVATION, ArchSpec, accepts
from zoolens.zoo.archs_modern import SIZES, clip_size
from zoolens.zoo.presets import ZooPreset
from zoolens.zoo.tasks import INR_IMAGES, get_task, transfer_tasks
from zoolens.zoo.train import HParams


@dataclass(frozen=True)
class ModelSpec:
    """One model of the plan.

    Args:
        index: position in the zoo (0-based, stable for a preset and seed).
        id: ``m`` + zero-padded index; the model's directory name.
        task: task name.
        family: architecture family (``inr-relu`` / ``inr-sine`` for INRs).
        depth, width, activation, dropout: architecture hyper-parameters.
        hp: training hyper-parameters.
        seed: torch seed of this model (initialisation and batch order).
        parent: id of the model this one is fine-tuned from, or ``""``.
        finetune: ``""``, ``continue`` (same task) or ``head`` (new head, other task).
        image_index: the image an INR fits (-1 otherwise).
    """

    index: int
    id: str
    task: str
    family: str
    depth: int
    width: int
    activation: str
    dropout: float
    hp: HParams
    seed: int
    parent: str = ""
    finetune: str = ""
    image_index: int = -1

    def arch(self) -> ArchSpec:
        """The `ArchSpec` of a classifier / regressor."""
        t = get_task(self.task)
        return ArchSpec(
            self.family,
            t.input_shape,
            t.n_outputs,
            self.depth,
            self.width,
            self.activation,
            self.dropout,
            t.vocab,
        )


@dataclass(frozen=True)
class WorkUnit:
    """Models trained together by one worker call: one model, or a batch of INRs."""

    kind: str  # "model" or "inr"
    phase: int  # children (phase 1) run after every parent (phase 0)
    specs: tuple[ModelSpec, ...] = field(default_factory=tuple)


def model_id(index: int) -> str:
    """The id of the model at `index`."""
    return f"m{index:05d}"


def model_seed(seed: int, index: int) -> int:
    """A 31-bit torch seed for model `index` of a zoo generated with `seed`."""
    return int(np.random.SeedSequence([seed, index, 1]).generate_state(1)[0] >> 1)


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index, 0]))


def _log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _sample_hparams(p: ZooPreset, rng: np.random.Generator, lr_factor: float = 1.0) -> HParams:
    optimizer = str(rng.choice(p.optimizers))
    lr = _log_uniform(rng, p.lr) * lr_factor * (p.sgd_lr_factor if optimizer == "sgd" else 1.0)
    return HParams(
        lr=lr,
        optimizer=optimizer,
        weight_decay=float(rng.choice(p.weight_decays)),
        epochs=int(rng.choice(p.epochs)),
        batch_size=int(rng.choice(p.batch_sizes)),
        init_scale=_log_uniform(rng, p.init_scale),
        label_noise=float(rng.choice(p.label_noises)),
        train_fraction=float(rng.choice(p.train_fractions)),
        max_steps=p.max_steps,
    )


def _task_families(p: ZooPreset) -> dict[str, list[str]]:
    """Task → the preset's families that accept its inputs (tasks with none are dropped)."""
    for fam in p.families:
        if fam not in FAMILIES:
            raise ZoolensError(f"preset {p.name!r}: unknown family {fam!r}")
    out = {}
    for task in p.tasks:
        t = get_task(task)
        fams = [f for f in p.families if accepts(f, len(t.input_shape), t.vocab)]
        if fams and t.kind != "inr":
            out[task] = fams
    if p.n_models and not out:
        raise ZoolensError(f"preset {p.name!r}: no family fits any of its tasks")
    return out


def _pick(p: ZooPreset, i: int, task_fams: dict[str, list[str]]) -> tuple[str, str]:
    """Model `i`'s task and family. ``rotate="task"``: tasks in turn (every task gets its
    share), families rotating within each task; ``"family"``: families in turn (every
    family gets its share), the tasks a family accepts rotating within it."""
    tasks = list(task_fams)
    if p.rotate == "family":
        fams = [f for f in p.families if any(f in v for v in task_fams.values())]
        family = fams[i % len(fams)]
        fits = [t for t in tasks if family in task_fams[t]]
        return fits[(i // len(fams)) % len(fits)], family
    t = i % len(tasks)
    fams = task_fams[tasks[t]]
    return tasks[t], fams[(i // len(tasks) + t) % len(fams)]


def _plan_base(p: ZooPreset, seed: int, i: int, task_fams: dict[str, list[str]]) -> ModelSpec:
    """Task and family by `_pick`; sizes and hyper-parameters drawn from ``(seed, i)``."""
    task, family = _pick(p, i, task_fams)
    rng = _rng(seed, i)
    cnn = family.startswith("cnn")
    lo, hi = p.depths
    depth = int(rng.integers(lo, hi + 1))
    width = int(rng.choice(p.widths))
    activation = str(rng.choice(p.activations))
    if family in SIZES:
        depth, width = clip_size(family, depth, width)
    elif cnn:
        depth, width = min(depth, 3), int(np.clip(width // 2, 8, 32))
    return ModelSpec(
        index=i,
        id=model_id(i),
        task=task,
        family=family,
        depth=depth,
        width=width,
        activation=FIXED_ACTIVATION.get(family, activation),
        dropout=float(rng.choice(p.dropouts)),
        hp=_sample_hparams(p, rng),
        seed=model_seed(seed, i),
    )


def _plan_child(p: ZooPreset, seed: int, i: int, base: list[ModelSpec]) -> ModelSpec:
    """A fine-tune of a random base model: a new head on another task of the same input
    shape (60% when one exists), else continued training; lr is 0.3 times a fresh draw."""
    rng = _rng(seed, i)
    parent = base[int(rng.integers(len(base)))]
    targets = [t for t in transfer_tasks(parent.task) if t in p.tasks]
    head = bool(targets) and rng.random() < 0.6
    task = str(rng.choice(targets)) if head else parent.task
    hp = _sample_hparams(p, rng, lr_factor=0.3)
    hp = replace(hp, init_scale=parent.hp.init_scale)
    return ModelSpec(
        index=i,
        id=model_id(i),
        task=task,
        family=parent.family,
        depth=parent.depth,
        width=parent.width,
        activation=parent.activation,
        dropout=parent.dropout,
        hp=hp,
        seed=model_seed(seed, i),
        parent=parent.id,
        finetune="head" if head else "continue",
    )


def _plan_inr_batch(
    p: ZooPreset, seed: int, start: int, size: int, task: str, first_image: int
) -> WorkUnit:
    rng = _rng(seed, start)
    act = str(rng.choice(p.inr_activations))
    steps = int(rng.choice(p.inr_steps))
    n_images, height, width_px = INR_IMAGES[task]
    hp = HParams(
        lr=_log_uniform(rng, p.inr_lr),
        optimizer="adam",
        weight_decay=0.0,
        epochs=steps,
        batch_size=height * width_px,
        max_steps=steps,
    )
    depth, width = int(rng.choice(p.inr_depths)), int(rng.choice(p.inr_widths))
    specs = tuple(
        ModelSpec(
            index=start + k,
            id=model_id(start + k),
            task=task,
            family=f"inr-{act}",
            depth=depth,
            width=width,
            activation=act,
            dropout=0.0,
            hp=hp,
            seed=model_seed(seed, start),
            image_index=(first_image + k) % n_images,
        )
        for k in range(size)
    )
    return WorkUnit("inr", 0, specs)


def _plan_inrs(p: ZooPreset, seed: int, start: int) -> list[WorkUnit]:
    if not p.n_inrs:
        return []
    if not p.inr_tasks:
        raise ZoolensError(f"preset {p.name!r}: n_inrs > 0 but no inr_tasks")
    units, done, b = [], 0, 0
    used = dict.fromkeys(p.inr_tasks, 0)
    while done < p.n_inrs:
        task = p.inr_tasks[b % len(p.inr_tasks)]
        size = min(p.inr_batch, p.n_inrs - done)
        units.append(_plan_inr_batch(p, seed, start + done, size, task, used[task]))
        used[task] += size
        done, b = done + size, b + 1
    return units


def plan_zoo(preset: ZooPreset, seed: int) -> list[WorkUnit]:
    """Every unit of work of a zoo, in index order.

    Args:
        preset: the recipe.
        seed: the zoo seed.

    Returns:
        Units for base models and INR batches (phase 0) and fine-tunes (phase 1).
    """
    task_fams = _task_families(preset)
    base = [_plan_base(preset, seed, i, task_fams) for i in range(preset.n_models)]
    if preset.n_finetunes and not base:
        raise ZoolensError(f"preset {preset.name!r}: fine-tunes need n_models > 0")
    first = preset.n_models
    children = [_plan_child(preset, seed, first + j, base) for j in range(preset.n_finetunes)]
    units = [WorkUnit("model", 0, (s,)) for s in base]
    units += _plan_inrs(preset, seed, first + preset.n_finetunes)
    units += [WorkUnit("model", 1, (s,)) for s in children]
    return units
