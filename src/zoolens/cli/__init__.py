"""The ``zoolens`` command: parse arguments, call the library, print. No logic of its own."""

from __future__ import annotations

# Each module registers its commands on `app` when imported.
from zoolens.cli import commands as _commands  # noqa: F401
from zoolens.cli.app import app, run


def main() -> None:
    run()


__all__ = ["app", "main"]
