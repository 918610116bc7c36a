"""The benchmark runner: every encoder, every metric, held-out models, one report.

    from zoolens.bench import BenchmarkConfig, run_benchmark

    results = run_benchmark(BenchmarkConfig(zoo="zoos/tiny", out="bench/tiny"))

For each seed, each encoder is trained (trainable), fit (learned baselines) or built
(fixed) on the zoo's train split, then measured on the test split: retrieval, symmetry
robustness, clustering, accuracy prediction, transfer by fine-tuning, INR
classification, generalisation to tasks held out of training, and cost. The output
directory receives ``results.json`` (mean ± std over seeds), ``report.md``, PNG figures
and ``runs/`` (training runs and the reduced zoos they trained on).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from zoolens.bench.data import (
    BenchPlan,
    PlanSettings,
    capped_training_mask,
    make_plan,
    write_subzoo,
)
from zoolens.bench.measure import (
    EncoderMeasurement,
    Metrics,
    SeedData,
    make_views,
    measure_generalisation,
)
from zoolens.bench.output import FigureData, protocol_notes, write_outputs
from zoolens.bench.prepare import (
    ALL_ENCODERS,
    Prepared,
    TrainSettings,
    check_encoder_names,
    load_pretrained,
    prepare_encoder,
    pretrained_runs,
)
from zoolens.bench.report import aggregate
from zoolens.bench.transfer import TransferRunner, TransferSettings
from zoolens.ir import Net
from zoolens.nn.base import torch_threads
from zoolens.zoo import Zoo
from zoolens.zoo.manifest import kept

log = logging.getLogger(__name__)
SECTIONS = ("transfer", "generalisation", "figures")


@dataclass(frozen=True)
class BenchmarkConfig:
    """Args:
    zoo: zoo directory.
    out: report directory (created).
    encoders: encoder names, the product (``neural-graph``) first by convention.
    seeds: benchmark seeds 0 .. seeds - 1.
    epochs: maximum training epochs of trainable encoders.
    max_minutes: training budget of one trainable encoder over all its runs (every seed,
        with and without the held-out tasks), split evenly between the runs; each run
        checks it after every epoch and always completes at least one epoch.
    quick: reduced run (1 seed, 2 epochs, fewer models) for tests and smoke checks.
    skip: sections to leave out: ``transfer``, ``generalisation``, ``figures``.
    batch_size: embedding batch size.
    command: the command line to record; reconstructed from the config when empty.
    plan: sizes of the measured model sets.
    transfer: fine-tuning settings of the transfer experiment.
    max_train_models: cap on train-split models used for training and fitting (a seeded
        sample, with a quarter as many validation models); None uses them all.
    pretrained: encoder name → trained encoder to measure as it is instead of training
        one per seed (a `zoolens train` run directory, a saved encoder or ``default``);
        see `zoolens.bench.prepare.load_pretrained`. Several joined by ``+`` (runs of
        different training seeds): seed i measures the (i mod n)-th, so the spread over
        seeds includes training variance.
    pretrained_heldout: encoder name → its counterpart trained without the plan's
        held-out tasks and families, for the generalisation test (a pretrained encoder
        without one has no generalisation figures); several joined by ``+`` as above.
    threads: torch and BLAS threads during the run (restored after); None leaves them.
        Zoo models are small: on a shared or busy machine extra threads mostly contend
        (embedding was measured ~20x slower with 2 threads than with 1 under load).
    """

    zoo: str
    out: str
    encoders: tuple[str, ...] = ALL_ENCODERS
    seeds: int = 3
    epochs: int = 10
    max_minutes: float = 2.0
    quick: bool = False
    skip: tuple[str, ...] = ()
    batch_size: int = 64
    command: str = ""
    plan: PlanSettings = field(default_factory=PlanSettings)
    transfer: TransferSettings = field(default_factory=TransferSettings)
    max_train_models: int | None = None
    pretrained: dict[str, str] = field(default_factory=dict)
    pretrained_heldout: dict[str, str] = field(default_factory=dict)
    threads: int | None = 1

    def resolved(self) -> BenchmarkConfig:
        """The config actually run: ``quick`` applied and the skip list checked."""
        bad = set(self.skip) - set(SECTIONS)
        if bad:
            raise ValueError(f"unknown section(s) to skip: {sorted(bad)}; known: {SECTIONS}")
        if self.seeds < 1 or self.epochs < 1:
            raise ValueError("seeds and epochs must be >= 1")
        if not self.quick:
            return self
        plan = replace(
            self.plan,
            max_eval_models=40,
            max_inrs=40,
            n_heldout_tasks=1,
            n_transfer_tasks=1,
            n_queries=1,
            max_pool=24,
        )
        return replace(
            self,
            seeds=1,
            epochs=min(self.epochs, 2),
            plan=plan,
            max_train_models=self.max_train_models or 48,
        )

    def command_line(self) -> str:
        if self.command:
            return self.command
        parts = [
            "zoolens benchmark",
            f"--zoo {self.zoo}",
            f"--out {self.out}",
            f"--encoders {','.join(self.encoders)}",
            f"--seeds {self.seeds}",
            f"--epochs {self.epochs}",
            f"--max-minutes {self.max_minutes:g}",
        ]
        parts += ["--quick"] if self.quick else []
        parts += [f"--skip {','.join(self.skip)}"] if self.skip else []
        parts += [f"--threads {self.threads or 0}"] if self.threads != 1 else []
        parts += [f"--max-train-models {self.max_train_models}"] if self.max_train_models else []
        for flag, specs in (
            ("--pretrained", self.pretrained),
            ("--pretrained-heldout", self.pretrained_heldout),
        ):
            parts += [f"{flag} {','.join(f'{k}={v}' for k, v in specs.items())}"] if specs else []
        if self.plan.max_eval_models is not None:
            parts += [f"--max-eval-models {self.plan.max_eval_models}"]
        return " ".join(parts)

    def minutes_per_run(self, heldout: bool) -> float:
        """Budget of one training run: ``max_minutes`` over the runs of one encoder."""
        return self.max_minutes / (self.seeds * (2 if heldout else 1))


def seed_spec(spec: str, seed: int) -> str:
    """The run a ``RUN_A+RUN_B+...`` spec gives to `seed`: the (seed mod n)-th."""
    runs = pretrained_runs(spec)
    return runs[seed % len(runs)]


@dataclass
class _Run:
    """State of one benchmark run across seeds."""

    cfg: BenchmarkConfig
    zoo: Zoo
    plan: BenchPlan
    nets: dict[str, Net]
    train_zoo: str
    heldout_zoo: str | None
    per_seed: dict[str, list[Metrics]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    figures: FigureData = field(default_factory=FigureData)
    _train_nets: dict[str, list[Net]] = field(default_factory=dict)
    _pretrained: dict[str, Prepared] = field(default_factory=dict)

    def pretrained(self, spec: str, seed: int = 0) -> Prepared:
        """The pretrained encoder `spec` names for `seed` (each loaded once)."""
        path = seed_spec(spec, seed)
        if path not in self._pretrained:
            self._pretrained[path] = load_pretrained(path)
        return self._pretrained[path]

    def train_nets(self, zoo_dir: str) -> list[Net]:
        """Train-split nets of the zoo at `zoo_dir` (loaded once)."""
        if zoo_dir not in self._train_nets:
            sub = Zoo.open(zoo_dir)
            ids = sub.manifest.loc[sub.manifest["split"] == "train", "id"]
            self._train_nets[zoo_dir] = [sub.load(str(i)).to(torch.float32) for i in ids]
        return self._train_nets[zoo_dir]

    def run_dir(self, name: str, seed: int, suffix: str = "") -> str:
        return os.path.join(self.cfg.out, "runs", name, f"seed{seed}{suffix}")


def _setup(cfg: BenchmarkConfig) -> _Run:
    zoo = Zoo.open(cfg.zoo)
    plan = make_plan(zoo.manifest, cfg.plan)
    runs = os.path.join(cfg.out, "runs")
    train_zoo = cfg.zoo
    base = np.ones(len(zoo.manifest), dtype=bool)
    if cfg.max_train_models is not None:
        base = capped_training_mask(zoo.manifest, cfg.max_train_models)
        train_zoo = write_subzoo(zoo, base, os.path.join(runs, "zoo-train"))
    heldout_zoo = None
    if (plan.heldout_tasks or plan.heldout_families) and "generalisation" not in cfg.skip:
        held_out = kept(zoo.manifest, plan.heldout_tasks, plan.heldout_families)
        keep = base & held_out.to_numpy()
        heldout_zoo = write_subzoo(zoo, keep, os.path.join(runs, "zoo-heldout"))
    nets = {i: zoo.load(i).to(torch.float32) for i in plan.embed_ids}
    return _Run(cfg, zoo, plan, nets, train_zoo, heldout_zoo)


def _seed_data(run: _Run, seed: int) -> SeedData:
    test_nets = [run.nets[i] for i in run.plan.test_ids]
    views, viewed = make_views(test_nets, seed)
    return SeedData(
        manifest=run.zoo.manifest.set_index("id", drop=False),
        plan=run.plan,
        nets=run.nets,
        views=views,
        view_ids=[run.plan.test_ids[i] for i in viewed],
        batch_size=run.cfg.batch_size,
        seed=seed,
    )


def _run_encoder(
    run: _Run, name: str, seed: int, data: SeedData, transfer: TransferRunner | None
) -> tuple[Metrics, EncoderMeasurement]:
    minutes = run.cfg.minutes_per_run(run.heldout_zoo is not None)
    settings = TrainSettings(run.cfg.epochs, minutes)
    pretrained = run.cfg.pretrained.get(name)
    if pretrained is not None:
        prepared = run.pretrained(pretrained, seed)
    else:
        prepared = prepare_encoder(
            name,
            seed,
            run.train_zoo,
            run.run_dir(name, seed),
            run.train_nets(run.train_zoo),
            settings,
        )
    meas = EncoderMeasurement(prepared, data, transfer)
    metrics = meas.run()
    unseen: Prepared | None = None
    if run.heldout_zoo is not None and pretrained is not None:
        if name in run.cfg.pretrained_heldout:
            unseen = run.pretrained(run.cfg.pretrained_heldout[name], seed)
    elif run.heldout_zoo is not None:
        unseen = prepare_encoder(
            name,
            seed,
            run.heldout_zoo,
            run.run_dir(name, seed, "-heldout"),
            run.train_nets(run.heldout_zoo),
            settings,
        )
    if unseen is not None:
        metrics["generalisation"] = measure_generalisation(
            unseen.encoder, meas.test_embeddings(), data
        )
        cost = metrics["cost"]
        assert isinstance(cost, dict)
        cost["heldout_train_seconds"] = unseen.seconds
    return metrics, meas


def _check_heldout(name: str, unseen: Prepared, plan: BenchPlan) -> None:
    """A pretrained held-out counterpart must not have learnt from the held-out tasks or
    families."""
    for what, learnt, held in (
        ("tasks", unseen.trained_tasks, plan.heldout_tasks),
        ("families", unseen.trained_families, plan.heldout_families),
    ):
        if not held:
            continue
        if learnt is None and what == "families" and unseen.trained_tasks is not None:
            raise ValueError(  # it records its tasks: a run from before --exclude-families
                f"{name}: the held-out run learnt every family (it predates "
                f"--exclude-families); retrain it with --exclude-families {','.join(held)}"
            )
        if learnt is None:
            log.warning("benchmark: cannot check which %s %s's held-out run learnt", what, name)
            continue
        seen = sorted(set(learnt) & set(held))
        if seen:
            raise ValueError(
                f"{name}: the held-out run was trained on {what} {seen}, which the benchmark "
                f"holds out; train it with --exclude-{what} {','.join(sorted(held))}"
            )


def _run_seed(run: _Run, seed: int, names: list[str], progress: bool) -> None:
    data = _seed_data(run, seed)
    transfer = None
    if "transfer" not in run.cfg.skip:
        m = run.zoo.manifest
        accuracy = dict(zip(m["id"].astype(str), m["accuracy"].astype(float), strict=True))
        transfer = TransferRunner(
            run.plan, run.nets.__getitem__, seed, run.cfg.transfer, quality=accuracy
        )
    todo: Any = [n for n in names if n not in run.failures]
    if progress:
        from zoolens.progress import progress_bar

        todo = progress_bar(todo, desc=f"benchmark seed {seed}", unit="encoder")
    for name in todo:
        start = time.perf_counter()
        try:
            metrics, meas = _run_encoder(run, name, seed, data, transfer)
        except Exception as e:  # one broken encoder must not sink the others
            log.error("benchmark: %s failed on seed %d: %s: %s", name, seed, type(e).__name__, e)
            log.debug("benchmark: %s traceback", name, exc_info=True)
            run.failures[name] = f"seed {seed}: {type(e).__name__}: {e}"
            run.per_seed.pop(name, None)
            run.figures.drop(name)
            continue
        run.per_seed.setdefault(name, []).append(metrics)
        if seed == 0:
            run.figures.add(name, meas)
        log.info("benchmark: %s seed %d done in %.1fs", name, seed, time.perf_counter() - start)


def run_benchmark(config: BenchmarkConfig, progress: bool = False) -> dict[str, Any]:
    """Run the benchmark and write ``results.json``, ``report.md`` and figures to ``out``.

    Args:
        config: what to run (see `BenchmarkConfig`).
        progress: show a progress bar over encoders.

    Returns:
        The results (as in ``results.json``, with NaN where JSON has null).
    """
    from zoolens.optional import optional_import

    optional_import("matplotlib", "zoolens benchmark (its figures)", "bench")  # before any work
    cfg = config.resolved()
    start = time.perf_counter()
    names = check_encoder_names(cfg.encoders)
    unknown = (set(cfg.pretrained) | set(cfg.pretrained_heldout)) - set(names)
    if unknown:
        raise ValueError(f"pretrained encoder(s) {sorted(unknown)} are not among --encoders")
    os.makedirs(cfg.out, exist_ok=True)
    with _limit_threads(cfg.threads):
        results = _run(cfg, names, progress, start)
    return results


@contextmanager
def _limit_threads(n: int | None) -> Iterator[None]:
    """Torch intra-op and BLAS/OpenMP threads limited to `n` inside the block."""
    if n is None:
        yield
        return
    with torch_threads(n), threadpool_limits(n):
        yield


def _run(cfg: BenchmarkConfig, names: list[str], progress: bool, start: float) -> dict[str, Any]:
    run = _setup(cfg)
    for name, spec in cfg.pretrained_heldout.items():
        for seed in range(len(pretrained_runs(spec))):
            _check_heldout(name, run.pretrained(spec, seed), run.plan)
    for seed in range(cfg.seeds):
        _run_seed(run, seed, names, progress)
    encoders = {n: aggregate(run.per_seed[n]) for n in names if n in run.per_seed}
    results: dict[str, Any] = {
        "encoders": encoders,
        "zoo": _zoo_summary(run.zoo),
        "command": cfg.command_line(),
        "seeds": list(range(cfg.seeds)),
        "protocol": _protocol(cfg, run.plan),
        "failures": run.failures,
        "per_seed": run.per_seed,
    }
    results["notes"] = protocol_notes(results, cfg.quick)
    draw = "figures" not in cfg.skip
    write_outputs(results, run.figures, run.zoo.manifest, cfg.out, draw=draw, start=start)
    return results


def _protocol(cfg: BenchmarkConfig, plan: BenchPlan) -> dict[str, Any]:
    return {
        **plan.to_dict(),
        "transfer_k": cfg.transfer.k,
        "transfer_budgets": list(cfg.transfer.budgets),
        "epochs": cfg.epochs,
        "max_minutes_per_encoder": cfg.max_minutes,
        "max_train_models": cfg.max_train_models,
        "threads": cfg.threads,
        "pretrained": dict(cfg.pretrained),
        "pretrained_heldout": dict(cfg.pretrained_heldout),
        "quick": cfg.quick,
        "skipped": list(cfg.skip),
    }


def _zoo_summary(zoo: Zoo) -> dict[str, Any]:
    m = zoo.manifest
    preset = zoo.info.get("preset")
    return {
        "path": os.path.abspath(zoo.path),
        "preset": preset.get("name") if isinstance(preset, dict) else preset,
        "seed": zoo.info.get("seed"),
        "n_models": len(m),
        "by_split": {str(k): int(v) for k, v in m["split"].value_counts().items()},
        "by_kind": {str(k): int(v) for k, v in m["kind"].value_counts().items()},
        "n_tasks": int(m["task"].nunique()),
        "n_families": int(m["family"].nunique()),
    }
