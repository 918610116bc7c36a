"""Imports every command module so their commands register on the app."""

from __future__ import annotations

import importlib
import importlib.util

_MODULES = ["inspect", "embed", "zoo", "index", "heads", "train", "quickstart", "benchmark"]
_MODULES += ["merge"]  # align, merge
_MODULES += ["synthesize"]  # fit-decoder, synthesize
_MODULES += ["serve"]  # zoolens serve (issue 26)

for _name in _MODULES:
    if importlib.util.find_spec(f"zoolens.cli.{_name}") is not None:
        importlib.import_module(f"zoolens.cli.{_name}")
