"""Model zoos: a directory of nets plus a Parquet manifest; a generator; importers.

    from zoolens.zoo import Zoo, generate_zoo, evaluate

    zoo = generate_zoo("tiny", "zoos/tiny", seed=0)      # or Zoo.open("zoos/tiny")
    for net, row in zoo:
        assert abs(evaluate(net, row) - row["accuracy"]) < 1e-6   # classification rows

Importers for published zoo layouts live in `zoolens.zoo.importers`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "COLUMNS",
    "PRESETS",
    "Zoo",
    "ZooPreset",
    "evaluate",
    "evaluate_metrics",
    "generate_zoo",
    "get_preset",
    "register_preset",
]

_EXPORTS = {
    "COLUMNS": "zoolens.zoo.manifest",
    "PRESETS": "zoolens.zoo.presets",
    "ZooPreset": "zoolens.zoo.presets",
    "get_preset": "zoolens.zoo.presets",
    "register_preset": "zoolens.zoo.presets",
    "Zoo": "zoolens.zoo.zoo",
    "evaluate": "zoolens.zoo.evaluation",
    "evaluate_metrics": "zoolens.zoo.evaluation",
    "generate_zoo": "zoolens.zoo.generate",
}


def __getattr__(name: str) -> Any:
    # Lazy re-exports: importing zoolens.zoo loads neither torch nor the data sets.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'zoolens.zoo' has no attribute {name!r}")
