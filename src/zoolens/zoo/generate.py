"""`generate_zoo`: train a zoo from a preset — deterministic, resumable, CPU, multi-process.

Determinism: the plan and every model's torch seed come from ``(seed, index)``; each
process trains with one torch thread, so ``jobs=1`` and ``jobs=4`` write bit-identical
weights. Resumability: models already under ``models/`` are skipped; the manifest is
rebuilt from the ``row.json`` beside each model and rewritten atomically every
``flush_every`` models and at the end (also after an interruption).

With ``jobs > 1`` workers are started with the ``spawn`` method: scripts that call
`generate_zoo` must do so under ``if __name__ == "__main__":``. Run one generation per
directory at a time (a new run removes half-written ``models/.tmp-*`` directories).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from typing import Any, cast

import torch

from zoolens.errors import ZoolensError
from zoolens.progress import progress_bar
from zoolens.zoo.manifest import rows_to_frame, write_manifest
from zoolens.zoo.plan import WorkUnit, plan_zoo
from zoolens.zoo.presets import ZooPreset, get_preset
from zoolens.zoo.tasks import check_task_packages
from zoolens.zoo.worker import existing_rows, init_worker, run_unit_args
from zoolens.zoo.zoo import MODELS_DIR, ZOO_FILE, Zoo

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def generate_zoo(
    preset: str | ZooPreset,
    out: str,
    seed: int = 0,
    jobs: int = 1,
    progress: bool = True,
    limit: int | None = None,
    flush_every: int = 50,
) -> Zoo:
    """Train (or finish training) the zoo described by `preset` into directory `out`.

    Args:
        preset: a preset name (``tiny``, ``bench``, or one registered) or a `ZooPreset`.
        out: the zoo directory (created; resumed if it holds part of this zoo).
        seed: the zoo seed; same preset and seed give bit-identical weights.
        jobs: worker processes (``spawn``, one torch thread each); 1 trains in-process.
        progress: show a progress bar on stderr.
        limit: train at most this many units of work in this call (a time box; call again
            to continue). None trains everything.
        flush_every: rewrite the manifest after this many new models.

    Returns:
        The opened `Zoo`.
    """
    p = get_preset(preset)
    _prepare_dir(out, p, seed)
    units = plan_zoo(p, seed)
    rows = existing_rows(out)
    todo = [u for u in units if any(s.id not in rows for s in u.specs)]
    if limit is not None:
        todo = todo[:limit]
    check_task_packages(s.task for u in todo for s in u.specs)  # before any training
    log.info(
        "zoo %s: %d of %d models present, %d units to train", out, len(rows), p.total, len(todo)
    )
    bar = _progress_bar(p, len(rows), progress)
    since_flush = 0
    try:
        for new_rows in _run_all(todo, out, seed, jobs):
            rows.update((r["id"], r) for r in new_rows)
            bar.update(len(new_rows))
            since_flush += len(new_rows)
            if since_flush >= flush_every:
                write_manifest(rows_to_frame(list(rows.values())), out)
                since_flush = 0
    finally:
        bar.close()
        write_manifest(rows_to_frame(list(rows.values())), out)
    return Zoo.open(out)


def _progress_bar(p: ZooPreset, done: int, show: bool) -> Any:
    """A bar counting models (not units), starting at the models already present."""
    extra: dict[str, Any] = {} if show else {"disable": True}
    bar = progress_bar(
        iter(()), total=p.total, initial=done, unit="model", desc=f"zoo {p.name}", **extra
    )
    return cast(Any, bar)


def _prepare_dir(out: str, p: ZooPreset, seed: int) -> None:
    """Create `out` with its ``zoo.json``, or check that it holds this preset and seed."""
    os.makedirs(os.path.join(out, MODELS_DIR), exist_ok=True)
    info = {
        "format": "zoolens.zoo",
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "preset": p.to_dict(),
    }
    path = os.path.join(out, ZOO_FILE)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old.get("seed") != seed or old.get("preset") != info["preset"]:
            raise ZoolensError(
                f"{out}: holds a zoo of preset {old.get('preset', {}).get('name')!r} with "
                f"seed {old.get('seed')}, not {p.name!r} with seed {seed}; "
                "choose another --out or the same preset and seed to resume"
            )
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(info, f, indent=1)
    os.replace(tmp, path)


def _run_all(
    units: list[WorkUnit], out: str, seed: int, jobs: int
) -> Iterator[list[dict[str, Any]]]:
    """Rows of each unit as it completes; phase 0 (parents, INRs) before phase 1."""
    phases = [[(u, out, seed) for u in units if u.phase == p] for p in (0, 1)]
    if jobs <= 1 or len(units) <= 1:
        for batch in phases:
            yield from _run_serial(batch)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(min(jobs, len(units)), initializer=init_worker) as pool:
        for batch in phases:
            batch.sort(key=lambda a: a[0].kind != "inr")  # long INR batches first
            yield from pool.imap_unordered(run_unit_args, batch, chunksize=1)
        pool.close()
        pool.join()


def _run_serial(batch: list[tuple[WorkUnit, str, int]]) -> Iterator[list[dict[str, Any]]]:
    """Run in this process with one torch thread (the same numerics as the workers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for args in batch:
            t0 = time.perf_counter()
            rows = run_unit_args(args)
            log.debug("unit %s: %.2fs", args[0].specs[0].id, time.perf_counter() - t0)
            yield rows
    finally:
        torch.set_num_threads(threads)
