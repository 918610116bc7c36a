"""Alignment and merging of nets through their exact symmetries (no per-architecture specs),
and weight synthesis by a decoder from embeddings to weights."""

from zoolens.merge.align import align
from zoolens.merge.compat import check_same_architecture
from zoolens.merge.merge import METHODS, interpolate, merge, reset_batchnorm
from zoolens.merge.repair import repair
from zoolens.merge.synthesis import Decoder, DecoderConfig, fit_decoder, synthesize

__all__ = [
    "METHODS",
    "Decoder",
    "DecoderConfig",
    "align",
    "check_same_architecture",
    "fit_decoder",
    "interpolate",
    "merge",
    "repair",
    "reset_batchnorm",
    "synthesize",
]
