"""Exact symmetry actions on a `Net`: hidden-unit permutations and per-unit scalings.

Every function here returns a new net that computes the same function as its input
(up to float rounding); tests in tests/symmetry prove it for every family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from zoolens.ir import DENSE_KINDS, Net, ValueInfo
from zoolens.ir.ops_rnn import RNN_KINDS, expand_gates, gate_count, is_depthwise
from zoolens.symmetry import _composite, _rnn
from zoolens.symmetry.attention import attention_permutations
from zoolens.symmetry.spaces import (
    PERM_LINKS,
    SCALE_LINKS,
    Space,
    build_spaces,
    free_spaces,
    producers,
    readers,
    space_of,
)

Group = Literal["positive", "sign", "nonzero"]
_ACT_GROUP: dict[str, Group | None] = {
    "identity": "nonzero",
    "relu": "positive",
    "leaky_relu": "positive",
    "prelu": "positive",
    "tanh": "sign",
    "sin": "sign",
}


def _meet(groups: set[str]) -> Group | None:
    """The largest group contained in all of `groups` (positive ∩ sign = {1}: none)."""
    if "positive" in groups:
        return None if "sign" in groups else "positive"
    return "sign" if "sign" in groups else "nonzero"


@dataclass
class Segment:
    """A set of values sharing one per-unit scale, and the scale group it admits."""

    space: Space
    family: list[Space]  # the space and the spaces flattened from it
    group: Group | None


def _expand(v: torch.Tensor, space: Space) -> torch.Tensor:
    """Per-unit values of a derived `space` from its parent's (itself: unchanged)."""
    if space.unit_map is not None:
        return v[space.unit_map]
    return v.repeat_interleave(space.block) if space.block > 1 else v


def _expand_perm(p: torch.Tensor, block: int) -> torch.Tensor:
    if block == 1:
        return p
    return (p[:, None] * block + torch.arange(block)[None, :]).reshape(-1)  # (n * block,)


# -- permutations ------------------------------------------------------------------------
def permute_spaces(
    net: Net, perms: dict[str, torch.Tensor], spaces: dict[str, Space] | None = None
) -> Net:
    """Permute the units of the given spaces and every tensor axis that indexes them.

    Args:
        net: the network.
        perms: space root → permutation (``new[i] = old[perm[i]]``); spaces of flattened
            values follow their parent, and concat outputs their inputs, automatically.
        spaces: `build_spaces(net, PERM_LINKS)`, when already computed.
    """
    spaces = spaces or build_spaces(net, PERM_LINKS)
    full = dict(perms)
    full.update(_composite.composite_perms(spaces, perms))  # concats follow their inputs
    for sp in spaces.values():
        if sp.parent is not None and sp.parent in full:
            full[sp.root] = _expand_perm(full[sp.parent], sp.block)
    where = space_of(spaces)
    out = net.clone()
    for op in out.ops:
        for role, t in op.params.items():
            for axis, kind in enumerate(op.param_roles(role)):
                value = op.inputs[0] if kind == "in" else op.output
                p = full.get(where[value])
                if p is not None and kind == "gates":  # hidden units in gate blocks
                    p = expand_gates(p, gate_count(op))
                if p is not None:
                    t = t.index_select(axis, p.to(t.device))
            op.params[role] = t
    return out


def random_permutations(net: Net, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A uniformly random permutation for every free hidden space, and a random exact
    one of the spaces tied to each attention op (`zoolens.symmetry.attention`)."""
    spaces = build_spaces(net, PERM_LINKS)
    perms = {sp.root: torch.randperm(sp.size, generator=generator) for sp in free_spaces(spaces)}
    return perms | attention_permutations(net, spaces, generator)


# -- scalings ----------------------------------------------------------------------------
def scale_segments(net: Net, infos: dict[str, ValueInfo] | None = None) -> list[Segment]:
    """Every scale segment with the group of per-unit scalings it admits exactly
    (`infos`: `net.value_infos()`, when already computed)."""
    spaces = build_spaces(net, SCALE_LINKS, infos)
    children: dict[str, list[Space]] = {}
    for sp in spaces.values():
        if sp.parent is not None:
            children.setdefault(sp.parent, []).append(sp)
    segs = []
    for sp in spaces.values():
        if sp.parent is not None:
            continue
        family = [sp, *children.get(sp.root, [])]
        segs.append(Segment(sp, family, _segment_group(net, sp, family)))
    return segs


def _segment_group(net: Net, sp: Space, family: list[Space]) -> Group | None:
    if any(s.fixed for s in family) or not producers(net, sp) or sp.parts:
        return None
    groups: set[str] = {"nonzero"}
    vals = {v for s in family for v in s.values}
    for op in net.ops:
        if op.output in vals and op.kind in RNN_KINDS:
            groups.add("sign")  # h = o * tanh(c): odd in the cell gate only
        elif op.output in vals and op.kind == "act":
            g = _ACT_GROUP.get(op.fn)
            if g is None:
                return None
            groups.add(g)
        elif op.output in vals and op.kind == "maxpool":
            groups.add("positive")
        elif op.kind == "sdpa" and any(v in vals for v in op.inputs[:2]):
            return None  # q and k: the scores are not linear in either alone
        elif any(v in vals for v in op.inputs) and op.kind not in (
            *DENSE_KINDS,
            *RNN_KINDS,
            "batchnorm",
            "flatten",
            *SCALE_LINKS,
        ):
            return None  # e.g. LayerNorm reads the units jointly
    return _meet(groups)


def apply_scale(net: Net, seg: Segment, s: torch.Tensor) -> None:
    """In place: units of `seg` scaled by `s`; readers compensate, so the function holds."""
    for op in producers(net, seg.space):
        if op.kind in RNN_KINDS:
            _rnn.flip_outputs(op, s)
            continue
        for role in ("weight", "bias"):
            if role in op.params:
                t = op.params[role]
                op.params[role] = t * s.to(t.dtype).reshape(-1, *[1] * (t.dim() - 1))
    for fam in seg.family:
        se = _expand(s, fam)
        for op in readers(net, fam):
            if op.kind in RNN_KINDS:
                _rnn.scale_inputs(op, se)
            elif is_depthwise(op):  # input channel i is read by output channel i only
                w = op.params["weight"]
                op.params["weight"] = w / se.to(w.dtype).reshape(-1, *[1] * (w.dim() - 1))
            elif op.kind in DENSE_KINDS:
                w = op.params["weight"]
                op.params["weight"] = w / se.to(w.dtype).reshape(1, -1, *[1] * (w.dim() - 2))
            elif op.kind == "batchnorm":
                p = op.params
                p["running_mean"] = p["running_mean"] * se.to(p["running_mean"].dtype)
                p["weight"] = p["weight"] / se.to(p["weight"].dtype)


def random_scale(seg: Segment, generator: torch.Generator, log_range: float = 1.0) -> torch.Tensor:
    """Random scale factors for `seg` from its group (log-uniform magnitude, random sign)."""
    n = seg.space.size
    mag = torch.exp((torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * log_range)
    sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0).to(torch.float64)
    if seg.group == "positive":
        return mag
    if seg.group == "sign":
        return sign
    return mag * sign


def random_exact_action(net: Net, generator: torch.Generator) -> Net:
    """A copy of `net` under a random composition of every exact action valid for it.

    Per-unit scalings (positive for ReLU-like units, ±1 for odd ones, any non-zero for
    identity units; BatchNorm absorbs its input's scale) then independent permutations
    of every hidden space. Reproducible from `generator`.
    """
    out = net.clone()
    for seg in scale_segments(out):
        if seg.group is not None:
            apply_scale(out, seg, random_scale(seg, generator))
    return permute_spaces(out, random_permutations(out, generator))
