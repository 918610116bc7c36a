"""zoolens' own format: save/load is bit-exact; damaged directories are load errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from zoolens.errors import InvalidWeightsError, LoadError
from zoolens.ir import Net, load_net, load_net_dir
from zoolens.ir.fx_import import import_module
from zoolens.ir.onnx_import import import_onnx

from .families import FAMILIES, build, export_onnx, inputs


def _assert_identical(a: Net, b: Net) -> None:
    assert a.input_shape == b.input_shape and a.input == b.input and a.output == b.output
    assert a.meta == b.meta
    assert [(o.name, o.kind, o.inputs, o.output, o.attrs, list(o.params)) for o in a.ops] == [
        (o.name, o.kind, o.inputs, o.output, o.attrs, list(o.params)) for o in b.ops
    ]
    for oa, ob in zip(a.ops, b.ops, strict=True):
        for role, t in oa.params.items():
            assert t.dtype == ob.params[role].dtype
            assert torch.equal(t, ob.params[role]), f"{oa.name}.{role}"
    assert a.content_hash() == b.content_hash()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fx_net_round_trip_is_bit_exact(tmp_path: Path, family: str) -> None:
    model, shape = build(family)
    net = import_module(model, shape)
    net.save(str(tmp_path / "net"))
    loaded = load_net(tmp_path / "net")
    assert isinstance(loaded, Net)
    _assert_identical(net, loaded)
    x = inputs(shape).float()
    assert torch.equal(net(x), loaded(x))


@pytest.mark.parametrize("family", ["cnn2d_bn", "resmlp_ln", "mlp_mixed"])
def test_onnx_net_round_trip_is_bit_exact(tmp_path: Path, family: str) -> None:
    model, shape = build(family)
    net = import_onnx(export_onnx(model, shape, str(tmp_path / "m.onnx"), dynamo=False))
    assert isinstance(net, Net)
    net.save(str(tmp_path / "net"))
    _assert_identical(net, load_net_dir(str(tmp_path / "net")))


def test_float64_round_trip(tmp_path: Path) -> None:
    net = import_module(build("siren")[0]).to(torch.float64)
    net.save(str(tmp_path / "net"))
    _assert_identical(net, load_net_dir(str(tmp_path / "net")))


def test_save_overwrites_in_place(tmp_path: Path) -> None:
    a = import_module(build("mlp_relu", seed=0)[0])
    b = import_module(build("mlp_relu", seed=1)[0])
    a.save(str(tmp_path / "net"))
    b.save(str(tmp_path / "net"))
    _assert_identical(b, load_net_dir(str(tmp_path / "net")))
    assert sorted(p.name for p in (tmp_path / "net").iterdir()) == [
        "arch.json",
        "model.safetensors",
    ]


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    import_module(build("mlp_tanh")[0]).save(str(tmp_path / "net"))
    return tmp_path / "net"


def _edit_arch(path: Path, **changes: object) -> None:
    arch = json.loads((path / "arch.json").read_text())
    arch.update(changes)
    (path / "arch.json").write_text(json.dumps(arch))


def test_corrupt_arch_json(saved: Path) -> None:
    (saved / "arch.json").write_text("{not json")
    with pytest.raises(LoadError, match="arch"):
        load_net(saved)


def test_foreign_arch_json(saved: Path) -> None:
    _edit_arch(saved, format="something.else")
    with pytest.raises(LoadError, match="not a zoolens arch file"):
        load_net(saved)


def test_newer_format_version(saved: Path) -> None:
    _edit_arch(saved, format_version=99)
    with pytest.raises(LoadError, match="upgrade zoolens"):
        load_net(saved)


def test_missing_weights(saved: Path) -> None:
    (saved / "model.safetensors").unlink()
    with pytest.raises(LoadError, match=r"model\.safetensors"):
        load_net(saved)


def test_truncated_weights(saved: Path) -> None:
    raw = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(LoadError, match="safetensors"):
        load_net(saved)


def test_arch_and_weights_disagree(saved: Path) -> None:
    tensors = load_file(str(saved / "model.safetensors"))
    tensors.pop(next(iter(tensors)))
    save_file(tensors, str(saved / "model.safetensors"))
    with pytest.raises(LoadError, match="disagree"):
        load_net(saved)


def test_nan_weights_in_net_dir(saved: Path) -> None:
    tensors = load_file(str(saved / "model.safetensors"))
    name = next(iter(tensors))
    tensors[name][0] = float("nan")
    save_file(tensors, str(saved / "model.safetensors"))
    with pytest.raises(InvalidWeightsError, match="NaN"):
        load_net(saved)


def test_directory_without_arch(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"arch\.json"):
        load_net(tmp_path)


def test_hugging_face_directory_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert", "hidden_size": 32}')
    with pytest.raises(LoadError, match=r"no model\.safetensors .* 'bert' directory"):
        load_net(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")  # not a model config: the generic line
    with pytest.raises(LoadError, match=r"arch\.json"):
        load_net(tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no such file"):
        load_net(tmp_path / "nope.onnx")


def test_net_dir_tensors_are_views_of_the_weights_file(saved: Path) -> None:
    net = load_net(saved)
    assert isinstance(net, Net)
    eager = load_file(str(saved / "model.safetensors"))
    params = {f"{op.name}.{r}": t for op in net.ops for r, t in op.params.items()}
    assert params and set(params) <= set(eager)
    for name, t in params.items():
        assert torch.equal(t, eager[name]) and t.dtype == eager[name].dtype, name
    ptrs = sorted(t.data_ptr() for t in params.values() if t.numel())
    span = ptrs[-1] - ptrs[0]  # one mapping of one file, not separate allocations
    assert span < (saved / "model.safetensors").stat().st_size
