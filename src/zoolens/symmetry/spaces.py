"""Which values of a `Net` share units: permutation spaces and scale segments.

A *space* is a set of values whose axis 1 indexes the same units, so one permutation
(or one per-unit scale) acts on all of them at once. Ops that map unit i to unit i
link their input and output into one space; dense ops start a new one; ``flatten``
makes a *derived* space whose units are blocks of its parent's (each channel's
spatial positions move together).

Attention (``sdpa``) keeps its q, k, v and output spaces apart and marks them ``tied``:
they admit only the structured permutations of `zoolens.symmetry.attention`. For scalings
its output is derived from v (it is linear in v; with grouped-query attention each v unit
feeds one output unit per query head of its group).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from zoolens.ir import Net, Op, ValueInfo
from zoolens.ir.ops_rnn import LAYOUT_KINDS, is_depthwise, is_grouped
from zoolens.symmetry import _composite

#: Ops whose output units are their input units, for permutations ("depthwise": a
#: depthwise conv, whose output channel i reads input channel i only).
PERM_LINKS = frozenset(
    {"act", "batchnorm", "layernorm", "dropout", "scale", "maxpool", "avgpool", "gap", "add"}
    | {"pad"}
    | {"rmsnorm", "mul", "channel_scale", "posembed", "prepend", "select", "tokens"}
    | {"depthwise"}
)
#: Ops that carry a per-unit scale from input to output (linear/homogeneous per unit);
#: ``sdpa`` from its v input only (see `build_spaces`).
SCALE_LINKS = frozenset(
    {"act", "dropout", "scale", "maxpool", "avgpool", "gap", "add"}
    | {"pad"}
    | {"channel_scale", "select", "tokens", "sdpa"}
)
#: Ops that write units with their own per-unit parameters (they can absorb a scale;
#: lstm/gru a sign only, `zoolens.symmetry._rnn`).
SCALE_PRODUCERS = frozenset(
    {"linear", "conv1d", "conv2d", "batchnorm", "layernorm", "rmsnorm", "embedding"}
    | {"lstm", "gru"}
)


@dataclass
class Space:
    """Units shared by `values`; `parent`/`block` set for a flattened (derived) space."""

    root: str
    size: int
    values: list[str] = field(default_factory=list)
    parent: str | None = None
    block: int = 1
    fixed: bool = False
    unit_map: torch.Tensor | None = None  # derived: parent unit of each unit (else block)
    tied: str | None = None  # the sdpa op whose structure alone may permute it
    parts: _composite.Parts | None = None  # a concat's units: its inputs' spaces, in order


def _find(uf: dict[str, str], v: str) -> str:
    while uf[v] != v:
        uf[v] = uf[uf[v]]
        v = uf[v]
    return v


def build_spaces(
    net: Net, links: frozenset[str], infos: dict[str, ValueInfo] | None = None
) -> dict[str, Space]:
    """Group values into spaces: ops of kind in `links` put input(s) and output together.

    Returns:
        root name → `Space`; every value appears in exactly one space's ``values``.
        Spaces holding the network input or output, or read or written by a ``reshape``,
        a split/transpose or a grouped (not depthwise) conv, are ``fixed`` (never
        permuted). A concat output's space has ``parts`` (`zoolens.symmetry._composite`).
    """
    infos = infos or net.value_infos()
    uf = {v: v for v in infos}
    derived: dict[str, tuple[str, int | torch.Tensor]] = {}
    for op in net.ops:
        if op.kind == "sdpa":
            if op.kind in links:
                derived[op.output] = (op.inputs[2], _gqa_unit_map(op, infos[op.output].units))
        elif op.kind in links or ("depthwise" in links and is_depthwise(op)):
            # a padding-aware posembed's second input is the token ids: they share no units
            for v in op.inputs[:1] if op.kind == "posembed" else op.inputs:
                uf[_find(uf, v)] = _find(uf, op.output)
        elif op.kind == "flatten":
            derived[op.output] = (op.inputs[0], infos[op.inputs[0]].spatial_size)
    for outs in _tied_embeddings(net):  # one table read twice (BART's encoder and decoder)
        for v in outs[1:]:
            uf[_find(uf, v)] = _find(uf, outs[0])
    spaces: dict[str, Space] = {}
    for v in infos:
        r = _find(uf, v)
        spaces.setdefault(r, Space(r, infos[v].units)).values.append(v)
    for v, (src, how) in derived.items():
        sp = spaces[_find(uf, v)]
        sp.parent = _find(uf, src)
        if isinstance(how, int):
            sp.block = how
        else:
            sp.unit_map = how
    _tie_attention(net, spaces, uf)
    reshaped = [v for op in net.ops if op.kind == "reshape" for v in (*op.inputs, op.output)]
    reshaped += [
        v
        for op in net.ops
        if (op.kind in LAYOUT_KINDS and op.kind != "concat") or is_grouped(op)
        for v in (*op.inputs, op.output)
    ]
    for v in (net.input, net.output, *net.extra_inputs, *reshaped):
        spaces[_find(uf, v)].fixed = True
    _composite.attach(net, spaces, lambda v: _find(uf, v))
    _propagate_fixed(spaces)
    while _composite.propagate_fixed(spaces):
        _propagate_fixed(spaces)
    return spaces


def _tied_embeddings(net: Net) -> list[list[str]]:
    """Outputs of the ``embedding`` ops that read one tied table (``meta["tied"]``): their
    units are the table's rows, so one permutation must act on them all."""
    kinds = {op.name: op for op in net.ops}
    groups = []
    for entries in (net.meta.get("tied") or {}).values():
        ops = [kinds.get(str(e).rsplit(".", 1)[0]) for e in entries]
        groups.append([op.output for op in ops if op is not None and op.kind == "embedding"])
    return [g for g in groups if len(g) > 1]


def _gqa_unit_map(op: Op, n_out: int) -> torch.Tensor:
    """v unit read by each output unit of attention `op`: ``(n_out,)``."""
    h = int(op.attrs["heads"])
    r = h // int(op.attrs.get("kv_heads") or h)
    hd = n_out // h
    head = torch.arange(h).repeat_interleave(hd)  # (n_out,)
    return (head // r) * hd + torch.arange(hd).repeat(h)


def _tie_attention(net: Net, spaces: dict[str, Space], uf: dict[str, str]) -> None:
    """Mark the q, k, v, output spaces of each ``sdpa`` op as tied to it; a space tied
    twice (shared between two roles or two attention ops) is fixed instead."""
    for op in net.ops:
        if op.kind != "sdpa":
            continue
        for v in (*op.inputs[:3], op.output):  # not the attention mask (B, T)
            sp = spaces[_find(uf, v)]
            if sp.parent is not None:  # scale spaces: the output is derived from v
                continue
            if sp.tied is not None:
                sp.fixed = True
            sp.tied = op.name


def _propagate_fixed(spaces: dict[str, Space]) -> None:
    """A derived space moves with its parent: fix both when either is fixed."""
    changed = True
    while changed:
        changed = False
        for sp in spaces.values():
            if sp.parent is None:
                continue
            parent = spaces[sp.parent]
            if sp.fixed != parent.fixed:
                sp.fixed = parent.fixed = True
                changed = True


def space_of(spaces: dict[str, Space]) -> dict[str, str]:
    """value name → root of its space."""
    return {v: sp.root for sp in spaces.values() for v in sp.values}


def free_spaces(spaces: dict[str, Space]) -> list[Space]:
    """Spaces that may be permuted independently (hidden, not derived, not tied to an
    attention op's structure, not a concat's), in stable order."""
    return [
        sp
        for sp in spaces.values()
        if not sp.fixed and sp.parent is None and sp.tied is None and not sp.parts
    ]


def op_order(net: Net) -> dict[str, int]:
    """Op name → position (the topological order the net stores)."""
    return {op.name: i for i, op in enumerate(net.ops)}


def producers(net: Net, sp: Space) -> list[Op]:
    vals = set(sp.values)
    return [op for op in net.ops if op.output in vals and op.kind in SCALE_PRODUCERS]


def readers(net: Net, sp: Space) -> list[Op]:
    vals = set(sp.values)
    return [op for op in net.ops if any(v in vals for v in op.inputs)]
