"""`load_encoder`: by name (the shipped weights or a fresh fixed-seed encoder) or from a dir."""

from __future__ import annotations

import importlib
import os
from importlib import resources

from zoolens.errors import LoadError
from zoolens.nn.base import Encoder, encoder_class

#: Modules that register encoders; imported on first use, not at import time.
_ENCODER_MODULES = (
    "zoolens.nn.neural_graph_encoder",
    "zoolens.nn.layerwise",
    "zoolens.nn.baselines",
)
#: Shipped trained weights, by name, under src/zoolens/weights/.
SHIPPED = {"default": "neural-graph", "neural-graph": "neural-graph", "layerwise": "layerwise"}


def _register_all() -> None:
    for mod in _ENCODER_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def shipped_dir(name: str) -> str | None:
    """Directory of the shipped weights for `name`, if the package has them."""
    d = resources.files("zoolens") / "weights" / SHIPPED.get(name, name)
    path = str(d)
    return path if os.path.exists(os.path.join(path, "config.json")) else None


def load_encoder(name_or_dir: str = "default") -> Encoder:
    """An encoder: a saved directory, shipped trained weights, or a fresh one by class name.

    ``"default"`` is the shipped trained `NeuralGraphEncoder`; without shipped weights it
    is a fixed-seed untrained one (deterministic, still exactly invariant).
    """
    _register_all()
    if os.path.isdir(name_or_dir):
        return Encoder.load(name_or_dir)
    shipped = shipped_dir(name_or_dir)
    if shipped is not None:
        return Encoder.load(shipped)
    if name_or_dir in SHIPPED or name_or_dir not in ("",):
        try:
            return encoder_class(SHIPPED.get(name_or_dir, name_or_dir))()
        except LoadError:
            raise LoadError(
                f"{name_or_dir}: neither an encoder directory nor a known encoder name"
            ) from None
    raise LoadError("empty encoder name")
