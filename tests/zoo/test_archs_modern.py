"""The `archs` preset's families: each builds, trains a step, and is read as an exact Net."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from zoolens.errors import ZoolensError
from zoolens.ir import Net, load_net
from zoolens.zoo import generate_zoo
from zoolens.zoo.archs import FAMILIES, FIXED_ACTIVATION, TOKEN_FAMILIES, ArchSpec, build_model
from zoolens.zoo.archs_modern import SIZES, clip_size
from zoolens.zoo.plan import plan_zoo
from zoolens.zoo.presets import ARCHS, TINY, preset_from_dict
from zoolens.zoo.tasks import get_task, load_task
from zoolens.zoo.train import HParams, fit

NEW = [f for f in FAMILIES if f in SIZES or (f in FIXED_ACTIVATION and f.startswith("mlp-"))]
SHAPES = {1: (16,), 2: (8, 8), 3: (1, 8, 8)}


def _spec(family: str, depth: int = 2, width: int = 16) -> ArchSpec:
    tokens = family in TOKEN_FAMILIES
    shape = (12,) if tokens else SHAPES[FAMILIES[family][-1]]
    return ArchSpec(family, shape, 3, depth, width, "tanh", vocab=7 if tokens else 0)


def _inputs(spec: ArchSpec, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if spec.vocab:
        return torch.randint(0, spec.vocab, (n, *spec.input_shape), generator=g)
    return torch.randn((n, *spec.input_shape), generator=g)


@pytest.mark.parametrize("family", NEW)
def test_new_family_trains_and_imports_exactly(family: str) -> None:
    torch.manual_seed(0)
    spec = _spec(family)
    model = build_model(spec)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = _inputs(spec, 8, 1), torch.arange(8) % 3
    hp = HParams(lr=1e-2, optimizer="adam", weight_decay=0.0, epochs=1, batch_size=8)
    assert fit(model, x, y, "classification", hp, seed=0) == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    model.eval()
    net = load_net(model, input_shape=spec.input_shape)
    assert isinstance(net, Net)
    x = _inputs(spec, 5, 2)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=1e-5, atol=1e-5)
    assert net.trainable_params() == sum(p.numel() for p in model.parameters())


def test_imported_net_tells_two_models_of_a_family_apart() -> None:
    """Sensitivity twin of the exactness test: another seed, another function."""
    spec = _spec("llama")
    torch.manual_seed(0)
    a = load_net(build_model(spec).eval(), input_shape=spec.input_shape)
    torch.manual_seed(1)
    b = load_net(build_model(spec).eval(), input_shape=spec.input_shape)
    x = _inputs(spec, 4, 3)
    with torch.no_grad():
        assert (a(x) - b(x)).abs().max() > 1e-3


def test_llama_reads_as_grouped_query_causal_attention() -> None:
    torch.manual_seed(0)
    spec = _spec("llama", depth=1, width=16)
    net = load_net(build_model(spec).eval(), input_shape=spec.input_shape)
    assert isinstance(net, Net)
    attn = [op for op in net.ops if op.kind == "sdpa"]
    assert [op.attrs["causal"] for op in attn] == [True]


def test_token_families_refuse_real_inputs_and_the_others_tokens() -> None:
    with pytest.raises(ZoolensError, match="cannot take"):
        build_model(ArchSpec("llama", (12,), 3, 1, 16, "relu"))
    with pytest.raises(ZoolensError, match="cannot take"):
        build_model(ArchSpec("mlp-relu", (12,), 3, 1, 16, "relu", vocab=7))


def test_clip_size_keeps_models_small() -> None:
    for family in SIZES:
        depth, width = clip_size(family, 9, 512)
        assert (depth, width) == (SIZES[family][0], SIZES[family][2])
        torch.manual_seed(0)
        model = build_model(replace(_spec(family), depth=depth, width=width))
        assert sum(p.numel() for p in model.parameters()) <= 50_000, family


def test_token_and_row_tasks() -> None:
    rows, tokens = load_task("digits-rows"), load_task("digits-tokens")
    assert rows.x_train.shape[1:] == (8, 8) and rows.x_train.dtype == torch.float32
    assert tokens.x_train.dtype == torch.int64 and get_task("digits-tokens").vocab == 17
    assert int(tokens.x_train.min()) == 0 and int(tokens.x_train.max()) == 16
    torch.testing.assert_close(
        tokens.x_train.float() / 16, rows.x_train.reshape(-1, 64), atol=1e-6, rtol=0
    )
    assert torch.equal(rows.y_test, tokens.y_test)


def test_archs_plan_gives_every_class_its_share() -> None:
    specs = [s for u in plan_zoo(ARCHS, 0) for s in u.specs]
    families = [s.family for s in specs]
    counts = {f: families.count(f) for f in set(families)}
    assert len(counts) >= 20 and set(counts.values()) == {8}
    for s in specs:
        t = get_task(s.task)
        assert (s.family in TOKEN_FAMILIES) == (t.vocab > 0), s
        if s.family in FIXED_ACTIVATION:
            assert s.activation == FIXED_ACTIVATION[s.family]


def test_rotate_is_recorded_only_when_set() -> None:
    assert "rotate" not in TINY.to_dict()
    assert ARCHS.to_dict()["rotate"] == "family"
    assert preset_from_dict(ARCHS.to_dict()) == ARCHS
    assert preset_from_dict(TINY.to_dict()) == TINY


def test_tiny_archs_zoo_trains_imports_and_verifies(tmp_path) -> None:
    preset = replace(
        ARCHS,
        name="archs-test",
        families=("mobilenet", "tf-decoder"),
        n_models=4,
        n_inrs=0,
        max_steps=2,
        epochs=(1,),
    )
    zoo = generate_zoo(preset, str(tmp_path), seed=0, progress=False)
    m = zoo.manifest
    assert sorted(m["family"]) == ["mobilenet", "mobilenet", "tf-decoder", "tf-decoder"]
    assert set(m.loc[m["family"] == "tf-decoder", "task"]) == {"digits-tokens"}
    for row in m.itertuples():
        net = zoo.load(row.id)
        assert net.trainable_params() == row.num_params
        data = load_task(row.task)
        with torch.no_grad():
            acc = (net(data.x_test).argmax(1) == data.y_test).double().mean().item()
        assert np.isclose(acc, row.accuracy)
