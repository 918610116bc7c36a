"""Weight matching of attention units: the structured permutations of `zoolens.symmetry.
attention` (key/value groups, query heads within a group, q/k dims but the rotary ones, v/out
dims), chosen by linear assignments level by level.

Private to `zoolens.merge.align`.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from zoolens.ir import Net
from zoolens.symmetry import Space
from zoolens.symmetry.attention import attention_shape
from zoolens.symmetry.spaces import space_of

Perms = dict[str, torch.Tensor]


def _assign(cost: torch.Tensor) -> torch.Tensor:
    _, cols = linear_sum_assignment(cost.numpy(), maximize=True)
    return torch.as_tensor(cols, dtype=torch.long)


def unit_rows(net: Net, spaces: dict[str, Space], root: str, perms: Perms) -> torch.Tensor:
    """Every weight of the units of space `root`, one row per unit ``(n, m)``: each tensor
    axis indexing the space, with its other axes permuted by `perms` where they index a
    permuted space."""
    where = space_of(spaces)
    n = spaces[root].size
    cols = []
    for op in net.ops:
        for role, t in op.params.items():
            kinds = op.param_roles(role)
            values = [op.inputs[0] if k == "in" else op.output for k in kinds]
            axes = [i for i, v in enumerate(values) if where[v] == root and kinds[i] != "gates"]
            if not axes:
                continue
            t = t.to(torch.float64)
            for i, v in enumerate(values):
                p = perms.get(where[v])
                if i != axes[0] and p is not None and kinds[i] != "gates" and t.shape[i] == len(p):
                    t = t.index_select(i, p)
            cols.append(t.movedim(axes[0], 0).reshape(n, -1))
    return torch.cat(cols, dim=1) if cols else torch.zeros(n, 0, dtype=torch.float64)


def match_attention(ref: Net, model: Net, spaces: dict[str, Space], perms: Perms) -> Perms:
    """Structured permutations of every attention op whose q, k, v and output spaces are
    tied to it, best matching `model`'s units to `ref`'s given the other spaces' `perms`."""
    where = space_of(spaces)
    infos = ref.value_infos()
    out: Perms = {}
    for op in ref.ops:
        if op.kind != "sdpa" or op.attrs.get("alibi") is not None:  # ALiBi: heads stay
            continue
        roots = [where[v] for v in (*op.inputs[:3], op.output)]  # q, k, v: not the mask
        if any(spaces[r].fixed or spaces[r].tied != op.name for r in roots):
            continue
        shape = attention_shape(op, infos[op.inputs[0]].units)
        rows = [(unit_rows(ref, spaces, r, {}), unit_rows(model, spaces, r, perms)) for r in roots]
        out.update(zip(roots, _structured(shape, rows), strict=True))
    return out


def _sim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a @ b.T


def _structured(
    shape: tuple[int, int, int, int], rows: list[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, ...]:
    """Group, head and dim assignments (`new[i] = old[perm[i]]` for the q, k, v, out units)."""
    h, g, hd, rot = shape
    r = h // g
    (qa, qb), (ka, kb), (va, vb), (oa, ob) = rows

    def block(x: torch.Tensor, unit: int) -> torch.Tensor:
        return x[unit * hd : (unit + 1) * hd]

    def dims(
        a_group: int, b_group: int, heads: list[tuple[int, int]]
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """q/k dims (non-rotary) and v/out dims of two groups, for paired query heads."""
        c_qk = _sim(block(ka, a_group), block(kb, b_group))
        c_vo = _sim(block(va, a_group), block(vb, b_group))
        for ha, hb in heads:
            c_qk = c_qk + _sim(block(qa, ha), block(qb, hb))
            c_vo = c_vo + _sim(block(oa, ha), block(ob, hb))
        pi = torch.cat([torch.arange(rot), rot + _assign(c_qk[rot:, rot:])])
        tau = _assign(c_vo)
        idx = torch.arange(hd)
        score = float(c_qk[idx, pi].sum() + c_vo[idx, tau].sum())
        return pi, tau, score

    def heads_of(
        a_group: int, b_group: int, pi: torch.Tensor, tau: torch.Tensor
    ) -> list[tuple[int, int]]:
        cost = torch.zeros(r, r, dtype=torch.float64)
        for i in range(r):
            for j in range(r):
                ha, hb = a_group * r + i, b_group * r + j
                cost[i, j] = float(
                    (block(qa, ha) * block(qb, hb)[pi]).sum()
                    + (block(oa, ha) * block(ob, hb)[tau]).sum()
                )
        rho = _assign(cost)
        return [(a_group * r + i, b_group * r + int(rho[i])) for i in range(r)]

    def ident(a: int, b: int) -> list[tuple[int, int]]:
        return [(a * r + i, b * r + i) for i in range(r)]

    scores = torch.zeros(g, g, dtype=torch.float64)
    for a in range(g):
        for b in range(g):
            scores[a, b] = dims(a, b, ident(a, b))[2]
    sigma = _assign(scores)
    q, k, v, o = [], [], [], []
    for a in range(g):
        b = int(sigma[a])
        pi, tau, _ = dims(a, b, ident(a, b))
        pairs = heads_of(a, b, pi, tau)
        pi, tau, _ = dims(a, b, pairs)  # refined with the matched query heads
        k.append(b * hd + pi)
        v.append(b * hd + tau)
        for _, hb in pairs:
            q.append(hb * hd + pi)
            o.append(hb * hd + tau)
    return torch.cat(q), torch.cat(k), torch.cat(v), torch.cat(o)
