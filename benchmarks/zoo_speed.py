"""How long zoo generation takes: the `tiny` preset end to end, and `bench` from a sample.

    python benchmarks/zoo_speed.py                      # tiny, one process
    python benchmarks/zoo_speed.py --jobs 2             # tiny, two worker processes
    python benchmarks/zoo_speed.py --bench-fraction 0.02 --skip-tiny

The bench estimate trains an evenly spaced sample of `bench`'s units (base models, INR
batches, fine-tunes) in this process with one torch thread and scales each kind's time up
to the full preset; the two-core figure assumes both workers stay busy.
"""

from __future__ import annotations

import argparse
import collections
import random
import statistics
import tempfile
import time

import torch

from zoolens.zoo import generate_zoo
from zoolens.zoo.generate import _prepare_dir
from zoolens.zoo.plan import WorkUnit, plan_zoo
from zoolens.zoo.presets import BENCH
from zoolens.zoo.worker import run_unit


def time_tiny(jobs: int) -> None:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        zoo = generate_zoo("tiny", out, seed=0, jobs=jobs, progress=False)
        dt = time.perf_counter() - t0
    m = zoo.manifest
    print(f"tiny: {len(zoo)} models, {m['task'].nunique()} tasks, "
          f"{m['family'].nunique()} families in {dt:.1f}s with jobs={jobs} "
          f"({len(zoo) / dt:.1f} models/s)")  # fmt: skip


def _sample(units: list[WorkUnit], fraction: float, at_least: int = 1) -> list[WorkUnit]:
    k = min(len(units), max(at_least, round(fraction * len(units))))
    picks = random.Random(0).sample(range(len(units)), k)
    return [units[i] for i in sorted(picks)]


def estimate_bench(fraction: float) -> None:
    units = plan_zoo(BENCH, 0)
    groups = {
        "base": [u for u in units if u.kind == "model" and u.phase == 0],
        "inr": [u for u in units if u.kind == "inr"],
        "finetune": [u for u in units if u.phase == 1],
    }
    torch.set_num_threads(1)
    total = 0.0
    with tempfile.TemporaryDirectory() as out:
        _prepare_dir(out, BENCH, 0)
        t0 = time.perf_counter()
        for u in units:  # parents of the sampled fine-tunes, not timed
            if u.kind == "model" and u.phase == 0 and u.specs[0].id in _parents(groups, fraction):
                run_unit(u, out, 0)
        print(f"(parents of sampled fine-tunes: {time.perf_counter() - t0:.1f}s, not counted)")
        for kind, group in groups.items():
            sample = _sample(group, fraction, at_least=4 if kind == "inr" else 1)
            times = _time_units(sample, out)
            scaled = sum(times) * len(group) / len(sample)
            total += scaled
            n_models = sum(len(u.specs) for u in group)
            print(f"bench {kind}: {len(sample)}/{len(group)} units timed, mean "
                  f"{statistics.mean(times):.2f}s/unit → {scaled / 60:.1f} min for {n_models} "
                  "models (1 core)")  # fmt: skip
    print(f"bench estimate: {total / 60:.1f} min on 1 core, ~{total / 120:.1f} min with --jobs 2")


def _parents(groups: dict[str, list[WorkUnit]], fraction: float) -> set[str]:
    return {u.specs[0].parent for u in _sample(groups["finetune"], fraction)}


def _time_units(sample: list[WorkUnit], out: str) -> list[float]:
    times = []
    by_family: dict[str, list[float]] = collections.defaultdict(list)
    for u in sample:
        t0 = time.perf_counter()
        run_unit(u, out, 0)
        times.append(time.perf_counter() - t0)
        by_family[u.specs[0].family].append(times[-1])
    print("  " + ", ".join(f"{f}: {statistics.mean(t):.2f}s×{len(t)}"
                           for f, t in sorted(by_family.items())))  # fmt: skip
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--skip-tiny", action="store_true")
    parser.add_argument("--bench-fraction", type=float, default=0.0)
    args = parser.parse_args()
    if not args.skip_tiny:
        time_tiny(args.jobs)
    if args.bench_fraction > 0:
        estimate_bench(args.bench_fraction)


if __name__ == "__main__":
    main()
