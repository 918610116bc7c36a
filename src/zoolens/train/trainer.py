"""Contrastive training of an encoder on a zoo: λ·contrastive + (1 − λ)·accuracy MSE."""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from zoolens.errors import ZoolensError
from zoolens.eval import retrieval_metrics
from zoolens.graph import NeuralGraph
from zoolens.ir import Net, TensorSet
from zoolens.nn import Encoder, NeuralGraphEncoder, encoder_class, load_encoder
from zoolens.nn.fingerprint import output_statistics
from zoolens.nn.load import _register_all
from zoolens.nn.torch_encoder import TorchEncoder
from zoolens.optional import optional_import
from zoolens.train.config import TrainConfig
from zoolens.train.data import (
    ZooSplit,
    concat_splits,
    functional_profiles,
    graph_view,
    load_split,
    make_view,
    sample_batches,
)
from zoolens.train.losses import accuracy_loss, functional_loss, supcon_loss
from zoolens.zoo import Zoo
from zoolens.zoo.manifest import MANIFEST_FILE, kept

log = logging.getLogger(__name__)
METRIC_FIELDS = ["epoch", "loss", "contrastive", "functional", "accuracy_mse", "val_mAP", "seconds"]


@dataclass
class TrainResult:
    encoder: Encoder
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_map: float = float("nan")


def _torch_encoder(enc: Encoder) -> TorchEncoder:
    if not isinstance(enc, TorchEncoder):
        raise ZoolensError(f"encoder {enc.name!r} has no trainable module")
    return enc


def _module(enc: Encoder) -> nn.Module:
    return _torch_encoder(enc).module


def _initial_encoder(config: TrainConfig) -> Encoder:
    """A fresh encoder of `config`, or a copy of `config.init` to fine-tune (its
    fingerprint weight 0: what trains and is validated is the learned part)."""
    if not config.init:
        return encoder_class(config.encoder)({**config.encoder_config, "seed": config.seed})
    enc = load_encoder(config.init)  # a copy read from disk: training it changes no other
    if isinstance(enc, NeuralGraphEncoder):
        enc = enc.with_fingerprint(0.0)
    if not isinstance(enc, TorchEncoder):
        raise ZoolensError(f"--init {config.init}: {enc.name!r} has no trainable weights")
    return enc


def validation_map(enc: Encoder, split: ZooSplit) -> float:
    if len(split.nets) < 2:
        return float("nan")
    _module(enc).eval()
    z = enc.encode(split.nets, batch_size=128)
    return float(retrieval_metrics(z, split.groups)["mAP"])


class Trainer:
    """Train `config.encoder` on the zoo at `zoo_dir` (or on several, e.g. the shards of a
    procedural stream: their train splits train, their validation splits choose), writing
    checkpoints to `out`."""

    def __init__(self, zoo_dir: str | Sequence[str], out: str, config: TrainConfig) -> None:
        self.sources = [zoo_dir] if isinstance(zoo_dir, str) else list(zoo_dir)
        self.zoos: list[Zoo] = []
        self.out, self.cfg = out, config
        self.refresh_zoos()
        if not self.zoos:
            raise ZoolensError(f"no zoo at {', '.join(self.sources)}")
        _register_all()
        self.encoder = _initial_encoder(config)
        torch_enc = _torch_encoder(self.encoder)
        params = torch_enc.parameters()  # the quality head's included
        self.opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, max(config.epochs, 1))
        self.epoch, self.best_map, self.best_epoch, self.stale = 0, -1.0, -1, 0
        self.seconds = 0.0  # training wall time of earlier invocations (resumed runs)
        self.history: list[dict[str, float]] = []
        self._graphs: list[NeuralGraph] | None = None
        self._profiles: tuple[torch.Tensor, np.ndarray] | None = None
        self._stats: torch.Tensor | None = None  # the graphs' output statistics, if read
        self._tb: Any = _tensorboard_writer(out) if config.tensorboard else None

    def refresh_zoos(self) -> list[Zoo]:
        """Open the zoos of `sources` not open yet and return them. A source may be a glob
        pattern (``"shards/train-*"``): the shards of a stream written while this run trains
        join it at the next epoch. A directory without a manifest yet is skipped."""
        have = {os.path.abspath(z.path) for z in self.zoos}
        new = []
        for src in self.sources:
            paths = sorted(glob.glob(src)) if glob.has_magic(src) else [src]
            for path in paths:
                if os.path.abspath(path) in have or (
                    glob.has_magic(src) and not os.path.exists(os.path.join(path, MANIFEST_FILE))
                ):
                    continue
                new.append(Zoo.open(path))
                have.add(os.path.abspath(path))
        self.zoos.extend(new)
        return new

    def trained_on(self) -> dict[str, Any]:
        """The zoos, tasks and families this run learns from (train and validation splits)."""
        cfg = self.cfg
        tasks: set[str] = set()
        families: set[str] = set()
        for zoo in self.zoos:
            m = zoo.manifest
            used = m["split"].isin(["train", "val"]) & kept(
                m, cfg.exclude_tasks, cfg.exclude_families
            )
            tasks.update(m.loc[used, "task"].astype(str))
            families.update(m.loc[used, "family"].astype(str))
        paths = [os.path.abspath(z.path) for z in self.zoos]
        return {
            "zoo": paths[0] if len(paths) == 1 else paths,
            "tasks": sorted(tasks),
            "families": sorted(families),
        }

    # -- one step ------------------------------------------------------------------------
    def views(self, batch: list[Net] | list[NeuralGraph], gen: torch.Generator) -> torch.Tensor:
        """Embeddings of two augmented views of each item, ``(2 * len(batch), d)``."""
        cfg, enc = self.cfg, self.encoder
        if isinstance(enc, NeuralGraphEncoder):
            graphs = [
                graph_view(g, gen, cfg.drop_connect, cfg.noise)
                for g in batch
                if isinstance(g, NeuralGraph)
                for _ in range(2)
            ]
            return enc.forward(graphs)
        nets: list[Net | TensorSet] = [
            make_view(n, gen, cfg.drop_connect, cfg.noise)
            for n in batch
            if isinstance(n, Net)
            for _ in range(2)
        ]
        return _torch_encoder(enc).train_forward(nets)

    def step(
        self,
        batch: list[Net] | list[NeuralGraph],
        groups: np.ndarray,
        targets: np.ndarray,
        gen: torch.Generator,
        profiles: tuple[torch.Tensor, np.ndarray] | None = None,
        extra: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """One optimiser step on `batch`; `profiles` are the batch's `functional_profiles`
        (needed when ``config.functional`` > 0), `extra` its items' `output_statistics`
        (needed by a quality head that reads them, as a fine-tuned encoder's may)."""
        cfg = self.cfg
        z = nn.functional.normalize(self.views(batch, gen), dim=1)
        if cfg.positives == "task":
            codes = np.unique(groups, return_inverse=True)[1]
        else:
            codes = np.arange(len(batch))
        labels = torch.as_tensor(np.repeat(codes, 2))
        con = supcon_loss(z, labels, cfg.tau)
        both = None if extra is None else extra.repeat_interleave(2, dim=0)  # both views
        pred = torch.sigmoid(_torch_encoder(self.encoder).quality_logits(z, both))
        acc = accuracy_loss(pred, torch.as_tensor(np.repeat(targets, 2), dtype=torch.float32))
        loss = cfg.lam * con + (1 - cfg.lam) * acc
        func = torch.zeros(())
        if cfg.functional and profiles is not None:
            rows, iface = profiles
            same = torch.as_tensor(iface[:, None] == iface[None, :]) & ~torch.eye(
                len(iface), dtype=torch.bool
            )
            func = functional_loss(z[0::2], rows @ rows.T, same)  # first view of each
            loss = loss + cfg.functional * func
        self.opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        nn.utils.clip_grad_norm_(_torch_encoder(self.encoder).parameters(), 5.0)
        self.opt.step()
        return {
            "loss": loss.item(),
            "contrastive": con.item(),
            "functional": func.item(),
            "accuracy_mse": acc.item(),
        }

    # -- the loop ------------------------------------------------------------------------
    def fit(self, resume: bool = False, progress: bool = True) -> TrainResult:
        cfg = self.cfg
        os.makedirs(self.out, exist_ok=True)
        if resume:
            self.load_checkpoint()
        held_out = (cfg.exclude_tasks, cfg.exclude_families)
        train = concat_splits([load_split(z, "train", *held_out) for z in self.zoos])
        val = concat_splits([load_split(z, "val", *held_out) for z in self.zoos])
        start = time.time()
        while self.epoch < cfg.epochs and self.stale < cfg.patience:
            epoch_start = time.time()
            new = self.refresh_zoos()  # shards of a stream written meanwhile
            if new:
                train = concat_splits([train, *[load_split(z, "train", *held_out) for z in new]])
                log.info(
                    "epoch %d: %d new zoo(s), %d models", self.epoch + 1, len(new), len(train.nets)
                )
            row = self.run_epoch(train, progress)
            row["val_mAP"] = validation_map(self.encoder, val)
            row["seconds"] = self.seconds + time.time() - start  # cumulative over resumes
            self.history.append(row)
            self.epoch += 1
            self.sched.step()
            self.track_best(row["val_mAP"])
            self.save_checkpoint(row)
            log.info("epoch %d: %s", self.epoch, row)
            now = time.time()
            if (now - start + (now - epoch_start)) / 60 > cfg.max_minutes:  # next would overrun
                log.warning("stopping: another epoch would pass %.0f min", cfg.max_minutes)
                break
        if self._tb is not None:
            self._tb.close()
        best = os.path.join(self.out, "best")
        enc = Encoder.load(best) if os.path.isdir(best) else self.encoder
        return TrainResult(enc, self.history, self.best_epoch, self.best_map)

    def run_epoch(self, train: ZooSplit, progress: bool) -> dict[str, float]:
        rng = np.random.default_rng([self.cfg.seed, self.epoch])
        gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + self.epoch)
        batches = sample_batches(train.groups, self.cfg.batch_size, self.cfg.per_group, rng)
        _module(self.encoder).train()
        sums: dict[str, float] = {}
        it: Any = batches
        if progress:
            from zoolens.progress import progress_bar

            it = progress_bar(batches, desc=f"epoch {self.epoch + 1}", unit="batch")
        items: list[Any] = train.nets
        if isinstance(self.encoder, NeuralGraphEncoder):
            done = 0 if self._graphs is None else len(self._graphs)
            if done < len(train.nets):  # canonical graphs once; views are made on them
                fresh = [self.encoder.graph(n) for n in train.nets[done:]]
                graphs = (self._graphs or []) + fresh
                self._graphs = graphs
                if self.cfg.functional:  # interface codes are recomputed over all models
                    self._profiles = functional_profiles(graphs, train.nets)
                if self.encoder.quality_extra_dim:  # fixed per graph: once, not every step
                    self._stats = output_statistics(graphs)
                items = graphs
            else:
                items = self._graphs or []
        for b in it:
            prof = None if self._profiles is None else (self._profiles[0][b], self._profiles[1][b])
            extra = None if self._stats is None else self._stats[b]
            batch = [items[i] for i in b]
            m = self.step(batch, train.groups[b], train.targets[b], gen, prof, extra)
            for k, v in m.items():
                sums[k] = sums.get(k, 0.0) + v / len(batches)
            if progress:
                it.set_postfix(loss=f"{m['loss']:.3f}")
        return {"epoch": float(self.epoch + 1), **sums}

    def track_best(self, val_map: float) -> None:
        if np.isfinite(val_map) and val_map > self.best_map:
            self.best_map, self.best_epoch, self.stale = val_map, self.epoch, 0
            self.encoder.save(os.path.join(self.out, "best"))
        else:
            self.stale += 1

    # -- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self, row: dict[str, float]) -> None:
        last = os.path.join(self.out, "last")
        self.encoder.save(last)
        state = {
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "epoch": self.epoch,
            "best_map": self.best_map,
            "best_epoch": self.best_epoch,
            "stale": self.stale,
            "seconds": row["seconds"],
        }
        torch.save(state, os.path.join(last, "trainer_state.pt"))
        with open(os.path.join(self.out, "train_config.json"), "w") as f:
            json.dump({**self.cfg.to_dict(), "trained_on": self.trained_on()}, f, indent=1)
        path = os.path.join(self.out, "metrics.csv")
        new = not os.path.exists(path)
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in METRIC_FIELDS})
        if self._tb is not None:
            for k, v in row.items():
                if k != "epoch":
                    self._tb.add_scalar(k, v, int(row["epoch"]))
            self._tb.flush()

    def load_checkpoint(self) -> None:
        last = os.path.join(self.out, "last")
        if not os.path.isdir(last):
            log.warning("%s: nothing to resume, starting fresh", last)
            return
        self.encoder.load_state_tensors(Encoder.load(last).state_tensors())
        state = torch.load(os.path.join(last, "trainer_state.pt"), weights_only=True)
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.epoch, self.best_map = int(state["epoch"]), float(state["best_map"])
        self.best_epoch, self.stale = int(state["best_epoch"]), int(state["stale"])
        self.seconds = float(state.get("seconds", 0.0))  # absent in older checkpoints


def _tensorboard_writer(out: str) -> Any:
    """One TensorBoard event writer for the run, under ``out/tb``.

    Raises:
        MissingDependencyError: the tensorboard package is not installed.
    """
    optional_import("tensorboard", "TensorBoard logging (--tensorboard)", "train")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(os.path.join(out, "tb"))


def train_encoder(
    zoo_dir: str | Sequence[str],
    out: str,
    config: TrainConfig | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train an encoder on a zoo (train split; early stopping on val mAP).

    Returns:
        The best encoder (by validation mAP) and the per-epoch history.
    """
    return Trainer(zoo_dir, out, config or TrainConfig()).fit(resume=resume, progress=progress)
