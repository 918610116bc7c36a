"""``zoolens quickstart``: the main job of ``make demo``."""

from __future__ import annotations

import typer

from zoolens.cli.app import app


@app.command()
def quickstart(
    workdir: str = typer.Option("zoolens-quickstart", help="where the zoo and index go"),
    encoder: str = typer.Option("default", help="encoder name or directory"),
    seed: int = typer.Option(0, help="zoo seed"),
) -> None:
    """Generate the tiny zoo, index it, and show what weight-space search does."""
    from zoolens.quickstart import run_quickstart

    run_quickstart(workdir, encoder, seed)
