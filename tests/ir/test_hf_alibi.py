"""ALiBi (MPT): attention scores gain ``slope_h · (j - i)``, a bias fixed per head *index* by
the architecture. Heads of different slopes are therefore not interchangeable: permuting
them is no symmetry of the weights (it is one of the op only if the slopes moved too, and
they are not weights). zoolens.symmetry.attention keeps heads in place; within-head
permutations stay exact."""

from __future__ import annotations

import pytest
import torch
from tests.ir import hf_models

from zoolens.errors import UnsupportedOpError
from zoolens.ir import Net, Op, load_net


@pytest.fixture(scope="module")
def mpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Net, object]:
    d = str(tmp_path_factory.mktemp("mpt"))
    model = hf_models.save("mpt", d)
    return d, load_net(d).to(torch.float64), model


def _attention(net: Net) -> tuple[Op, list[Op], Op]:
    """The first attention op, its q/k/v projections and its output projection."""
    att = next(op for op in net.ops if op.kind == "sdpa")
    qkv = [net.producer(v) for v in att.inputs[:3]]
    (out,) = net.consumers(att.output)
    assert all(p is not None and p.kind == "linear" for p in qkv) and out.kind == "linear"
    return att, qkv, out  # type: ignore[return-value]


def _heads_permuted(net: Net, perm: list[int], slopes_too: bool = False) -> Net:
    """`net` with the heads of its first attention op reordered (q, k, v rows and the
    output projection's columns), and its ALiBi slopes with them if `slopes_too`."""
    out = net.clone()
    att, qkv, proj = _attention(out)
    h = int(att.attrs["heads"])
    hd = proj.params["weight"].shape[1] // h
    idx = torch.cat([torch.arange(p * hd, (p + 1) * hd) for p in perm])
    for op in qkv:
        op.params = {r: t[idx] for r, t in op.params.items()}
    proj.params["weight"] = proj.params["weight"][:, idx]
    if slopes_too:
        att.attrs["alibi"] = [att.attrs["alibi"][p] for p in perm]
    return out


def test_mpt_becomes_an_alibi_attention_computing_the_model(mpt: tuple) -> None:
    _, net, model = mpt
    slopes = [op.attrs["alibi"] for op in net.ops if op.kind == "sdpa"]
    want_slopes = [2.0 ** (-8 * (i + 1) / 4) for i in range(4)]  # MPT's, for 4 heads
    assert len(slopes) == 2 and all(s == pytest.approx(want_slopes) for s in slopes)
    assert all(op.attrs["causal"] for op in net.ops if op.kind == "sdpa")
    x = hf_models.example(model, net.input_shape)
    want = hf_models.reference(model, x).double()
    assert float((net(x) - want).abs().max()) <= 1e-4 * float(want.abs().max())
    assert net.trainable_params() == sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]


def test_head_permutation_is_a_symmetry_only_with_its_slopes(mpt: tuple) -> None:
    _, net, model = mpt
    x = hf_models.example(model, net.input_shape)
    base = net(x)
    perm = [2, 0, 3, 1]
    assert not torch.allclose(_heads_permuted(net, perm)(x), base, rtol=1e-3, atol=1e-6)
    assert torch.allclose(_heads_permuted(net, perm, slopes_too=True)(x), base, rtol=1e-10)
    plain = net.clone()  # without ALiBi the same permutation is exact
    for op in plain.ops:
        op.attrs.pop("alibi", None)
    assert torch.allclose(_heads_permuted(plain, perm)(x), plain(x), rtol=1e-10)


def test_exact_actions_keep_heads_and_the_default_embedding(mpt: tuple) -> None:
    from zoolens.nn import load_encoder
    from zoolens.symmetry import canonicalize, random_exact_action
    from zoolens.symmetry.attention import attention_permutation

    _, net, model = mpt
    att, _, _ = _attention(net)
    for seed in range(5):
        q = attention_permutation(att, 32, torch.Generator().manual_seed(seed))[0]
        assert torch.equal(q // 8, torch.arange(4).repeat_interleave(8))  # heads stay
    x = hf_models.example(model, net.input_shape)
    moved = random_exact_action(net, torch.Generator().manual_seed(0))
    assert not all(
        torch.equal(a, b) for a, b in zip(net.parameters(), moved.parameters(), strict=True)
    )
    for other in (moved, canonicalize(net)):
        assert torch.allclose(other(x), net(x), rtol=1e-5, atol=1e-8)
    bad = _heads_permuted(net, [2, 0, 3, 1])  # the false symmetry
    z = load_encoder().encode([net, moved, bad])
    assert float(z[0] @ z[1]) >= 0.9999
    assert 1 - float(z[0] @ z[2]) > 10 * max(1 - float(z[0] @ z[1]), 1e-6)


def test_alibi_with_an_attention_mask_is_refused_naming_the_op(mpt: tuple) -> None:
    with pytest.raises(UnsupportedOpError, match=r"'mpt'.*'masked_fill'"):
        load_net(mpt[0], inputs=("input_ids", "attention_mask"))
