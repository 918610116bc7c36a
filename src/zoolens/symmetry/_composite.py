"""Composite spaces: the units of a ``concat`` are the disjoint union of its inputs' units.

Private to `zoolens.symmetry.spaces`. A concat's output space is not permuted on its own:
permuting an input space permutes the corresponding block of it (and of every value linked
to it: a norm or activation after the concat, a residual added to it). A space that two
concats define differently, or that is also a flattened view, is fixed, and a fixed
composite fixes its parts (permuting a part alone would change what the concat reads).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from zoolens.ir import Net

if TYPE_CHECKING:
    from zoolens.symmetry.spaces import Space

#: (part space root, offset, size) of each block of a composite space, in order.
Parts = list[tuple[str, int, int]]


def attach(net: Net, spaces: dict[str, Space], root: Callable[[str], str]) -> None:
    """Set ``parts`` of every concat output's space (`root`: value → its space's root)."""
    for op in net.ops:
        if op.kind != "concat":
            continue
        parts: Parts = []
        offset = 0
        for v in op.inputs:
            size = spaces[root(v)].size
            parts.append((root(v), offset, size))
            offset += size
        sp = spaces[root(op.output)]
        if (
            sp.parts is None
            and sp.parent is None
            and root(op.output) not in dict.fromkeys(p for p, _, _ in parts)
        ):
            sp.parts = parts
        elif sp.parts != parts:  # defined twice, or also a flattened view: keep it still
            sp.fixed = True
            if sp.parts is not None:
                for p, _, _ in sp.parts:
                    spaces[p].fixed = True
            for p, _, _ in parts:
                spaces[p].fixed = True


def propagate_fixed(spaces: dict[str, Space]) -> bool:
    """A fixed composite fixes its parts; returns whether anything changed."""
    changed = False
    for sp in spaces.values():
        if sp.fixed and sp.parts:
            for p, _, _ in sp.parts:
                if not spaces[p].fixed:
                    spaces[p].fixed = changed = True
    return changed


def full_perm(spaces: dict[str, Space], root: str, perms: dict[str, torch.Tensor]) -> torch.Tensor:
    """The permutation of composite space `root` implied by its parts' permutations."""
    sp = spaces[root]
    assert sp.parts is not None
    blocks = []
    for part, offset, size in sp.parts:
        p = perms.get(part)
        if p is None and spaces[part].parts:
            p = full_perm(spaces, part, perms)
        blocks.append((p if p is not None else torch.arange(size)) + offset)
    return torch.cat(blocks)


def composite_perms(
    spaces: dict[str, Space], perms: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Permutations of the composite spaces that any of `perms` moves."""
    out: dict[str, torch.Tensor] = {}
    for sp in spaces.values():
        if sp.parts and _touches(spaces, sp.root, perms):
            out[sp.root] = full_perm(spaces, sp.root, perms)
    return out


def _touches(spaces: dict[str, Space], root: str, perms: dict[str, torch.Tensor]) -> bool:
    parts = spaces[root].parts or []
    return any(p in perms or (spaces[p].parts and _touches(spaces, p, perms)) for p, _, _ in parts)
