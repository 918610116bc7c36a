"""Getting each benchmarked encoder ready: contrastive training, fitting, or nothing.

* trainable encoders (`TRAINABLE`) are trained with `zoolens.train.train_encoder` on a zoo
  directory's train split (early stopping on its val split), in a run directory that keeps
  ``metrics.csv`` for the training-curve figure;
* learned baselines (`FITTED`) are fit on the train-split nets;
* the others are used as constructed (fixed-seed, where they have a seed);
* a *pretrained* encoder (`load_pretrained`: a training run, a saved encoder or a shipped
  name) is used as it is — the benchmark then measures the very weights a user gets.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from zoolens.errors import LoadError
from zoolens.ir import Net
from zoolens.nn import Encoder, encoder_class, load_encoder
from zoolens.nn.load import shipped_dir

log = logging.getLogger(__name__)

#: Encoders trained contrastively on the zoo.
TRAINABLE = ("neural-graph", "layerwise", "flat-transformer")
#: Baselines with a ``fit(models)`` step on the train split.
FITTED = ("flat-pca", "weight-stats", "metadata")
#: Every encoder the benchmark knows, the product first.
ALL_ENCODERS = (*TRAINABLE, *FITTED, "raw-weights", "probe")


@dataclass(frozen=True)
class TrainSettings:
    """How trainable encoders are trained.

    Args:
        epochs: maximum epochs per training run.
        max_minutes: wall-clock budget of one training run (checked after each epoch).
        patience: epochs without validation-mAP gain before stopping.
    """

    epochs: int = 10
    max_minutes: float = 2.0
    patience: int = 5


@dataclass
class Prepared:
    """An encoder ready to embed, and what getting it ready cost.

    Args:
        encoder: the trained / fitted / fixed encoder.
        seconds: wall-clock seconds of training or fitting (0 for fixed encoders).
        run_dir: training run directory (trainable encoders), else None.
        history: per-epoch training metrics (trainable encoders).
        best_epoch: epoch of the kept checkpoint, as the trainer reports it; 0 when not
            trained.
        trained_tasks: tasks its training learnt from, when known (None: unknown).
        trained_families: architecture families it learnt from, when known.
    """

    encoder: Encoder
    seconds: float = 0.0
    run_dir: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    trained_tasks: tuple[str, ...] | None = None
    trained_families: tuple[str, ...] | None = None


def check_encoder_names(names: Sequence[str]) -> list[str]:
    """`names` without repeats, each checked against the registered encoders.

    Raises:
        zoolens.errors.LoadError: an unknown name (the message lists the known ones).
    """
    out = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    for name in out:
        encoder_class(name)
    return out


def fresh_encoder(name: str, seed: int) -> Encoder:
    """An untrained encoder `name`, seeded with `seed` when its config has a seed."""
    cls = encoder_class(name)
    has_seed = hasattr(cls.config_class(), "seed")
    return cls({"seed": seed} if has_seed else {})


def prepare_encoder(
    name: str,
    seed: int,
    zoo_dir: str,
    run_dir: str,
    train_nets: Sequence[Net],
    settings: TrainSettings,
) -> Prepared:
    """Train, fit or just build encoder `name` for one benchmark seed.

    Args:
        name: a registered encoder name.
        seed: seeds the encoder's initialisation and its training's sampling.
        zoo_dir: zoo directory to train on (its train split; val for early stopping).
        run_dir: directory for the training run (replaced if it exists).
        train_nets: the train-split nets of that zoo, for ``fit``.
        settings: epochs and time budget of a training run.

    Returns:
        The `Prepared` encoder.
    """
    if name in TRAINABLE:
        return _train(name, seed, zoo_dir, run_dir, settings)
    encoder = fresh_encoder(name, seed)
    if name not in FITTED:
        return Prepared(encoder)
    start = time.perf_counter()
    encoder.fit(list(train_nets))  # type: ignore[attr-defined]
    return Prepared(encoder, time.perf_counter() - start)


def _train(name: str, seed: int, zoo_dir: str, run_dir: str, settings: TrainSettings) -> Prepared:
    from zoolens.train import TrainConfig, train_encoder

    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    config = TrainConfig(
        encoder=name,
        epochs=settings.epochs,
        seed=seed,
        max_minutes=settings.max_minutes,
        patience=settings.patience,
    )
    log.info("training %s (seed %d) on %s", name, seed, zoo_dir)
    start = time.perf_counter()
    result = train_encoder(zoo_dir, run_dir, config, progress=False)
    seconds = time.perf_counter() - start
    history: list[dict[str, Any]] = [dict(row) for row in result.history]
    return Prepared(result.encoder, seconds, run_dir, history, result.best_epoch)


def encoder_size_bytes(encoder: Encoder) -> int:
    """Bytes of the encoder's learned state (its saved tensors)."""
    return sum(t.numel() * t.element_size() for t in encoder.state_tensors().values())


RUN_SEP = "+"


def pretrained_runs(spec: str) -> list[str]:
    """The runs a ``--pretrained`` spec names: one, or several (of different training
    seeds) joined by ``+``; each is what `load_pretrained` reads."""
    return spec.split(RUN_SEP)


def load_pretrained(spec: str) -> Prepared:
    """An already trained encoder, used as it is.

    Args:
        spec: a training run directory (``best/`` or else ``last/``, ``metrics.csv``,
            ``train_config.json``, as `zoolens train` writes it), a saved encoder
            directory, or a shipped name (``default``). The training history and time
            come from the ``metrics.csv`` beside the weights when there is one.

    Raises:
        zoolens.errors.LoadError: `spec` is none of these.
    """
    kept = [os.path.join(spec, d) for d in ("best", "last") if os.path.isdir(os.path.join(spec, d))]
    run = spec if kept else None  # the trainer's choice: best if validation ever scored
    weights = kept[0] if kept else (shipped_dir(spec) or spec)
    if not os.path.isdir(weights):
        raise LoadError(f"{spec}: not a training run, a saved encoder or a shipped encoder")
    encoder = load_encoder(weights)
    history = _read_history(os.path.join(run or weights, "metrics.csv"))
    seconds = history[-1].get("seconds", 0.0) if history else 0.0
    trained_on: dict[str, list[str]] = {}
    if run and os.path.exists(os.path.join(run, "train_config.json")):
        with open(os.path.join(run, "train_config.json")) as f:
            trained_on = json.load(f).get("trained_on", {})
    tasks, families = (
        tuple(trained_on[k]) if k in trained_on else None for k in ("tasks", "families")
    )
    best = max(history, key=lambda r: r.get("val_mAP", 0.0)) if history else {}
    epoch = int(best.get("epoch", 0))
    return Prepared(encoder, seconds, run, history, epoch, tasks, families)


def _read_history(path: str) -> list[dict[str, float]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(f)
        ]
