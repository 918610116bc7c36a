"""Weight-space symmetries: exact actions, canonical forms, and (apart) inexact augmentations."""

from zoolens.symmetry.actions import (
    Segment,
    apply_scale,
    permute_spaces,
    random_exact_action,
    random_permutations,
    scale_segments,
)
from zoolens.symmetry.augment import drop_connect, neuron_dropout, weight_noise
from zoolens.symmetry.canonical import canonicalize
from zoolens.symmetry.spaces import PERM_LINKS, SCALE_LINKS, Space, build_spaces, free_spaces

__all__ = [
    "PERM_LINKS",
    "SCALE_LINKS",
    "Segment",
    "Space",
    "apply_scale",
    "build_spaces",
    "canonicalize",
    "drop_connect",
    "free_spaces",
    "neuron_dropout",
    "permute_spaces",
    "random_exact_action",
    "random_permutations",
    "scale_segments",
    "weight_noise",
]
