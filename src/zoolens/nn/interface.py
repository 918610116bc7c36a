"""The interface part of an embedding: the shape of the input a net reads and the number
of outputs it gives.

Two nets with different interfaces cannot compute the same function, and nets trained on
one dataset share its interface. The learned part sees the input and output units, but
an encoder trained on a zoo does not learn to tell apart input sizes it never met; this
part states the interface outright. Each distinct interface gets a fixed random unit
vector (Gaussian, seeded by a hash of its signature, so the same in every process and on
every machine): two nets' interface cosine is 1 when their interfaces match and about
``N(0, 1 / dim)`` otherwise. Weight symmetries change neither the shape nor the count,
so the part is exactly invariant to them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def signature(input_shape: Sequence[int], n_outputs: int) -> str:
    """``"1x8x8->10"``: the input shape (without the batch axis) and the output count."""
    return "x".join(str(int(d)) for d in input_shape) + f"->{int(n_outputs)}"


def interface_vectors(signatures: Sequence[str], dim: int) -> np.ndarray:
    """``(len(signatures), dim)`` float64 unit rows, one fixed vector per distinct
    signature."""
    if dim < 1:
        raise ValueError(f"interface dim {dim}; expected >= 1")
    table = {s: _vector(s, dim) for s in dict.fromkeys(signatures)}
    if not table:
        return np.zeros((0, dim))
    return np.stack([table[s] for s in signatures])


def _vector(sig: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(sig.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim)
    return v / np.linalg.norm(v)
