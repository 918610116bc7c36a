"""Partial rotary embedding (Phi's ``partial_rotary_factor``, GPT-NeoX's ``rotary_pct``): the
sdpa op rotates the first ``rope["dims"]`` dims of each head; the unrotated dims of q and k
may be permuted jointly within a head, the rotated pairs may not."""

from __future__ import annotations

import pytest
import torch
from tests.ir import hf_models

from zoolens.ir import Net, Op, load_net


@pytest.fixture(scope="module", params=["phi", "gpt_neox"])
def phi(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """Phi (partial_rotary_factor 0.5) or GPT-NeoX (rotary_pct 0.5): half of each head's 8
    dims rotate."""
    d = str(tmp_path_factory.mktemp(request.param))
    model = hf_models.save(request.param, d)
    return load_net(d).to(torch.float64), model


def _qk(net: Net) -> tuple[Op, Op, int]:
    """The q and k projections of the first attention op, and its head dim."""
    att = next(op for op in net.ops if op.kind == "sdpa")
    q, k = (net.producer(v) for v in att.inputs[:2])
    assert q is not None and k is not None and q.kind == k.kind == "linear"
    return q, k, q.params["weight"].shape[0] // int(att.attrs["heads"])


def _permuted_qk(net: Net, head: int, dims: list[int]) -> Net:
    """`net` with dims `dims` of `head` in q and k cyclically moved, jointly."""
    out = net.clone()
    q, k, hd = _qk(out)
    idx = torch.arange(q.params["weight"].shape[0])
    rows = [head * hd + i for i in dims]
    idx[rows] = idx[rows[1:] + rows[:1]]
    for op in (q, k):
        op.params = {r: t[idx] for r, t in op.params.items()}
    return out


def test_half_of_each_head_rotates_as_in_the_model(phi: tuple[Net, object]) -> None:
    net, model = phi
    ropes = [op.attrs["rope"] for op in net.ops if op.kind == "sdpa"]
    _, _, hd = _qk(net)
    assert len(ropes) == 2 and all(r["dims"] == hd // 2 == 4 for r in ropes)
    x = hf_models.example(model, net.input_shape)
    want = hf_models.reference(model, x).double()
    assert float((net(x) - want).abs().max()) <= 1e-4 * float(want.abs().max())
    assert net.trainable_params() == sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]


def test_unrotated_dims_permute_jointly_rotated_pairs_do_not(phi: tuple[Net, object]) -> None:
    net, model = phi
    x = hf_models.example(model, net.input_shape)
    base = net(x)
    kept = _permuted_qk(net, 1, [4, 6, 5, 7])  # unrotated dims 4..7 of head 1
    assert torch.allclose(kept(x), base, rtol=1e-10, atol=1e-12)
    for dims in ([0, 1], [0, 2], [1, 3]):  # rotated dims (pairs (0, 2) and (1, 3))
        moved = _permuted_qk(net, 1, dims)
        assert not torch.allclose(moved(x), base, rtol=1e-4, atol=1e-6)


def test_default_embedding_sees_the_rotary_split(phi: tuple[Net, object]) -> None:
    """Exact actions (they permute the unrotated dims, never the rotated ones) keep the
    function and the embedding; swapping two rotated dims, though it looks like the same
    kind of permutation, moves both."""
    from zoolens.nn import load_encoder
    from zoolens.symmetry import canonicalize, random_exact_action
    from zoolens.symmetry.attention import attention_permutation

    net, model = phi
    att = next(op for op in net.ops if op.kind == "sdpa")
    q_perm = attention_permutation(att, 32, torch.Generator().manual_seed(0))[0]
    per_head = (q_perm.reshape(4, 8) % 8)[:, :4]
    assert torch.equal(per_head, torch.arange(4).expand(4, -1))  # rotated dims stay
    x = hf_models.example(model, net.input_shape)
    moved = random_exact_action(net, torch.Generator().manual_seed(1))
    assert not all(
        torch.equal(a, b) for a, b in zip(net.parameters(), moved.parameters(), strict=True)
    )
    for other in (moved, canonicalize(net)):
        assert torch.allclose(other(x), net(x), rtol=1e-5, atol=1e-8)
    bad = _permuted_qk(net, 0, [0, 1])
    z = load_encoder().encode([net, moved, bad])
    assert float(z[0] @ z[1]) >= 0.9999
    assert 1 - float(z[0] @ z[2]) > 10 * max(1 - float(z[0] @ z[1]), 1e-6)
