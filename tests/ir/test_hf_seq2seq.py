"""Encoder-decoder models: a BART directory is a Net computing ``model(input_ids)`` — the
decoder reading the ids shifted right after its start token, BART's own default — with
cross-attention as an ``sdpa`` op whose keys and values read the encoder's output."""

from __future__ import annotations

import pytest
import torch
from tests.ir import hf_models

from zoolens.errors import UnsupportedOpError
from zoolens.ir import Net, load_net

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, object]]:
    """BART with its tied LM head, and the bare BartModel (the decoder's last hidden state)."""
    out = {"bart": (str(tmp_path_factory.mktemp("bart")), None)}
    out["bart"] = (out["bart"][0], hf_models.save("bart", out["bart"][0]))
    torch.manual_seed(1)
    bare = transformers.BartModel(hf_models.FAMILIES["bart"]().config).eval()
    path = str(tmp_path_factory.mktemp("bart_model"))
    bare.save_pretrained(path)
    out["bart_model"] = (path, bare)
    return out


def _producer(net: Net, value: str) -> str:
    return next(op.name for op in net.ops if op.output == value)


@pytest.mark.parametrize("name", ["bart", "bart_model"])
def test_bart_is_a_net_computing_the_model_on_shifted_decoder_ids(name: str, saved: dict) -> None:
    from transformers.models.bart.modeling_bart import shift_tokens_right

    path, model = saved[name]
    net = load_net(path)
    assert isinstance(net, Net) and net.meta["model_type"] == "bart" and net.extra_inputs == ()
    x = hf_models.example(model, net.input_shape)
    cfg = model.config
    decoder_ids = shift_tokens_right(x, cfg.pad_token_id, cfg.decoder_start_token_id)
    with torch.no_grad():
        out = model(input_ids=x, decoder_input_ids=decoder_ids)
    want = (out.logits if name == "bart" else out.last_hidden_state).transpose(1, 2)
    got = net(x)
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())
    assert net.trainable_params() == sum(p.numel() for p in model.parameters())
    embeddings = [op for op in net.ops if op.kind == "embedding"]
    assert [op.attrs.get("shift") for op in embeddings] == [None, cfg.decoder_start_token_id]
    sdpa = [op for op in net.ops if op.kind == "sdpa"]
    assert [op.attrs["causal"] for op in sdpa] == [False, False, True, False, True, False]
    encoder_out = net.ops[net.ops.index(embeddings[1]) - 1].output  # the encoder's last value
    prefix = "model." if name == "bart" else ""  # BartModel's weights are not under model.
    assert _producer(net, encoder_out).startswith(f"{prefix}encoder.layers.1.")
    for cross in sdpa[3::2]:  # keys and values from the encoder, queries from the decoder
        q, k, v = (next(op for op in net.ops if op.output == i) for i in cross.inputs)
        assert k.inputs == v.inputs == (encoder_out,)
        assert _producer(net, q.inputs[0]).startswith(f"{prefix}decoder.")


def test_symmetries_of_both_stacks_keep_the_function_and_the_tie(saved: dict) -> None:
    from zoolens.symmetry import canonicalize, random_exact_action

    path, model = saved["bart"]
    net = load_net(path).to(torch.float64)
    x = hf_models.example(model, net.input_shape)
    moved = random_exact_action(net, torch.Generator().manual_seed(0))
    changed = {
        a.name.split(".")[1]
        for a, b in zip(net.ops, moved.ops, strict=True)
        if any(not torch.equal(a.params[r], b.params[r]) for r in a.params)
        and a.name.startswith("model.")
    }
    assert changed >= {"encoder", "decoder"}  # heads, FFN units, streams of both stacks
    for other in (moved, canonicalize(net)):
        torch.testing.assert_close(other(x), net(x), rtol=1e-5, atol=1e-8)
    # the table the encoder and decoder embeddings share moves as one (rows = stream units)
    assert torch.equal(moved.op("lm_head").params["weight"], moved.op("lm_head_2").params["weight"])
    bad = net.clone()  # a non-symmetry: one decoder FFN's units rolled, its readers not
    up = bad.op("model.decoder.layers.0.fc1")
    up.params["weight"] = up.params["weight"].roll(1, dims=0)
    assert not torch.allclose(bad(x), net(x), rtol=1e-3)


def test_default_embedding_is_blind_to_exact_actions_and_sees_weights(saved: dict) -> None:
    from zoolens.nn import load_encoder
    from zoolens.symmetry import random_exact_action

    net = load_net(saved["bart"][0]).to(torch.float64)
    moved = random_exact_action(net, torch.Generator().manual_seed(2))
    bad = net.clone()  # a non-symmetry: the encoder embedding's units rolled, its readers not
    first = bad.ops[0]
    first.params["weight"] = first.params["weight"].roll(1, dims=0)
    z = load_encoder().encode([net, moved, bad])
    assert float(z[0] @ z[1]) >= 0.9999
    assert 1 - float(z[0] @ z[2]) > 10 * max(1 - float(z[0] @ z[1]), 1e-6)


def test_neural_graph_wires_cross_attention_to_the_encoder(saved: dict) -> None:
    """The same weights with cross-attention reading the decoder stream instead of the encoder
    output (self-attention): another function and another graph, whose k and v edges leave
    the decoder's units instead of the encoder's."""
    from zoolens.graph import net_to_graph

    path, model = saved["bart"]
    net = load_net(path).to(torch.float64)
    rewired = net.clone()
    for name in ("k_proj", "v_proj"):
        op = rewired.op(f"model.decoder.layers.1.encoder_attn.{name}")
        op.inputs = rewired.op("model.decoder.layers.1.encoder_attn.q_proj").inputs
    x = hf_models.example(model, net.input_shape)
    assert not torch.allclose(rewired(x), net(x), rtol=1e-3)
    g, h = net_to_graph(net), net_to_graph(rewired)
    assert g.edge_index.shape == h.edge_index.shape and not torch.equal(g.edge_index, h.edge_index)
    k = rewired.op("model.decoder.layers.1.encoder_attn.k_proj")
    edges = [{tuple(e) for e in graph.edge_index.T.tolist()} for graph in (g, h)]
    moved = edges[1] - edges[0]
    assert len(moved) == 2 * k.params["weight"].numel()  # exactly the k and v edges moved


def test_encoder_decoders_without_a_default_decoder_input_are_one_line(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.cli.test_inspect import run_cli

    torch.manual_seed(0)
    config = transformers.T5Config(
        vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=1, num_heads=4
    )
    transformers.T5ForConditionalGeneration(config).save_pretrained(str(tmp_path))
    with pytest.raises(UnsupportedOpError, match=r"'t5'.*decoder_input_ids"):
        load_net(str(tmp_path))
    code, _, err = run_cli(["inspect", str(tmp_path)], monkeypatch, capsys)
    errors = [line for line in err.splitlines() if line.startswith("zoolens:")]
    assert code == 2 and len(errors) == 1 and "'t5'" in errors[0] and "Traceback" not in err


def test_bart_reads_its_attention_mask_as_a_second_input(saved: dict) -> None:
    """With ``inputs=(..., "attention_mask")`` the mask hides padded encoder keys (encoder
    self-attention and cross-attention), as ``model(ids, attention_mask=mask)`` does."""
    path, model = saved["bart"]
    net = load_net(path, inputs=("input_ids", "attention_mask"))
    assert net.extra_inputs == ("attention_mask",)
    x = hf_models.example(model, net.input_shape)
    mask = torch.ones_like(x)
    mask[0, -5:] = 0  # right padding
    with torch.no_grad():
        want = model(x, attention_mask=mask).logits.transpose(1, 2)
    got = net(x, attention_mask=mask)
    assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())
    assert not torch.allclose(got, net(x), rtol=1e-3)  # sensitivity: the mask matters
