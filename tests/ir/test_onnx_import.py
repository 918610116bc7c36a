"""ONNX importer: files from both torch exporters reproduce the model and match fx's ops."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from zoolens.errors import InvalidWeightsError, LoadError, UnsupportedOpError
from zoolens.ir import Net, TensorSet, load_net
from zoolens.ir.fx_import import import_module
from zoolens.ir.onnx_import import import_onnx

from .families import (
    FAMILIES,
    SAME_OPS_AS_FX,
    build,
    export_onnx,
    inputs,
    op_signature,
    reference,
    rel_err,
)

#: One dynamo export per family (each costs seconds): `mlp_mixed` holds every activation,
#: `cnn1d` every 1-d layer; `mlp_bn` is left to the TorchScript exporter, which keeps its
#: BatchNorm (dynamo folds it into the Gemm, as both exporters do in `cnn2d_bn`).
DYNAMO_FAMILIES = ("mlp_mixed", "cnn1d", "cnn2d", "cnn2d_bn", "resmlp_ln", "siren")
Exporter = Callable[..., Path]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exporter:
    """``exported(family, dynamo, **kwargs)`` → path of the ONNX file (cached per module)."""
    cache: dict[tuple[object, ...], Path] = {}
    root = tmp_path_factory.mktemp("onnx")

    def get(family: str, dynamo: bool, **kwargs: object) -> Path:
        key = (family, dynamo, repr(sorted(kwargs.items())))
        if key not in cache:
            model, shape = build(family)
            path = root / f"{family}_{'dynamo' if dynamo else 'ts'}_{len(cache)}.onnx"
            export_onnx(model, shape, str(path), dynamo, **kwargs)
            cache[key] = path
        return cache[key]

    return get


def _check_parity(path: Path, family: str) -> Net:
    model, shape = build(family)
    net = import_onnx(str(path), strict=True)
    assert isinstance(net, Net)
    assert net.input_shape == shape
    x = inputs(shape, n=16, seed=3)
    assert rel_err(net.to(torch.float64)(x), reference(model, x)) <= 1e-5
    return net


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_torchscript_export_reproduces_the_model(exported: Exporter, family: str) -> None:
    net = _check_parity(exported(family, dynamo=False), family)
    assert net.meta["importer"] == "onnx"


@pytest.mark.parametrize("family", DYNAMO_FAMILIES)
def test_dynamo_export_reproduces_the_model(exported: Exporter, family: str) -> None:
    _check_parity(exported(family, dynamo=True), family)


@pytest.mark.parametrize("family", ["resmlp_ln", "mlp_mixed", "cnn1d"])
def test_old_opset_decompositions(exported: Exporter, family: str) -> None:
    """Opset 14 spells LayerNorm and GELU as chains of elementwise ops."""
    path = exported(family, dynamo=False, opset_version=14)
    types = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "LayerNormalization" not in types and "Gelu" not in types
    _check_parity(path, family)


def test_dynamic_batch_axis(exported: Exporter) -> None:
    """``x.view(x.size(0), -1)`` with a symbolic batch exports Shape → Gather → Concat."""
    path = exported("cnn2d_view", dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    assert "Shape" in {n.op_type for n in onnx.load(str(path)).graph.node}
    net = _check_parity(path, "cnn2d_view")
    assert [op.kind for op in net.ops] == ["conv2d", "act", "flatten", "linear"]


def test_shared_initializers(tmp_path: Path) -> None:
    """A fresh BatchNorm's equal tensors are stored once and aliased with Identity nodes."""
    model = nn.Sequential(nn.BatchNorm1d(6), nn.Linear(6, 4), nn.BatchNorm1d(4)).eval()
    path = export_onnx(model, (6,), str(tmp_path / "bn.onnx"), dynamo=False)
    assert "Identity" in {n.op_type for n in onnx.load(path).graph.node}
    net = import_onnx(path, strict=True)
    assert isinstance(net, Net)
    assert [op.kind for op in net.ops] == ["batchnorm", "linear", "batchnorm"]
    x = inputs((6,))
    assert rel_err(net.to(torch.float64)(x), reference(model, x)) <= 1e-5


@pytest.mark.parametrize("family", SAME_OPS_AS_FX)
def test_same_ops_as_fx_importer(exported: Exporter, family: str) -> None:
    model, shape = build(family)
    fx_net = import_module(model, shape)
    onnx_net = import_onnx(str(exported(family, dynamo=False)), strict=True)
    assert op_signature(onnx_net) == op_signature(fx_net)
    fx_tensors = [t for op in fx_net.ops for t in op.params.values()]
    onnx_tensors = [t for op in onnx_net.ops for t in op.params.values()]
    assert all(torch.equal(a, b) for a, b in zip(fx_tensors, onnx_tensors, strict=True))


@pytest.mark.parametrize("family", ["mlp_mixed", "resmlp_ln", "cnn1d", "siren"])
def test_dynamo_gives_same_ops_as_fx(exported: Exporter, family: str) -> None:
    model, shape = build(family)
    onnx_net = import_onnx(str(exported(family, dynamo=True)), strict=True)
    assert op_signature(onnx_net) == op_signature(import_module(model, shape))


def test_activation_attrs_are_read(exported: Exporter) -> None:
    net = import_onnx(str(exported("mlp_mixed", dynamo=True)), strict=True)
    acts = {(op.fn, tuple(sorted(op.attrs.items()))) for op in net.ops if op.kind == "act"}
    assert ("leaky_relu", (("fn", "leaky_relu"), ("negative_slope", 0.1))) in acts
    assert ("softplus", (("beta", 2.0), ("fn", "softplus"), ("threshold", 20.0))) in acts
    assert ("gelu", (("approximate", "tanh"), ("fn", "gelu"))) in acts


# -- hand-written graphs, checked against onnxruntime ----------------------------------------
def _save(
    tmp_path: Path,
    nodes: list[onnx.NodeProto],
    inits: dict[str, np.ndarray],
    in_shape: list[int],
    out_shape: list[int | str],
    name: str = "m.onnx",
) -> str:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(_f32(a), k) for k, a in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = str(tmp_path / name)
    onnx.save(model, path)
    return path


def _f32(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) if a.dtype.kind == "f" else a.astype(np.int64)


def _ort(path: str, x: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"x": x})[0])


def test_gemm_options_and_matmul_add_match_onnxruntime(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.normal(size=(4, 6)),
        "b1": rng.normal(size=(1, 6)),
        "w2": rng.normal(size=(6, 3)),
        "b2": rng.normal(size=(3,)),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], alpha=0.5, beta=2.0),
        helper.make_node("Tanh", ["h"], ["t"]),
        helper.make_node("MatMul", ["t", "w2"], ["m"]),
        helper.make_node("Add", ["b2", "m"], ["y"]),
    ]
    path = _save(tmp_path, nodes, inits, [2, 4], [2, 3])
    net = import_onnx(path, strict=True)
    assert [op.kind for op in net.ops] == ["linear", "act", "linear"]
    x = rng.normal(size=(2, 4)).astype(np.float32)
    got = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, _ort(path, x), rtol=1e-5, atol=1e-6)


def test_batchnorm_on_conv_matches_onnxruntime(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    inits = {
        "w": rng.normal(size=(3, 2, 3, 3)),
        "s": rng.normal(size=3),
        "b": rng.normal(size=3),
        "m": rng.normal(size=3),
        "v": rng.random(3) + 0.5,
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    path = _save(tmp_path, nodes, inits, [1, 2, 6, 6], [1, 3, 3, 3])
    net = import_onnx(path, strict=True)
    assert [op.kind for op in net.ops] == ["conv2d", "batchnorm", "act"]
    assert net.ops[1].attrs == {"eps": 0.001}
    x = rng.normal(size=(1, 2, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(
        net(torch.from_numpy(x)).numpy(), _ort(path, x), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "node, inits, what",
    [
        (
            helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 1, 1, 0]),
            {"w": np.ones((2, 1, 3, 3))},
            "asymmetric padding",
        ),
        (
            helper.make_node("Conv", ["x", "w"], ["y"]),
            {"w": np.ones((2, 2, 3, 3, 3))},
            "3-d convolution",
        ),
        (helper.make_node("Softmax", ["x"], ["y"]), {}, "Softmax"),
        (helper.make_node("Elu", ["x"], ["y"]), {}, "Elu"),
        (helper.make_node("Flatten", ["x"], ["y"], axis=2), {}, "axis=2"),
        (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], ceil_mode=1), {}, "ceil"),
        (
            helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1] * 4),
            {},
            "excludes padding",
        ),
        (helper.make_node("ReduceMean", ["x"], ["y"], axes=[1]), {}, "mean over"),
        (helper.make_node("Reshape", ["x", "s"], ["y"]), {"s": np.array([2, 25])}, "batch axis"),
        (helper.make_node("Mul", ["x", "x"], ["y"]), {}, "Mul"),
        (helper.make_node("Add", ["x", "c"], ["y"]), {"c": np.ones((5,))}, "non-scalar"),
    ],
)
def test_unsupported_ops_are_named(
    tmp_path: Path, node: onnx.NodeProto, inits: dict[str, np.ndarray], what: str
) -> None:
    path = _save(tmp_path, [node], inits, [1, 2, 5, 5], ["n", "c", "h", "w"])
    with pytest.raises(UnsupportedOpError, match=what) as err:
        import_onnx(path, strict=True)
    assert path in str(err.value) and "\n" not in str(err.value)


def test_dropout_identity_flatten_match_onnxruntime(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Identity", ["x"], ["a"]),
        helper.make_node("Dropout", ["a"], ["d"]),
        helper.make_node("Flatten", ["d"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "w"], ["m"]),
        helper.make_node("LeakyRelu", ["m"], ["y"], alpha=0.2),
    ]
    path = _save(tmp_path, nodes, {"w": rng.normal(size=(6, 4))}, [2, 2, 3], [2, 4])
    net = import_onnx(path, strict=True)
    assert [op.kind for op in net.ops] == ["dropout", "flatten", "linear", "act"]
    assert net.ops[-1].attrs == {"fn": "leaky_relu", "negative_slope": 0.2}
    x = rng.normal(size=(2, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(net(torch.from_numpy(x)).numpy(), _ort(path, x), rtol=1e-5)


def test_two_inputs_give_a_tensorset(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "z"], ["y"])],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in ("x", "z")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(np.ones(3, np.float32), "unused")],
    )
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    ts = import_onnx(str(path))
    assert isinstance(ts, TensorSet) and ts.meta["unsupported_ops"] == ["<graph>"]
    assert list(ts.tensors) == ["unused"]


def test_elementwise_chain_that_is_no_activation_is_unsupported(tmp_path: Path) -> None:
    nodes = [helper.make_node("Exp", ["x"], ["e"]), helper.make_node("Mul", ["e", "c"], ["y"])]
    path = _save(tmp_path, nodes, {"c": np.array([3.0])}, [2, 4], [2, 4])
    with pytest.raises(UnsupportedOpError, match="Exp, Mul"):
        import_onnx(path, strict=True)


def test_unsupported_graph_becomes_a_tensorset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.Softmax(dim=1))
    path = export_onnx(model.eval(), (4,), str(tmp_path / "softmax.onnx"), dynamo=False)
    with caplog.at_level(logging.WARNING):
        ts = import_onnx(path)
    assert isinstance(ts, TensorSet)
    assert ts.meta["unsupported_ops"] == ["Softmax"]
    assert list(ts.tensors) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert torch.equal(ts.tensors["2.weight"], model[2].weight.detach())
    assert "Softmax" in caplog.text and path in caplog.text
    with pytest.raises(UnsupportedOpError, match="Softmax"):
        load_net(path, strict=True)


def test_lstm_final_state_file_lists_its_ops(tmp_path: Path) -> None:
    class Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(3, 5, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(x)[1][0][0]  # h_n: the state output, not the sequence

    path = export_onnx(Seq().eval(), (4, 3), str(tmp_path / "lstm.onnx"), dynamo=False)
    ts = import_onnx(path)
    assert isinstance(ts, TensorSet) and "LSTM" in ts.meta["unsupported_ops"]


# -- bad files ---------------------------------------------------------------------------------
@pytest.fixture()
def good_file(exported: Exporter) -> bytes:
    return exported("mlp_relu", dynamo=False).read_bytes()


@pytest.mark.parametrize(
    "damage, what",
    [
        (lambda b: b"", "empty"),
        (lambda b: b[: len(b) // 2], "corrupt or truncated"),
        (lambda b: b[: len(b) - 7], "corrupt or truncated"),
        (lambda b: np.random.default_rng(0).bytes(600), "corrupt or truncated"),
        (lambda b: b"hello, this is not a model\n", "corrupt or truncated"),
    ],
)
def test_bad_files_are_load_errors(
    tmp_path: Path, good_file: bytes, damage: Callable[[bytes], bytes], what: str
) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(damage(good_file))
    with pytest.raises(LoadError, match=what) as err:
        import_onnx(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_nan_initializer_is_named(tmp_path: Path) -> None:
    w = np.ones((4, 3))
    w[1, 2] = np.nan
    path = _save(
        tmp_path, [helper.make_node("MatMul", ["x", "fc.w"], ["y"])], {"fc.w": w}, [2, 4], [2, 3]
    )
    with pytest.raises(InvalidWeightsError, match=r"fc\.w") as err:
        import_onnx(path)
    assert path in str(err.value)


def test_inf_in_unsupported_graph_is_still_an_error(tmp_path: Path) -> None:
    path = _save(
        tmp_path,
        [helper.make_node("Softmax", ["x"], ["s"]), helper.make_node("MatMul", ["s", "w"], ["y"])],
        {"w": np.full((4, 3), np.inf)},
        [2, 4],
        [2, 3],
    )
    with pytest.raises(InvalidWeightsError, match="'w'"):
        import_onnx(path)
