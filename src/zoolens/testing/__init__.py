"""Testing helpers shipped with zoolens, so users can check their own encoders."""

from zoolens.testing.asserts import (
    assert_invariant,
    assert_same_function,
    cosine,
    max_rel_diff,
    random_input,
    random_net,
    reweighted,
)
from zoolens.testing.models import FAMILIES, random_module
from zoolens.testing.seq_nets import SEQ_FAMILIES, seq_input, seq_net

__all__ = [
    "FAMILIES",
    "SEQ_FAMILIES",
    "assert_invariant",
    "assert_same_function",
    "cosine",
    "max_rel_diff",
    "random_input",
    "random_module",
    "random_net",
    "reweighted",
    "seq_input",
    "seq_net",
]
