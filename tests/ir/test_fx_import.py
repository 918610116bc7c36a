"""torch.fx importer: every family reproduces its torch model; unsupported modules are named."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zoolens.errors import LoadError, UnsupportedOpError
from zoolens.ir import Net, load_net
from zoolens.ir.fx_import import import_module

from .families import FAMILIES, build, inputs, reference, rel_err


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("seed", [0, 1])
def test_fx_import_reproduces_the_model(family: str, seed: int) -> None:
    model, shape = build(family, seed)
    net = import_module(model, shape)
    x = inputs(shape, seed=seed)
    assert rel_err(net.to(torch.float64)(x), reference(model, x)) <= 1e-5
    assert net.input_shape == shape
    assert net.meta["importer"] == "torch.fx"


def test_fx_import_is_sensitive_to_the_weights() -> None:
    model, shape = build("mlp_relu")
    net = import_module(model, shape)
    other = net.clone()
    other.dense_ops()[0].params["weight"][0, 0] += 1.0
    x = inputs(shape).float()
    assert not torch.allclose(net(x), other(x))
    assert net.content_hash() != other.content_hash()


def test_fx_import_maps_modules_to_ir_kinds() -> None:
    model, shape = build("cnn2d_bn")
    kinds = [op.kind for op in import_module(model, shape).ops]
    assert kinds == [
        "conv2d",
        "batchnorm",
        "act",
        "maxpool",
        "conv2d",
        "batchnorm",
        "act",
        "gap",
        "flatten",
        "linear",
    ]


def test_fx_import_residual_and_scale_ops() -> None:
    resmlp = import_module(build("resmlp_ln")[0])
    assert [op.kind for op in resmlp.ops].count("add") == 2
    assert [op.kind for op in resmlp.ops].count("layernorm") == 3
    siren = import_module(build("siren")[0])
    scales = [op for op in siren.ops if op.kind == "scale"]
    assert [op.attrs["factor"] for op in scales] == [30.0, 30.0]


def test_module_called_twice() -> None:
    act = nn.ReLU()
    model = nn.Sequential(nn.Linear(4, 4), act, nn.Linear(4, 4), act)
    net = import_module(model)
    x = inputs((4,))
    assert rel_err(net.to(torch.float64)(x), reference(model, x)) <= 1e-5


def test_input_shape_is_inferred_for_mlps() -> None:
    assert import_module(build("mlp_tanh")[0]).input_shape == (5,)


def test_conv_net_without_input_shape_is_a_load_error() -> None:
    with pytest.raises(LoadError, match="input_shape"):
        import_module(build("cnn2d")[0])


@pytest.mark.parametrize(
    "module, shape, what",
    [
        (nn.Sequential(nn.Linear(4, 4), nn.Softmax(dim=1)), (4,), "Softmax"),
        (nn.Sequential(nn.Conv2d(2, 4, 3, padding_mode="reflect")), (2, 5, 5), "reflect"),
        (nn.Sequential(nn.Conv1d(1, 2, 3, padding="same")), (1, 8), "padding='same'"),
        (nn.Sequential(nn.Linear(4, 4), nn.ELU()), (4,), "ELU"),
    ],
)
def test_unsupported_modules_are_named(
    module: nn.Module, shape: tuple[int, ...], what: str
) -> None:
    with pytest.raises(UnsupportedOpError, match=what):
        import_module(module, shape)


def test_reshape_that_is_not_a_flatten_is_unsupported() -> None:
    class Unflatten(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x).view(x.shape[0], 2, 4)

    with pytest.raises(UnsupportedOpError, match="reshape"):
        import_module(Unflatten(), (8,))


def test_load_net_traces_modules_and_checks_weights() -> None:
    model, _ = build("mlp_sigmoid")
    assert isinstance(load_net(model), Net)
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(LoadError, match="NaN"):
        load_net(model)
