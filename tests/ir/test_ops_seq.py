"""Sequence ops against torch's own layers (float64), and whole tiny transformers against a
reference interpreter that runs every op in torch's ``(B, T, D)`` layout."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoolens.errors import UnsupportedOpError
from zoolens.ir import Net, Op, load_net_dir
from zoolens.testing import max_rel_diff
from zoolens.testing.seq_nets import SEQ_FAMILIES, seq_input, seq_net

DT = torch.float64


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rope_reference(x: torch.Tensor, theta: float, dims: int) -> torch.Tensor:
    """RoPE as complex rotations of pairs (i, i + dims/2): ``(B, H, T, hd)``."""
    t, half = x.shape[2], dims // 2
    freqs = theta ** (-torch.arange(half, dtype=DT) * 2 / dims)
    rot = torch.polar(torch.ones(t, half, dtype=DT), torch.arange(t, dtype=DT)[:, None] * freqs)
    z = torch.complex(x[..., :half], x[..., half:dims]) * rot
    return torch.cat([z.real, z.imag, x[..., dims:]], dim=-1)


def _sdpa_reference(op: Op, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    a = op.attrs
    h, hkv = a["heads"], a["kv_heads"]
    hd = q.shape[1] // h

    def heads(x: torch.Tensor, n: int) -> torch.Tensor:  # (B, n*hd, T) → (B, n, T, hd)
        return x.unflatten(1, (n, hd)).transpose(2, 3)

    qh, kh, vh = heads(q, h), heads(k, hkv), heads(v, hkv)
    if a.get("rope"):
        qh = _rope_reference(qh, a["rope"]["theta"], a["rope"]["dims"])
        kh = _rope_reference(kh, a["rope"]["theta"], a["rope"]["dims"])
    out = F.scaled_dot_product_attention(
        qh, kh, vh, is_causal=bool(a["causal"]), scale=a.get("scale"), enable_gqa=hkv != h
    )
    return out.transpose(2, 3).flatten(1, 2)


@pytest.mark.parametrize(
    ("heads", "kv_heads", "causal", "rope_dims", "scale"),
    [(2, 2, False, 0, None), (4, 2, True, 0, None), (4, 1, True, 4, 0.3), (2, 2, True, 6, None)],
)
def test_sdpa_matches_torch(
    heads: int, kv_heads: int, causal: bool, rope_dims: int, scale: float | None
) -> None:
    g, hd, t = _g(1), 6, 5
    q = torch.randn(3, heads * hd, t, generator=g, dtype=DT)
    k, v = (torch.randn(3, kv_heads * hd, t, generator=g, dtype=DT) for _ in range(2))
    rope = {"theta": 500.0, "dims": rope_dims, "style": "half"} if rope_dims else None
    op = Op("a", "sdpa", ("q", "k", "v"), "o", {}, {"heads": heads, "kv_heads": kv_heads,
            "causal": causal, "scale": scale, "rope": rope})  # fmt: skip
    got = op.run([q, k, v])
    assert got.shape == (3, heads * hd, t)
    torch.testing.assert_close(got, _sdpa_reference(op, q, k, v), rtol=1e-10, atol=1e-12)


def test_sdpa_causal_flag_and_rope_matter() -> None:
    """Sensitivity twin: the attrs are not ignored."""
    g = _g(2)
    q, k, v = (torch.randn(2, 8, 5, generator=g, dtype=DT) for _ in range(3))
    base = {"heads": 2, "kv_heads": 2, "causal": False, "scale": None, "rope": None}
    run = lambda **kw: Op("a", "sdpa", ("q", "k", "v"), "o", {}, {**base, **kw}).run([q, k, v])  # noqa: E731
    plain = run()
    assert max_rel_diff(plain, run(causal=True)) > 1e-3
    assert max_rel_diff(plain, run(rope={"theta": 100.0, "dims": 2, "style": "half"})) > 1e-3


def test_norms_embedding_and_token_ops_match_torch() -> None:
    g = _g(3)
    x = torch.randn(2, 6, 4, generator=g, dtype=DT)  # (B, D, T)
    w, bias = torch.randn(6, generator=g, dtype=DT), torch.randn(6, generator=g, dtype=DT)
    ln = nn.LayerNorm(6, eps=1e-5, dtype=DT)
    rms = nn.RMSNorm(6, eps=1e-6, dtype=DT)
    with torch.no_grad():
        ln.weight.copy_(w), ln.bias.copy_(bias), rms.weight.copy_(w)
    got = Op("n", "layernorm", ("x",), "y", {"weight": w, "bias": bias}, {"eps": 1e-5}).run([x])
    torch.testing.assert_close(got, ln(x.transpose(1, 2)).transpose(1, 2))
    got = Op("n", "rmsnorm", ("x",), "y", {"weight": w}, {"eps": 1e-6}).run([x])
    torch.testing.assert_close(got, rms(x.transpose(1, 2)).transpose(1, 2))
    lin = Op("l", "linear", ("x",), "y", {"weight": torch.randn(3, 6, generator=g, dtype=DT)})
    torch.testing.assert_close(lin.run([x]), (x.transpose(1, 2) @ lin.params["weight"].T).mT)

    emb = nn.Embedding(9, 6, dtype=DT)
    ids = torch.randint(0, 9, (2, 4), generator=g)
    op = Op("e", "embedding", ("ids",), "y", {"weight": emb.weight.detach().T.clone()})
    torch.testing.assert_close(op.run([ids.to(DT)]), emb(ids).transpose(1, 2))
    torch.testing.assert_close(op.run([ids]), emb(ids).transpose(1, 2))

    table = torch.randn(6, 7, generator=g, dtype=DT)
    got = Op("p", "posembed", ("x",), "y", {"weight": table}).run([x])
    torch.testing.assert_close(got, x + table[:, :4])
    tok = torch.randn(6, generator=g, dtype=DT)
    got = Op("c", "prepend", ("x",), "y", {"weight": tok}).run([x])
    assert got.shape == (2, 6, 5) and torch.equal(got[:, :, 0], tok.expand(2, 6))
    assert torch.equal(got[:, :, 1:], x)
    assert torch.equal(Op("s", "select", ("x",), "y", {}, {"index": -1}).run([x]), x[:, :, -1])
    img = torch.randn(2, 6, 3, 2, generator=g, dtype=DT)
    assert torch.equal(Op("t", "tokens", ("x",), "y").run([img]), img.reshape(2, 6, 6))
    s = torch.randn(2, 6, 1, 1, generator=g, dtype=DT)
    assert torch.equal(Op("m", "mul", ("x", "s"), "y").run([img, s]), img * s)
    got = Op("c", "channel_scale", ("x",), "y", {"weight": w}).run([x])
    torch.testing.assert_close(got, x * w[:, None])


def test_padding_aware_positions_hand_worked_and_as_roberta_counts_them() -> None:
    from zoolens.ir.ops_seq import padded_positions

    ids = torch.tensor([[5, 1, 7, 1, 1], [1, 1, 3, 4, 6]])
    want = torch.tensor([[2, 1, 3, 1, 1], [1, 1, 2, 3, 4]])  # real tokens from pad + 1 = 2
    assert torch.equal(padded_positions(ids, 1), want)
    assert torch.equal(padded_positions(ids.to(DT), 1), want)
    roberta = pytest.importorskip("transformers.models.roberta.modeling_roberta")
    rand = torch.randint(0, 4, (6, 9), generator=_g(4))
    for pad in (0, 1, 3):
        ref = roberta.RobertaEmbeddings.create_position_ids_from_input_ids(rand, pad)
        assert torch.equal(padded_positions(rand, pad), ref)


def test_padding_aware_posembed_reads_the_ids_and_sees_the_pad() -> None:
    g = _g(5)
    x = torch.randn(2, 6, 5, generator=g, dtype=DT)  # (B, D, T)
    table = torch.randn(6, 9, generator=g, dtype=DT)  # (D, N)
    ids = torch.tensor([[4, 1, 2, 1, 3], [1, 1, 2, 3, 4]])
    op = Op("p", "posembed", ("x", "ids"), "y", {"weight": table}, {"pad": 1})
    rows = torch.tensor([[2, 1, 3, 1, 4], [1, 1, 2, 3, 4]])
    torch.testing.assert_close(op.run([x, ids]), x + table.T[rows].transpose(1, 2))
    # sensitivity: another padding id numbers the positions differently
    other = Op("p", "posembed", ("x", "ids"), "y", {"weight": table}, {"pad": 2})
    assert max_rel_diff(op.run([x, ids]), other.run([x, ids])) > 1e-3
    with pytest.raises(UnsupportedOpError, match="reads 2 value"):
        Op("p", "posembed", ("x",), "y", {"weight": table}, {"pad": 1})
    with pytest.raises(UnsupportedOpError, match="position table holds 9"):
        op.run([torch.randn(2, 6, 8, generator=g, dtype=DT), torch.zeros(2, 8, dtype=torch.long)])


# -- whole nets against a reference interpreter in (B, T, D) layout ----------------------
def _reference(net: Net, x: torch.Tensor) -> torch.Tensor:
    env: dict[str, torch.Tensor] = {net.input: x}
    for op in net.ops:
        env[op.output] = _ref_op(op, [env[v] for v in op.inputs])
    y = env[net.output]
    return y.transpose(1, 2) if y.dim() == 3 else y


def _ref_op(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    p, x = op.params, xs[0]
    if op.kind == "embedding":
        return F.embedding(x.long(), p["weight"].T)  # (B, T, D)
    if op.kind == "conv2d":
        return F.conv2d(x, p["weight"], p["bias"], op.attrs["stride"])
    if op.kind == "tokens":
        return x.flatten(2).transpose(1, 2)
    if op.kind == "prepend":
        return torch.cat([p["weight"].expand(x.shape[0], 1, -1), x], dim=1)
    if op.kind == "posembed":
        return x + p["weight"].T[: x.shape[1]]
    if op.kind == "linear":
        return F.linear(x, p["weight"], p.get("bias"))
    if op.kind == "layernorm":
        return F.layer_norm(x, (x.shape[-1],), p["weight"], p["bias"], op.attrs["eps"])
    if op.kind == "rmsnorm":
        return F.rms_norm(x, (x.shape[-1],), p["weight"], op.attrs["eps"])
    if op.kind == "sdpa":
        return _sdpa_reference(op, *[v.transpose(1, 2) for v in xs]).transpose(1, 2)
    if op.kind == "act":
        fns = {"silu": F.silu, "tanh": torch.tanh}
        if op.fn == "gelu":
            return F.gelu(x, approximate=op.attrs.get("approximate", "none"))
        return fns[op.fn](x)
    if op.kind in ("add", "mul"):
        return x + xs[1] if op.kind == "add" else x * xs[1]
    if op.kind == "channel_scale":
        return x * p["weight"]
    if op.kind == "select":
        return x[:, op.attrs["index"]]
    raise AssertionError(op.kind)


@pytest.mark.parametrize("family", SEQ_FAMILIES)
@pytest.mark.parametrize("seed", range(2))
def test_tiny_transformers_match_reference(family: str, seed: int) -> None:
    g = _g(seed)
    net = seq_net(family, g)
    x = seq_input(net, g)
    got = net(x)
    torch.testing.assert_close(got, _reference(net, x).reshape(got.shape), rtol=1e-9, atol=1e-11)
    assert math.isfinite(float(got.abs().max())) and float(got.std()) > 1e-3


@pytest.mark.parametrize("family", SEQ_FAMILIES)
def test_save_load_round_trip(tmp_path, family: str) -> None:
    g = _g(5)
    net = seq_net(family, g)
    net.save(str(tmp_path / family))
    back = load_net_dir(str(tmp_path / family))
    assert isinstance(back, Net)
    assert back.arch_key() == net.arch_key() and back.content_hash() == net.content_hash()
    x = seq_input(net, g)  # tensors are bit-identical; kernels may round by alignment
    torch.testing.assert_close(net(x), back(x), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("kind", "inputs", "params", "attrs", "match"),
    [
        ("sdpa", ("q", "k"), {}, {"heads": 2}, "reads 3"),
        ("sdpa", ("q", "k", "v"), {}, {"heads": 4, "kv_heads": 3}, "kv_heads"),
        ("sdpa", ("q", "k", "v"), {}, {"heads": 2, "rope": {"theta": 1e4, "dims": 3}}, "rope"),
        ("rmsnorm", ("x",), {}, {"eps": 1e-6}, "weight"),
        ("mul", ("x",), {}, {}, "reads 2"),
    ],
)
def test_malformed_sequence_ops_are_named(kind, inputs, params, attrs, match) -> None:
    from zoolens.errors import UnsupportedOpError

    with pytest.raises(UnsupportedOpError, match=f"op 'bad'.*{match}"):
        Op("bad", kind, inputs, "y", params, attrs)
