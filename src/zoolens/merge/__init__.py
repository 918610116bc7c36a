"""Alignment and merging of nets through their exact symmetries (no per-architecture specs)."""

from zoolens.merge.align import align
from zoolens.merge.compat import check_same_architecture
from zoolens.merge.merge import METHODS, interpolate, merge, reset_batchnorm
from zoolens.merge.repair import repair

__all__ = [
    "METHODS",
    "align",
    "check_same_architecture",
    "interpolate",
    "merge",
    "repair",
    "reset_batchnorm",
]
