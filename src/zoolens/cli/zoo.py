"""``zoolens zoo``: generate a model zoo from a preset, or summarise one."""

from __future__ import annotations

import time

import typer

from zoolens.cli.app import app, fail

zoo_app = typer.Typer(
    help="Model zoos: generate one on offline data, or inspect one.", no_args_is_help=True
)
app.add_typer(zoo_app, name="zoo")


@zoo_app.command("generate")
def generate(
    preset: str = typer.Option("tiny", "--preset", help="Preset name (tiny, bench, ...)."),
    out: str = typer.Option(..., "--out", help="Zoo directory (resumed if it exists)."),
    seed: int = typer.Option(0, "--seed", help="Zoo seed: same seed, same weights."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Train the zoo of PRESET into OUT (skips models already there)."""
    from zoolens.zoo import generate_zoo

    t0 = time.perf_counter()
    zoo = generate_zoo(preset, out, seed=seed, jobs=jobs, progress=progress)
    typer.echo(f"{out}: {len(zoo)} models ({time.perf_counter() - t0:.1f}s)")


@zoo_app.command("procedural")
def procedural(
    out: str = typer.Option(..., "--out", help="Shard directory (a zoo)."),
    seed: int = typer.Option(..., "--seed", help="Shard seed: every seed draws new tasks."),
    tasks: int = typer.Option(60, "--tasks", min=1, help="Tasks drawn."),
    per_task: int = typer.Option(6, "--per-task", min=2, help="Networks trained per task."),
    split: str = typer.Option("train", "--split", help="train | val | test: the shard's split."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes."),
) -> None:
    """Draw TASKS procedural tasks (features, images, signals, tokens, INR shape types) and
    train PER_TASK networks of random families on each: one shard of the training stream."""
    from zoolens.zoo.procedural import generate_shard

    if split not in ("train", "val", "test"):
        raise fail(f"--split {split!r}: expected train, val or test")
    t0 = time.perf_counter()
    n = generate_shard(out, seed, tasks, per_task=per_task, workers=jobs, split=split)
    typer.echo(f"{out}: {n} models of {tasks} tasks ({time.perf_counter() - t0:.1f}s)")


@zoo_app.command("info")
def info(path: str = typer.Argument(..., help="Zoo directory.")) -> None:
    """Print the number of models by kind, task and family."""
    from zoolens.zoo import Zoo

    zoo = Zoo.open(path)
    preset = zoo.info.get("preset", {}).get("name", "-")
    typer.echo(f"{path}: {len(zoo)} models (preset {preset}, seed {zoo.info.get('seed', '-')})")
    typer.echo(zoo.counts().to_string(index=False))
    by_family = zoo.manifest.groupby("family").size()
    typer.echo("families: " + ", ".join(f"{k}={v}" for k, v in by_family.items()))
