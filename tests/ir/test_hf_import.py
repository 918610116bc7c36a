"""Hugging Face directories → executable Nets through torch.export (zoolens.ir.hf_import)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from tests.ir import hf_models

from zoolens.errors import LoadError, UnsupportedOpError
from zoolens.ir import Net, load_net

FAMILIES = sorted(hf_models.FAMILIES)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, object]]:
    out = {}
    for fam in FAMILIES:
        d = str(tmp_path_factory.mktemp(fam))
        out[fam] = (d, hf_models.save(fam, d))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_directory_becomes_a_net_computing_the_model(family: str, saved: dict) -> None:
    path, model = saved[family]
    net = load_net(path)
    with open(os.path.join(path, "config.json")) as f:
        model_type = json.load(f)["model_type"]
    assert isinstance(net, Net) and net.meta["model_type"] == model_type
    x = hf_models.example(model, net.input_shape)
    want = hf_models.reference(model, x)
    got = net(x)
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())
    # parameters as model.parameters() counts them (GPT-2's tied head once)
    assert net.trainable_params() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family", ["llama", "convnext", "roberta"])
def test_default_embedding_is_blind_to_exact_actions_and_sees_weights(
    family: str, saved: dict
) -> None:
    from zoolens.nn import load_encoder
    from zoolens.symmetry import random_exact_action

    net = load_net(saved[family][0]).to(torch.float64)
    moved = random_exact_action(net, torch.Generator().manual_seed(0))
    x = hf_models.example(saved[family][1], net.input_shape)
    x = x.double() if x.is_floating_point() else x
    assert not all(
        torch.equal(a, b) for a, b in zip(net.parameters(), moved.parameters(), strict=True)
    )
    assert torch.allclose(moved(x), net(x), rtol=1e-5, atol=1e-8)
    bad = net.clone()  # a non-symmetry: the first weight's units rolled, its readers not
    first = next(op for op in bad.ops if "weight" in op.params)
    first.params["weight"] = first.params["weight"].roll(1, dims=0)
    z = load_encoder().encode([net, moved, bad])
    assert float(z[0] @ z[1]) >= 0.9999
    assert 1 - float(z[0] @ z[2]) > 10 * max(1 - float(z[0] @ z[1]), 1e-6)


def test_tied_head_is_counted_once_and_stays_tied(saved: dict) -> None:
    net = load_net(saved["gpt2"][0])
    (keys,) = net.meta["tied"].values()
    emb, head = (net.state_dict()[k] for k in keys)
    assert torch.equal(emb.T, head)
    assert net.num_params() == sum(t.numel() for t in net.parameters()) - head.numel()


def test_a_different_model_gives_a_different_net(saved: dict, tmp_path) -> None:
    """Sensitivity: the translation reads the weights (another seed → other outputs)."""
    path, model = saved["llama"]
    other = hf_models.save("llama", str(tmp_path), seed=1)
    a, b = load_net(path), load_net(str(tmp_path))
    x = hf_models.example(model, a.input_shape)
    assert not torch.allclose(a(x), b(x), atol=1e-3)
    assert torch.allclose(b(x), hf_models.reference(other, x), atol=1e-4)


def test_llama_attention_is_grouped_query_with_rotary(saved: dict) -> None:
    net = load_net(saved["llama"][0])
    (sdpa, *_) = [op for op in net.ops if op.kind == "sdpa"]
    assert sdpa.attrs["heads"] == 4 and sdpa.attrs["kv_heads"] == 2 and sdpa.attrs["causal"]
    assert sdpa.attrs["rope"]["dims"] == 8 and sdpa.attrs["rope"]["theta"] == pytest.approx(
        10000.0, rel=1e-4
    )
    assert any(op.kind == "rmsnorm" for op in net.ops) and any(op.kind == "mul" for op in net.ops)


def test_bert_is_bidirectional_and_gpt2_causal(saved: dict) -> None:
    bert, gpt2 = load_net(saved["bert"][0]), load_net(saved["gpt2"][0])
    assert {op.attrs["causal"] for op in bert.ops if op.kind == "sdpa"} == {False}
    assert {op.attrs["causal"] for op in gpt2.ops if op.kind == "sdpa"} == {True}


def test_unknown_model_type_is_one_clear_error(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-model"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(LoadError, match="no-such-model"):
        load_net(str(tmp_path))


def test_roberta_positions_count_the_non_padding_tokens(saved: dict) -> None:
    """RoBERTa numbers positions by counting non-padding ids: the net does too, exactly."""
    path, model = saved["roberta"]
    net = load_net(path)
    (pos,) = [op for op in net.ops if op.attrs.get("pad") is not None]
    assert pos.kind == "posembed" and pos.inputs[1] == net.input
    assert pos.attrs["pad"] == model.config.pad_token_id == 1
    t = net.input_shape[0]
    x = hf_models.example(model, net.input_shape)
    x[x == 1] = 2  # no padding
    padded = x.clone()
    padded[0, t // 2 :] = 1  # right padding
    padded[1, : t // 3] = 1  # left padding
    for ids in (x, padded):
        want = hf_models.reference(model, ids)
        assert float((net(ids) - want).abs().max()) <= 1e-4 * float(want.abs().max())
    # sensitivity: numbering the positions from 0 (BERT's way) is another function
    plain = net.clone()
    (pp,) = [op for op in plain.ops if op.attrs.get("pad") is not None]
    pp.attrs["pad"] = 0
    assert not torch.allclose(plain(padded), net(padded), atol=1e-3)


class _CountedPositions(torch.nn.Module):
    """Positions from the token values that are not padding-aware positions (no mask)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(20, 8)
        self.pos = torch.nn.Embedding(20, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = (ids != 0).long().cumsum(dim=1)
        return self.head((self.emb(ids) + self.pos(positions))[:, -1])


def test_other_positions_computed_from_token_values_are_refused() -> None:
    torch.manual_seed(0)
    with pytest.raises(UnsupportedOpError, match="padding-aware positions"):
        load_net(_CountedPositions().eval(), input_shape=(6,))


class _TinyDecoder(torch.nn.Module):
    """A module torch.fx cannot read (transformer ops), read through torch.export."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(20, 16)
        self.pos = torch.nn.Parameter(torch.randn(1, 6, 16))
        self.norm = torch.nn.LayerNorm(16)
        self.qkv = torch.nn.Linear(16, 48)
        self.out = torch.nn.Linear(16, 16)
        self.head = torch.nn.Linear(16, 5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids) + self.pos
        q, k, v = self.qkv(self.norm(x)).split(16, dim=-1)
        b, t, _ = q.shape
        q, k, v = (z.view(b, t, 2, 8).transpose(1, 2) for z in (q, k, v))
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, 16))
        return self.head(x[:, -1])


def test_a_module_fx_cannot_read_is_traced_with_export() -> None:
    torch.manual_seed(0)
    m = _TinyDecoder().eval()
    net = load_net(m, input_shape=(6,))
    x = torch.randint(0, 20, (3, 6))
    with torch.no_grad():
        assert torch.allclose(net(x), m(x), atol=1e-5)
    assert net.trainable_params() == sum(p.numel() for p in m.parameters())
    assert [op.attrs["causal"] for op in net.ops if op.kind == "sdpa"] == [True]
