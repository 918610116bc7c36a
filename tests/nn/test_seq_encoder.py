"""The default encoder on tiny transformers: exactly invariant to their exact symmetries,
moved by near-misses of them (sensitivity twins)."""

from __future__ import annotations

import pytest
import torch

from zoolens.ir import Net
from zoolens.nn import NeuralGraphEncoder, load_encoder
from zoolens.symmetry import PERM_LINKS, build_spaces, permute_spaces, random_exact_action
from zoolens.symmetry.spaces import space_of
from zoolens.testing import assert_invariant, cosine, max_rel_diff
from zoolens.testing.seq_nets import SEQ_FAMILIES, seq_input, seq_net


@pytest.fixture(scope="module", params=["untrained", "shipped"])
def encoder(request: pytest.FixtureRequest) -> NeuralGraphEncoder:
    enc = NeuralGraphEncoder() if request.param == "untrained" else load_encoder("neural-graph")
    assert isinstance(enc, NeuralGraphEncoder)
    return enc


@pytest.fixture(scope="module")
def shipped() -> NeuralGraphEncoder:
    enc = load_encoder("neural-graph")
    assert isinstance(enc, NeuralGraphEncoder)
    return enc


@pytest.mark.parametrize("family", SEQ_FAMILIES)
@pytest.mark.parametrize("seed", range(2))
def test_invariant_to_exact_actions(encoder: NeuralGraphEncoder, family: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    assert_invariant(encoder, seq_net(family, g), g, min_cos=0.9999, n_actions=2)


def _twins(net: Net) -> dict[str, Net]:
    """Non-symmetries: rows of the first projection rolled without its readers; two
    non-rotary q dims of head 0 swapped without k; query head 0 traded with the first head
    of the next kv group (for plain attention: head 1) in q only."""
    spaces = build_spaces(net, PERM_LINKS)
    where = space_of(spaces)
    sdpa = next(op for op in net.ops if op.kind == "sdpa")
    q_root = where[sdpa.inputs[0]]
    h, n_q = sdpa.attrs["heads"], spaces[q_root].size
    hd, rot = n_q // h, (sdpa.attrs.get("rope") or {}).get("dims", 0)
    swap_dims = torch.arange(n_q)
    swap_dims[rot], swap_dims[rot + 1] = rot + 1, rot
    heads = torch.arange(h)
    other = h // sdpa.attrs["kv_heads"]
    heads[0], heads[other] = other, 0
    swap_heads = (heads[:, None] * hd + torch.arange(hd)).reshape(-1)
    uncoupled = net.clone()
    op = next(o for o in uncoupled.ops if o.kind == "linear")
    roll = torch.roll(torch.arange(op.params["weight"].shape[0]), 1)
    op.params = {r: t.index_select(0, roll) for r, t in op.params.items()}
    return {
        "uncoupled": uncoupled,
        "q dims without k": permute_spaces(net, {q_root: swap_dims}, spaces),
        "query heads across groups": permute_spaces(net, {q_root: swap_heads}, spaces),
    }


@pytest.mark.parametrize("family", SEQ_FAMILIES)
def test_sensitive_to_non_symmetries(shipped: NeuralGraphEncoder, family: str) -> None:
    g = torch.Generator().manual_seed(0)
    net = seq_net(family, g)
    x = seq_input(net, g)
    twins = _twins(net)
    z = shipped.encode([net, random_exact_action(net, g), *twins.values()])
    exact = cosine(z[0], z[1])
    assert exact >= 0.9999
    for i, (name, twin) in enumerate(twins.items()):
        assert max_rel_diff(net(x), twin(x)) > 1e-2, f"{name}: not a non-symmetry"
        c = cosine(z[0], z[2 + i])
        assert c < 0.9999 and 1 - c > 100 * (1 - exact), f"{name}: cosine {c:.6f}"


def test_transformer_families_embed_apart(shipped: NeuralGraphEncoder) -> None:
    g = torch.Generator().manual_seed(3)
    z = shipped.encode([seq_net(f, g) for f in SEQ_FAMILIES])
    for i in range(len(SEQ_FAMILIES)):
        for j in range(i):
            assert cosine(z[i], z[j]) < 0.99
