"""Exact actions on transformers keep the function; each near-miss of the attention group
(a sensitivity twin) changes it."""

from __future__ import annotations

import pytest
import torch

from zoolens.ir import Net
from zoolens.symmetry import (
    PERM_LINKS,
    apply_scale,
    build_spaces,
    canonicalize,
    permute_spaces,
    random_exact_action,
    random_permutations,
    scale_segments,
)
from zoolens.symmetry.actions import random_scale
from zoolens.symmetry.attention import attention_permutation
from zoolens.symmetry.spaces import space_of
from zoolens.testing import assert_same_function, max_rel_diff
from zoolens.testing.seq_nets import SEQ_FAMILIES, SeqConfig, _Builder, seq_input, seq_net

CASES = [(f, s) for f in SEQ_FAMILIES for s in range(3)]


def _net(family: str, seed: int) -> tuple[Net, torch.Tensor, torch.Generator]:
    g = torch.Generator().manual_seed(seed)
    net = seq_net(family, g)
    return net, seq_input(net, g), g


@pytest.mark.parametrize(("family", "seed"), CASES)
def test_random_exact_action_keeps_function(family: str, seed: int) -> None:
    net, x, g = _net(family, seed)
    acted = random_exact_action(net, g)
    assert_same_function(net, acted, x, rtol=1e-10)
    moved = max(
        float((a - b).abs().max())
        for a, b in zip(net.parameters(), acted.parameters(), strict=True)
    )
    assert moved > 1e-3


@pytest.mark.parametrize(("family", "seed"), CASES)
def test_canonicalize_keeps_function_and_agrees_up_to_the_permutation(
    family: str, seed: int
) -> None:
    net, x, g = _net(family, seed)
    canon = canonicalize(net)
    assert_same_function(net, canon, x, rtol=1e-10)
    scaled = net.clone()
    for seg in scale_segments(scaled):
        if seg.group is not None:
            apply_scale(scaled, seg, random_scale(seg, g, log_range=2.0))
    perms = random_permutations(scaled, g)
    got = canonicalize(permute_spaces(scaled, perms))
    expected = permute_spaces(canon, perms)
    for a, b in zip(expected.parameters(), got.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_v_to_output_is_a_scale_link_under_grouped_query_attention() -> None:
    net, _, _ = _net("llama", 0)
    sdpa = next(op for op in net.ops if op.kind == "sdpa")
    seg = next(s for s in scale_segments(net) if sdpa.inputs[2] in s.space.values)
    assert seg.group == "nonzero"
    assert any(sdpa.output in fam.values for fam in seg.family)
    qk = [s for s in scale_segments(net) if set(sdpa.inputs[:2]) & set(s.space.values)]
    assert qk and all(s.group is None for s in qk)


# -- sensitivity twins on one attention layer --------------------------------------------
def _attention_net(g: torch.Generator, heads: int, kv: int, rot: int) -> Net:
    c = SeqConfig(width=6, heads=heads, kv_heads=kv, head_dim=4, rope_dims=rot)
    b = _Builder(g, torch.float64)
    b.attention("input", c, causal=True)
    return b.net((6, 5), "attention")


def _roots(net: Net) -> tuple[dict, list[str]]:
    spaces = build_spaces(net, PERM_LINKS)
    where = space_of(spaces)
    sdpa = next(op for op in net.ops if op.kind == "sdpa")
    return spaces, [where[v] for v in (*sdpa.inputs, sdpa.output)]


def _permuted(net: Net, q=None, k=None, v=None, out=None) -> Net:
    spaces, roots = _roots(net)
    perms = {r: p for r, p in zip(roots, (q, k, v, out), strict=True) if p is not None}
    return permute_spaces(net, perms, spaces)


def _swap(n: int, i: int, j: int) -> torch.Tensor:
    p = torch.arange(n)
    p[i], p[j] = j, i
    return p


@pytest.mark.parametrize("seed", range(3))
def test_structured_attention_permutation_is_exact(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    net = _attention_net(g, 4, 2, 2)
    x = torch.randn(3, 6, 5, generator=g, dtype=torch.float64)
    sdpa = next(op for op in net.ops if op.kind == "sdpa")
    q, k, v, out = attention_permutation(sdpa, 16, g)
    assert_same_function(net, _permuted(net, q, k, v, out), x, rtol=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_attention_near_misses_change_the_function(seed: int) -> None:
    """4 query heads in 2 groups, head_dim 4, 2 rotary dims (one pair) per head."""
    g = torch.Generator().manual_seed(seed)
    net = _attention_net(g, 4, 2, 2)
    x = torch.randn(3, 6, 5, generator=g, dtype=torch.float64)
    y = net(x)
    qk_free = _swap(16, 2, 3)  # dims 2, 3 of query head 0 (non-rotary)
    # query heads 0 and 2 (groups 0 and 1) trade places; heads 0 and 1 may (test above)
    across = torch.cat(
        [torch.arange(8, 12), torch.arange(4, 8), torch.arange(4), torch.arange(12, 16)]
    )
    within = torch.cat([torch.arange(4, 8), torch.arange(4), torch.arange(8, 16)])
    assert_same_function(net, _permuted(net, q=within, out=within), x, rtol=1e-10)
    twins = {
        "q without k": _permuted(net, q=qk_free),
        "one query head's dims, not its group's": _permuted(net, q=qk_free, k=_swap(8, 2, 3)),
        "rotary dims of q and k": _permuted(
            net,
            q=torch.cat([_swap(4, 0, 1) + 4 * h for h in range(4)]),
            k=torch.cat([_swap(4, 0, 1) + 4 * h for h in range(2)]),
        ),
        "query heads across groups": _permuted(net, q=across, out=across),
        "output dims without v": _permuted(net, out=_swap(16, 0, 1)),
        "v dims for one head of a group": _permuted(net, v=_swap(8, 0, 1), out=_swap(16, 0, 1)),
    }
    for name, bad in twins.items():
        assert max_rel_diff(y, bad(x)) > 1e-4, name
    scaled = net.clone()  # q is not a scale link: rescaling a q unit (k compensating) is not exact
    op = scaled.op(net.ops[0].name)
    op.params["weight"] = op.params["weight"] * torch.tensor([2.0] + [1.0] * 15)[:, None]
    assert max_rel_diff(y, scaled(x)) > 1e-4
