"""The exact permutations of an attention (``sdpa``) op's q, k, v and output units.

With H query heads in G key/value groups (r = H / G query heads per group) of head_dim
units each, and R rotary dims per head, the output is unchanged when, jointly:

* the G groups are permuted (k and v blocks, and the r query heads of each group with them);
* the r query heads of a group are permuted among themselves (their output heads follow;
  they read the same k and v);
* the non-rotary dims of a group's k and of all its query heads get one permutation (the
  scores sum over them; each rotary pair turns at its own frequency, so those stay);
* the dims of a group's v and of all its query heads' outputs get one permutation (the
  output is linear in v, dim by dim).

With ALiBi (``attrs["alibi"]``: a slope per head index, fixed by the architecture, not a
weight) a head's bias stays with its index: groups and heads move only onto groups / heads of
equal slopes (with the usual geometric slopes, all distinct, never). The within-head
permutations above stay exact (the bias does not read q, k or v).

Nothing else that permutes these units is exact in general: permuting q without k, one
query head's dims without the rest of its group, or moving units across heads changes the
function (tests/symmetry/test_attention.py).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch

from zoolens.ir import Net, Op
from zoolens.symmetry.spaces import Space, space_of


def attention_shape(op: Op, q_units: int) -> tuple[int, int, int, int]:
    """``(heads, kv_heads, head_dim, rotary dims)`` of attention `op`."""
    h = int(op.attrs["heads"])
    g = int(op.attrs.get("kv_heads") or h)
    rope = op.attrs.get("rope") or {}
    return h, g, q_units // h, int(rope.get("dims", 0))


def keyed_randperm(keys: Sequence[Hashable], generator: torch.Generator) -> torch.Tensor:
    """A uniformly random permutation moving each index only onto indices of an equal key
    (all keys equal: ``torch.randperm``)."""
    perm = torch.arange(len(keys))
    for key in dict.fromkeys(keys):
        idx = torch.tensor([i for i, k in enumerate(keys) if k == key])
        perm[idx] = idx[torch.randperm(len(idx), generator=generator)]
    return perm


def attention_permutation(
    op: Op, q_units: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A uniformly random exact permutation of `op`'s units (``new[i] = old[perm[i]]``).

    Returns:
        Permutations of the q, k, v and output units.
    """
    h, g, hd, rot = attention_shape(op, q_units)
    r = h // g
    slopes = [float(m) for m in op.attrs.get("alibi") or [0.0] * h]
    groups = [tuple(slopes[a * r : (a + 1) * r]) for a in range(g)]
    sigma = keyed_randperm(groups, generator)  # only onto groups of the same slopes
    q, k, v, out = [], [], [], []
    for a in range(g):
        old = int(sigma[a])
        rho = keyed_randperm(list(groups[old]), generator)
        pi = torch.cat([torch.arange(rot), rot + torch.randperm(hd - rot, generator=generator)])
        tau = torch.randperm(hd, generator=generator)
        k.append(old * hd + pi)
        v.append(old * hd + tau)
        for i in range(r):
            head = old * r + int(rho[i])
            q.append(head * hd + pi)
            out.append(head * hd + tau)
    return torch.cat(q), torch.cat(k), torch.cat(v), torch.cat(out)


def attention_permutations(
    net: Net, spaces: dict[str, Space], generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Random exact permutations of every attention op whose spaces are all free: space
    root → permutation, for `zoolens.symmetry.permute_spaces`."""
    where = space_of(spaces)
    infos = net.value_infos()
    perms: dict[str, torch.Tensor] = {}
    for op in net.ops:
        if op.kind != "sdpa":
            continue
        roots = [where[v] for v in (*op.inputs[:3], op.output)]  # q, k, v: not the mask
        if any(spaces[r].fixed or spaces[r].tied != op.name for r in roots):
            continue
        ps = attention_permutation(op, infos[op.inputs[0]].units, generator)
        perms.update(zip(roots, ps, strict=True))
    return perms
