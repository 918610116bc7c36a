"""Attention masks: a Hugging Face text model imported with ``inputs=("input_ids",
"attention_mask")`` is a Net reading the mask as its second input, computing
``model(ids, attention_mask=mask)`` (zoolens.ir._export_mask, ops_seq.run_sdpa)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tests.ir import hf_models

from zoolens.errors import LoadError, UnsupportedOpError
from zoolens.ir import Net, load_net
from zoolens.ir.export_import import trace_module

TEXT = ["bert", "distilbert", "roberta", "gpt2", "llama", "phi", "gpt_neox"]
CAUSAL = ("gpt2", "llama", "phi", "gpt_neox")
MASKED = ("input_ids", "attention_mask")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, object]]:
    out = {}
    for fam in TEXT:
        d = str(tmp_path_factory.mktemp(fam))
        out[fam] = (d, hf_models.save(fam, d))
    return out


def _masks(t: int) -> torch.Tensor:
    """Row 0 right-padded, row 1 left-padded (a causal model's leading pads see no key)."""
    mask = torch.ones(2, t, dtype=torch.long)
    mask[0, t - t // 3 :] = 0
    mask[1, : t // 2] = 0
    return mask


def _reference(model: object, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    with torch.no_grad():
        out = model(ids, attention_mask=mask)  # type: ignore[operator]
    keys = ("logits", "pooler_output", "last_hidden_state")
    y = next(getattr(out, k) for k in keys if getattr(out, k, None) is not None)
    return y.transpose(1, 2) if y.dim() == 3 else y


def _close(got: torch.Tensor, want: torch.Tensor, rel: float = 1e-4) -> bool:
    return float((got - want).abs().max()) <= rel * float(want.abs().max())


@pytest.mark.parametrize("family", TEXT)
def test_masked_net_computes_the_model_with_its_mask(family: str, saved: dict) -> None:
    path, model = saved[family]
    net = load_net(path, inputs=MASKED)
    assert isinstance(net, Net) and net.extra_inputs == ("attention_mask",)
    sdpa = [op for op in net.ops if op.kind == "sdpa"]
    assert sdpa and all(
        op.attrs["mask"] == "keys" and op.inputs[3] == "attention_mask" for op in sdpa
    )
    assert all(op.attrs["causal"] == (family in CAUSAL) for op in sdpa)
    x = hf_models.example(model, net.input_shape)
    if family == "roberta":
        x[x == 1] = 2  # its pad id: padding is given by the mask here
    mask = _masks(x.shape[1])
    for m in (mask, mask.bool(), torch.ones_like(mask)):
        assert _close(net(x, attention_mask=m), _reference(model, x, m))
    assert _close(net(x), _reference(model, x, None))  # left out: no padding
    # sensitivity: the mask changes the function (pooled outputs: everywhere)
    assert not _close(net(x, attention_mask=mask), net(x), 1e-3)
    assert net.trainable_params() == sum(p.numel() for p in model.parameters())


def test_default_import_reads_the_ids_alone(saved: dict) -> None:
    """Without ``inputs`` the net is unchanged: one input, and a mask is refused by name."""
    path, model = saved["bert"]
    net = load_net(path)
    assert net.extra_inputs == () and all(
        len(op.inputs) == 3 for op in net.ops if op.kind == "sdpa"
    )
    x = hf_models.example(model, net.input_shape)
    with pytest.raises(UnsupportedOpError, match=r"attention_mask.*inputs="):
        net(x, attention_mask=_masks(x.shape[1]))
    masked = load_net(path, inputs=MASKED)
    assert torch.equal(masked(x), net(x))
    assert masked.content_hash() != net.content_hash()


def test_masked_net_round_trips(saved: dict, tmp_path) -> None:
    path, model = saved["llama"]
    net = load_net(path, inputs=MASKED)
    net.save(str(tmp_path / "net"))
    back = load_net(str(tmp_path / "net"))
    x = hf_models.example(model, net.input_shape)
    mask = _masks(x.shape[1])
    assert back.extra_inputs == net.extra_inputs and back.content_hash() == net.content_hash()
    assert torch.equal(back(x, attention_mask=mask), net(x, attention_mask=mask))
    with pytest.raises(LoadError, match="Hugging Face"):
        load_net(str(tmp_path / "net"), inputs=MASKED)


def test_bad_inputs_are_one_line_errors(saved: dict, tmp_path) -> None:
    path, model = saved["bert"]
    with pytest.raises(LoadError, match=r"token_type_ids.*supported"):
        load_net(path, inputs=("input_ids", "token_type_ids"))
    vit = str(tmp_path / "vit")
    hf_models.save("vit", vit)
    with pytest.raises(UnsupportedOpError, match=r"'vit'.*text models only"):
        load_net(vit, inputs=MASKED)
    net = load_net(path, inputs=MASKED)
    x = hf_models.example(model, net.input_shape)
    with pytest.raises(UnsupportedOpError, match=r"attention_mask of shape \[2, 3\]"):
        net(x, attention_mask=torch.ones(2, 3))


class _Pooled(torch.nn.Module):
    """Mean over the real tokens: the mask multiplies hidden values (not an attention mask)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(20, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.emb(ids) * attention_mask[..., None].float()
        return self.head(h.sum(1))


class _QueryMasked(torch.nn.Module):
    """An SDPA masking queries, not keys: not what ``transformers`` builds."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(20, 8)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.emb(ids).view(ids.shape[0], ids.shape[1], 2, 4).transpose(1, 2)
        m = attention_mask.bool()[:, None, :, None].expand(-1, 1, -1, ids.shape[1])
        return F.scaled_dot_product_attention(h, h, h, attn_mask=m).sum(1)


@pytest.mark.parametrize(
    ("module", "message"),
    [(_Pooled, "'mul' mixes the attention_mask with hidden values"), (_QueryMasked, "neither")],
)
def test_other_uses_of_the_mask_are_refused(module: type, message: str) -> None:
    torch.manual_seed(0)
    ids = torch.randint(0, 20, (2, 6))
    with pytest.raises(UnsupportedOpError, match=message):
        trace_module(module().eval(), ids, "m", mask=_masks(6))


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_masked_net_symmetries_and_default_embedding(family: str, saved: dict) -> None:
    """Exact actions keep the masked function; the default embedding is blind to them, moved
    by a non-symmetry, and the same as the unmasked import's (the weights are the same)."""
    from zoolens.nn import load_encoder
    from zoolens.symmetry import canonicalize, random_exact_action

    path, model = saved[family]
    net = load_net(path, inputs=MASKED).to(torch.float64)
    moved = random_exact_action(net, torch.Generator().manual_seed(0))
    assert not all(
        torch.equal(a, b) for a, b in zip(net.parameters(), moved.parameters(), strict=True)
    )
    x = hf_models.example(model, net.input_shape)
    mask = _masks(x.shape[1])
    for other in (moved, canonicalize(net)):
        assert torch.allclose(
            other(x, attention_mask=mask), net(x, attention_mask=mask), rtol=1e-5, atol=1e-8
        )
    bad = net.clone()  # a non-symmetry: the first weight's units rolled, its readers not
    first = next(op for op in bad.ops if "weight" in op.params)
    first.params["weight"] = first.params["weight"].roll(1, dims=0)
    plain = load_net(path).to(torch.float64)
    z = load_encoder().encode([net, moved, bad, plain])
    assert float(z[0] @ z[1]) >= 0.9999
    assert 1 - float(z[0] @ z[2]) > 10 * max(1 - float(z[0] @ z[1]), 1e-6)
    assert float(z[0] @ z[3]) >= 0.9999


def test_masked_net_is_not_exported_to_onnx_without_its_mask(saved: dict, tmp_path) -> None:
    from zoolens.errors import ZoolensError
    from zoolens.ir.onnx_export import export_onnx

    with pytest.raises(ZoolensError, match="attention_mask is not exported"):
        export_onnx(load_net(saved["bert"][0], inputs=MASKED), str(tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()


def test_masked_net_is_refused_by_align_and_merge_in_one_line(saved: dict) -> None:
    from zoolens.errors import ArchitectureMismatchError
    from zoolens.merge import check_same_architecture

    masked = load_net(saved["bert"][0], inputs=MASKED)
    plain = load_net(saved["bert"][0])
    check_same_architecture(plain, plain)  # the same net read without its mask passes
    with pytest.raises(ArchitectureMismatchError, match="B also reads attention_mask"):
        check_same_architecture(plain, masked)
