"""The Typer application and the error boundary of the ``zoolens`` command."""

from __future__ import annotations

import logging
import sys

import typer

from zoolens.errors import ZoolensError

app = typer.Typer(
    name="zoolens",
    help="Find, compare and characterise trained neural networks by their weights.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Find, compare and characterise trained neural networks by their weights."""


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    typer.echo(f"zoolens: error: {message}", err=True)
    return typer.Exit(code)


def run() -> None:
    """Entry point: run the app; a zoolens error becomes one stderr line and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="zoolens: %(levelname)s: %(message)s")
    try:
        app(standalone_mode=False)
    except ZoolensError as e:
        typer.echo(f"zoolens: error: {e}", err=True)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("zoolens: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("zoolens: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # usage errors (typer's vendored click) and the like
        from typer._click import ClickException

        if isinstance(e, ClickException):
            e.show()
            sys.exit(e.exit_code or 2)
        raise
