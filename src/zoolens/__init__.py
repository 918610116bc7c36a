"""zoolens: find, compare and characterise trained neural networks by their weights."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Net", "TensorSet", "__version__", "load_encoder", "load_net"]


def __getattr__(name: str) -> Any:
    # Lazy re-exports: importing zoolens does no work and loads no torch until asked.
    if name in ("Net", "TensorSet", "load_net"):
        from zoolens import ir

        return getattr(ir, name)
    if name == "load_encoder":
        from zoolens.nn import load_encoder

        return load_encoder
    raise AttributeError(f"module 'zoolens' has no attribute {name!r}")
