"""Architecture families: every one imports into an exact Net, and back."""

from __future__ import annotations

import pytest
import torch

from zoolens.ir.fx_import import import_module
from zoolens.zoo.archs import FAMILIES, ArchSpec, build_model, load_from_net, new_head, scale_init
from zoolens.zoo.manifest import count_params

SHAPES = {1: (16,), 2: (1, 40), 3: (1, 8, 8)}
CLASSIC = ("mlp", "resmlp", "cnn1d", "cnn2d", "cnn2d-bn")
CASES = [
    (fam, rank, act)
    for fam, ranks in FAMILIES.items()
    if fam in CLASSIC
    for rank in ranks
    for act in ("relu", "sine", "gelu")
]


@pytest.mark.parametrize(("family", "rank", "act"), CASES)
def test_every_family_imports_exactly(family: str, rank: int, act: str) -> None:
    torch.manual_seed(0)
    spec = ArchSpec(family, SHAPES[rank], 5, depth=2, width=8, activation=act, dropout=0.1)
    model = build_model(spec).eval()
    net = import_module(model, spec.input_shape)
    x = torch.randn(7, *spec.input_shape)
    torch.testing.assert_close(net(x), model(x), rtol=0, atol=1e-6)
    assert count_params(net) == sum(p.numel() for p in model.parameters())
    assert str(spec).startswith(f"{family}(in=") and "dropout=0.1" in str(spec)


def test_load_from_net_restores_weights_and_batchnorm_statistics() -> None:
    spec = ArchSpec("cnn2d-bn", (1, 8, 8), 3, depth=2, width=8, activation="tanh")
    torch.manual_seed(1)
    trained = build_model(spec)
    trained(torch.randn(16, 1, 8, 8))  # updates running statistics
    net = import_module(trained.eval(), spec.input_shape)
    torch.manual_seed(2)
    fresh = build_model(spec)
    load_from_net(fresh, net)
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(fresh.eval()(x), trained(x), rtol=0, atol=0)


def test_scale_init_and_new_head() -> None:
    torch.manual_seed(0)
    model = build_model(ArchSpec("mlp", (4,), 3, 1, 8, "relu"))
    w = model.body[0].weight.detach().clone()
    b = model.body[0].bias.detach().clone()
    scale_init(model, 2.0)
    assert torch.equal(model.body[0].weight, 2 * w) and torch.equal(model.body[0].bias, b)
    new_head(model, 7)
    assert model(torch.randn(2, 4)).shape == (2, 7)
