"""``zoolens benchmark``: every encoder, every metric, held-out models, one report."""

from __future__ import annotations

import logging
import shlex
import sys

import typer

from zoolens.cli.app import app

_DEFAULT_ENCODERS = (
    "neural-graph,layerwise,flat-transformer,flat-pca,weight-stats,raw-weights,probe,metadata"
)


def _split(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _pairs(text: str, flag: str) -> dict[str, str]:
    """``name=spec,name=spec`` → {name: spec}."""
    out = {}
    for item in _split(text):
        name, sep, spec = item.partition("=")
        if not sep or not name.strip() or not spec.strip():
            from zoolens.cli.app import fail

            raise fail(f"{flag}: expected NAME=RUN_DIR, got {item!r}")
        out[name.strip()] = spec.strip()
    return out


@app.command()
def benchmark(
    zoo: str = typer.Option(..., "--zoo", help="zoo directory (manifest.parquet + models/)"),
    out: str = typer.Option(..., "--out", help="report directory: report.md, results.json, PNGs"),
    encoders: str = typer.Option(_DEFAULT_ENCODERS, help="comma-separated encoder names"),
    seeds: int = typer.Option(3, help="seeds; every number is mean ± std over them"),
    epochs: int = typer.Option(10, help="maximum epochs of each training run"),
    max_minutes: float = typer.Option(
        2.0,
        "--max-minutes",
        help="training budget per trainable encoder, split over its runs (seeds × 2)",
    ),
    max_train_models: int = typer.Option(
        0, help="train on at most this many train-split models (0: all)"
    ),
    max_eval_models: int = typer.Option(
        0, help="measure at most this many held-out models (0: all)"
    ),
    quick: bool = typer.Option(False, help="reduced run: 1 seed, 2 epochs, fewer models"),
    skip: str = typer.Option("", help="sections to skip: transfer,generalisation,figures"),
    pretrained: str = typer.Option(
        "",
        help="NAME=RUN,...: measure these trained encoders as they are (a `zoolens train` "
        "run, a saved encoder dir, or 'default' for the shipped one) instead of training; "
        "NAME=RUN_A+RUN_B: seed i measures run i mod 2 (training variance in the spread)",
    ),
    pretrained_heldout: str = typer.Option(
        "",
        help="NAME=RUN,...: their counterparts trained without the held-out tasks (generalisation)",
    ),
    threads: int = typer.Option(
        1, help="torch/BLAS threads (0: library default); 1 is fastest on a busy machine"
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log progress"),
) -> None:
    """Train what needs training on the zoo's train split, measure every encoder on its
    held-out models, and write report.md, results.json and figures to OUT."""
    from zoolens.bench.data import PlanSettings
    from zoolens.bench.report import HEADLINE, metric_table
    from zoolens.bench.runner import BenchmarkConfig, run_benchmark

    if verbose:
        logging.getLogger("zoolens").setLevel(logging.INFO)
    config = BenchmarkConfig(
        zoo=zoo,
        out=out,
        encoders=_split(encoders),
        seeds=seeds,
        epochs=epochs,
        max_minutes=max_minutes,
        quick=quick,
        skip=_split(skip),
        command=shlex.join(["zoolens", *sys.argv[1:]]) if sys.argv[1:2] == ["benchmark"] else "",
        plan=PlanSettings(max_eval_models=max_eval_models or None),
        max_train_models=max_train_models or None,
        pretrained=_pairs(pretrained, "--pretrained"),
        pretrained_heldout=_pairs(pretrained_heldout, "--pretrained-heldout"),
        threads=threads or None,
    )
    try:
        results = run_benchmark(config, progress=sys.stderr.isatty())
    except ValueError as e:
        from zoolens.cli.app import fail

        raise fail(str(e)) from None
    typer.echo(metric_table(results["encoders"], HEADLINE[:6]))
    for name, message in results["failures"].items():
        typer.echo(f"failed: {name}: {message}", err=True)
    typer.echo(f"wrote {out}/report.md and {out}/results.json in {results['seconds'] / 60:.1f} min")
