"""`align`: permute (and rescale, where exact) a net's units to match a reference net.

Every permutation goes through the symmetry spaces of `zoolens.symmetry` (hidden units,
channels, residual streams with their norms, attention heads and their dims in the structure
`zoolens.symmetry.attention` allows; flattened values follow their parent), so
no architecture needs a hand-written spec, and the result computes the function of the
net it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from zoolens.errors import ZoolensError
from zoolens.ir import Net
from zoolens.ir.ops_rnn import expand_gates, gate_count
from zoolens.merge.activations import activations, as_inputs, unit_rows
from zoolens.merge.compat import check_same_architecture, with_names_of
from zoolens.merge.gauge import from_canonical, to_canonical
from zoolens.merge.heads import match_attention
from zoolens.symmetry import PERM_LINKS, Space, build_spaces, free_spaces, permute_spaces
from zoolens.symmetry.spaces import space_of

AlignMethod = Literal["weights", "activations"]
Perms = dict[str, torch.Tensor]


def align(
    ref: Net,
    model: Net,
    method: AlignMethod = "weights",
    data: torch.Tensor | np.ndarray | None = None,
    seed: int = 0,
    max_sweeps: int = 50,
) -> Net:
    """`model` with its units permuted, and rescaled where exact, to match `ref`.

    Permutations are searched in two gauges and the result closest to `ref`
    (`weight_distance`) is returned: (1) both nets in canonical gauge (unit-norm incoming
    weights where positive scaling is exact, positive sign where a flip is), the permuted
    model then moved into `ref`'s gauge so per-unit scales match too; (2) the nets as they
    are (plain Git Re-Basin). Weight matching runs from the identity and from the
    activation-matching permutations (coordinate descent has local optima); from the
    identity in gauge (2) it never moves `model` away from `ref`, so weight matching never does.

    Args:
        ref: the reference net.
        model: a net of the same architecture (names may differ).
        method: ``"weights"``: weight matching (Git Re-Basin): coordinate descent over the
            free spaces in random order, each step a linear assignment maximising
            ``<W_ref, P W_model>`` over every tensor axis indexing the space, until a sweep
            changes nothing. ``"activations"``: per space, the assignment maximising the
            correlation of the units' activations on `data`.
        data: inputs ``(B, *input_shape)`` for ``"activations"``; probe inputs when None.
        seed: the order of spaces in weight matching.
        max_sweeps: bound on the coordinate-descent sweeps.

    Returns:
        A net with `ref`'s names computing `model`'s function, closer to `ref` in weights.

    Raises:
        ArchitectureMismatchError: the nets differ in architecture (the message says where).
    """
    check_same_architecture(ref, model, ("REF", "MODEL"))
    model = with_names_of(model, ref)
    if method not in ("weights", "activations"):
        raise ZoolensError(f"align method {method!r}: expected 'weights' or 'activations'")
    spaces = build_spaces(ref, PERM_LINKS)
    cref, ref_scales = to_canonical(ref)
    cmodel, _ = to_canonical(model)
    by_acts = match_activations(cref, cmodel, spaces, as_inputs(ref, data))
    canon, plain = [by_acts], [by_acts]
    if method == "weights":
        starts: list[Perms | None] = [None, by_acts]
        canon = [match_weights(cref, cmodel, spaces, s, seed, max_sweeps) for s in starts]
        plain = [match_weights(ref, model, spaces, s, seed, max_sweeps) for s in starts]
    candidates = [from_canonical(permute_spaces(cmodel, p, spaces), ref_scales) for p in canon]
    candidates += [permute_spaces(model, p, spaces) for p in plain]
    return min(candidates, key=lambda net: weight_distance(ref, net))


def weight_distance(a: Net, b: Net) -> float:
    """Euclidean distance between the learned tensors of two nets of one architecture
    (BatchNorm running statistics left out)."""
    total = 0.0
    for oa, ob in zip(a.ops, b.ops, strict=True):
        for role, t in oa.params.items():
            if role not in ("running_mean", "running_var"):
                total += float(
                    (t.to(torch.float64) - ob.params[role].to(torch.float64)).square().sum()
                )
    return float(total**0.5)


def _assign(cost: torch.Tensor) -> torch.Tensor:
    """The permutation maximising ``sum_i cost[i, perm[i]]``."""
    _, cols = linear_sum_assignment(cost.numpy(), maximize=True)
    return torch.as_tensor(cols, dtype=torch.long)


def match_activations(ref: Net, model: Net, spaces: dict[str, Space], x: torch.Tensor) -> Perms:
    """Per free space, the assignment maximising the summed correlation of its values."""
    ea, eb = activations(ref, x), activations(model, x)
    perms: Perms = {}
    for sp in free_spaces(spaces):
        cost = sum(unit_rows(ea[v]) @ unit_rows(eb[v]).T for v in sp.values)  # (n, n)
        perms[sp.root] = _assign(torch.as_tensor(cost))
    return perms


@dataclass(frozen=True)
class _Axis:
    """Axis `axis` of tensor `role` of op number `op` indexes free space `root`
    (in blocks of `block` entries per unit when the value is flattened)."""

    op: int
    role: str
    axis: int
    root: str
    block: int
    gates: int = 1  # an RNN's gate-blocked axis: `gates` blocks of the space's units


def _tied_roots(spaces: dict[str, Space]) -> list[str]:
    """Spaces tied to an attention op (permuted only in its structure, `match_attention`)."""
    return sorted(
        sp.root for sp in spaces.values() if sp.tied and not sp.fixed and sp.parent is None
    )


def _free_axes(net: Net, spaces: dict[str, Space]) -> list[_Axis]:
    """Tensor axes indexing a free or an attention-tied space."""
    where = space_of(spaces)
    free = {sp.root for sp in free_spaces(spaces)} | set(_tied_roots(spaces))
    out = []
    for i, op in enumerate(net.ops):
        for role in op.params:
            for axis, kind in enumerate(op.param_roles(role)):
                sp = spaces[where[op.inputs[0] if kind == "in" else op.output]]
                root, block = (sp.parent, sp.block) if sp.parent is not None else (sp.root, 1)
                gates = gate_count(op) if kind == "gates" else 1
                if root in free:
                    out.append(_Axis(i, role, axis, root, block, gates))
    return out


def _expand(p: torch.Tensor, block: int) -> torch.Tensor:
    return (p[:, None] * block + torch.arange(block)[None, :]).reshape(-1)


def _permuted(t: torch.Tensor, axes: list[_Axis], perms: Perms, skip: int) -> torch.Tensor:
    """Tensor `t` with every listed axis but `skip` permuted by the current `perms`."""
    for ax in axes:
        if ax.axis != skip:
            p = _expand(perms[ax.root], ax.block)
            t = t.index_select(ax.axis, expand_gates(p, ax.gates) if ax.gates > 1 else p)
    return t


def _rows(t: torch.Tensor, ax: _Axis, n: int) -> torch.Tensor:
    """Tensor `t` as one row per unit of `ax`'s space ``(n, rest)`` (gate blocks side by side)."""
    t = t.movedim(ax.axis, 0)
    if ax.gates > 1:
        t = t.reshape(ax.gates, -1, *t.shape[1:]).movedim(0, 1)
    return t.reshape(n, -1)


def match_weights(
    ref: Net,
    model: Net,
    spaces: dict[str, Space],
    init: Perms | None = None,
    seed: int = 0,
    max_sweeps: int = 50,
) -> Perms:
    """Weight matching by coordinate descent over the free spaces (see `align`), from the
    permutations `init` (identities when None)."""
    axes = _free_axes(ref, spaces)
    by_tensor: dict[tuple[int, str], list[_Axis]] = {}
    for ax in axes:
        by_tensor.setdefault((ax.op, ax.role), []).append(ax)
    perms: Perms = {sp.root: torch.arange(sp.size) for sp in free_spaces(spaces)}
    perms.update({r: torch.arange(spaces[r].size) for r in _tied_roots(spaces)})
    perms.update(init or {})
    roots = sorted(sp.root for sp in free_spaces(spaces))
    rng = np.random.default_rng(seed)
    for _ in range(max_sweeps):
        changed = False
        for root in (roots[i] for i in rng.permutation(len(roots))):
            n = spaces[root].size
            cost = torch.zeros(n, n, dtype=torch.float64)
            for ax in (a for a in axes if a.root == root):
                wa = ref.ops[ax.op].params[ax.role].to(torch.float64)
                wb = model.ops[ax.op].params[ax.role].to(torch.float64)
                wb = _permuted(wb, by_tensor[(ax.op, ax.role)], perms, ax.axis)
                ra, rb = _rows(wa, ax, n), _rows(wb, ax, n)  # (n, block * rest)
                cost += ra @ rb.T
            new = _assign(cost)
            idx = torch.arange(n)
            gain = float(cost[idx, new].sum() - cost[idx, perms[root]].sum())
            if gain > 1e-9 * max(float(cost.abs().sum()), 1e-300):
                perms[root], changed = new, True
        tied = match_attention(ref, model, spaces, perms)  # attention units: structured
        changed = changed or any(not torch.equal(p, perms.get(r, p[:0])) for r, p in tied.items())
        perms.update(tied)
        if not changed:
            break
    return perms
