"""ONNX exports with a dynamic batch axis, several outputs and control flow: the part of the
graph that does not depend on the input's values is evaluated, the rest imported."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from zoolens.errors import UnsupportedOpError
from zoolens.ir import Net, TensorSet
from zoolens.ir.onnx_import import import_onnx
from zoolens.nn import load_encoder
from zoolens.symmetry import random_exact_action
from zoolens.testing import assert_invariant, assert_same_function

ort = pytest.importorskip("onnxruntime")
BATCHES = (1, 3, 7)


class _ViewFlatten(nn.Module):
    """A 2-D CNN flattened with ``x.view(x.size(0), -1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.size(0), -1))


class _ReshapeInput(nn.Module):
    """``x.reshape(x.shape[0], 4, -1)`` into a 1-D CNN."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 3, 3)
        self.fc = nn.Linear(3 * 6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(x.reshape(x.shape[0], 4, -1)))
        return self.fc(h.flatten(1))


class _TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(5, 8)
        self.a = nn.Linear(8, 3)
        self.b = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.body(x))
        return self.a(h), self.b(h)


def _unflatten() -> nn.Module:
    return nn.Sequential(
        nn.Unflatten(1, (1, 16)), nn.Conv1d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(42, 2)
    )


MODELS = {
    "unflatten_cnn1d": (_unflatten, (16,)),
    "view_cnn2d": (_ViewFlatten, (2, 6, 6)),
    "reshape_cnn1d": (_ReshapeInput, (32,)),
}


def _export(model: nn.Module, shape: tuple[int, ...], path: Path, dynamo: bool) -> str:
    """`model` exported with a dynamic batch axis (traced at batch 2)."""
    x = torch.randn(2, *shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dims = ({0: torch.export.Dim("batch")},)
            torch.onnx.export(model.eval(), (x,), str(path), dynamo=True, dynamic_shapes=dims)
        else:
            axes = {"x": {0: "batch"}}
            torch.onnx.export(
                model.eval(), (x,), str(path), dynamo=False, input_names=["x"], dynamic_axes=axes
            )
    return str(path)


def _run_ort(path: str, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return [np.asarray(y) for y in sess.run(None, {sess.get_inputs()[0].name: x})]


def _assert_matches_ort(net: Net, path: str, shape: tuple[int, ...], index: int = 0) -> None:
    for b in BATCHES:
        x = np.random.default_rng(b).normal(size=(b, *shape)).astype(np.float32)
        want = _run_ort(path, x)[index]
        got = net(torch.from_numpy(x)).detach().numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("dynamo", [False, True])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_dynamic_batch_exports_become_nets(tmp_path: Path, name: str, dynamo: bool) -> None:
    make, shape = MODELS[name]
    model = make()
    path = _export(model, shape, tmp_path / f"{name}.onnx", dynamo)
    net = import_onnx(path, strict=True)
    assert isinstance(net, Net) and net.input_shape == shape
    assert net.num_params() == _num_params(model)
    _assert_matches_ort(net, path, shape)


def test_unflatten_exports_shape_arithmetic_that_is_folded(tmp_path: Path) -> None:
    path = _export(_unflatten(), (16,), tmp_path / "u.onnx", dynamo=False)
    types = {n.op_type for n in onnx.load(path).graph.node}
    assert {"Shape", "Slice", "Concat", "Mod"} <= types  # what the importer once refused
    net = import_onnx(path, strict=True)
    assert [op.kind for op in net.ops] == ["reshape", "conv1d", "act", "flatten", "linear"]
    assert net.ops[0].attrs == {"shape": [1, 16]}


def test_reshaped_input_keeps_exact_symmetries(tmp_path: Path) -> None:
    """Channels after a reshape are not permutable (fixed), the hidden ones still are; the
    default encoder reads the net and is invariant to its exact actions."""
    net = import_onnx(_export(_unflatten(), (16,), tmp_path / "u.onnx", dynamo=False))
    assert isinstance(net, Net)
    net = net.to(torch.float64)
    g = torch.Generator().manual_seed(0)
    moved = random_exact_action(net, g)
    x = torch.randn((8, 16), generator=g, dtype=torch.float64)
    assert_same_function(net, moved, x, rtol=1e-6)
    assert not torch.equal(moved.ops[1].params["weight"], net.ops[1].params["weight"])
    assert_invariant(load_encoder("default"), net.to(torch.float32), g)


def test_two_outputs_read_the_first_or_the_named_one(tmp_path: Path) -> None:
    model = _TwoHeads()
    path = _export(model, (5,), tmp_path / "two.onnx", dynamo=False)
    names = [o.name for o in onnx.load(path).graph.output]
    net = import_onnx(path, strict=True)
    assert isinstance(net, Net)
    assert net.meta["other_outputs"] == names[1:]
    assert net.meta["file_num_params"] == _num_params(model)
    assert net.num_params() == _num_params(model.body) + _num_params(model.a)
    _assert_matches_ort(net, path, (5,), index=0)
    second = import_onnx(path, strict=True, output=names[1])
    assert isinstance(second, Net) and second.meta["other_outputs"] == names[:1]
    _assert_matches_ort(second, path, (5,), index=1)


# -- hand-built graphs -------------------------------------------------------------------------
def _branch(name: str, w: np.ndarray) -> onnx.GraphProto:
    """``x @ w`` with `w` an initializer of the branch; `x` is read from the outer scope."""
    return helper.make_graph(
        [helper.make_node("MatMul", ["x", f"{name}_w"], [f"{name}_y"])],
        name,
        [],
        [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(w.astype(np.float32), f"{name}_w")],
    )


def _save(
    tmp_path: Path,
    nodes: list[onnx.NodeProto],
    inits: dict[str, np.ndarray],
    out_shape: list[int | str],
) -> str:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(a, k) for k, a in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = str(tmp_path / "g.onnx")
    onnx.save(model, path)
    return path


def _if_model(tmp_path: Path, on_values: bool) -> tuple[str, int]:
    """``y = relu(If(cond, x @ W1, x @ W2))``; cond from the input's shape (``x.shape[1] ==
    4``) or, with `on_values`, from its values (``sum(x) > 0``)."""
    rng = np.random.default_rng(0)
    then, other = _branch("then", rng.normal(size=(4, 3))), _branch("else", rng.normal(size=(4, 3)))
    if on_values:
        cond = [
            helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
            helper.make_node("Greater", ["s", "zero"], ["c"]),
        ]
        inits = {"zero": np.array(0.0, np.float32)}
    else:
        cond = [
            helper.make_node("Shape", ["x"], ["shape"]),
            helper.make_node("Gather", ["shape", "one"], ["f"], axis=0),
            helper.make_node("Equal", ["f", "four"], ["c"]),
        ]
        inits = {"one": np.array(1, np.int64), "four": np.array(4, np.int64)}
    nodes = [
        *cond,
        helper.make_node("If", ["c"], ["h"], then_branch=then, else_branch=other),
        helper.make_node("Relu", ["h"], ["y"]),
    ]
    return _save(tmp_path, nodes, inits, ["batch", 3]), 2 * 4 * 3


def test_if_on_the_input_shape_is_inlined(tmp_path: Path) -> None:
    path, _ = _if_model(tmp_path, on_values=False)
    net = import_onnx(path, strict=True)
    assert isinstance(net, Net) and [op.kind for op in net.ops] == ["linear", "act"]
    assert net.num_params() == 4 * 3
    _assert_matches_ort(net, path, (4,))


def test_if_on_input_values_counts_the_weights_of_both_branches(tmp_path: Path) -> None:
    path, n = _if_model(tmp_path, on_values=True)
    ts = import_onnx(path)
    assert isinstance(ts, TensorSet)
    assert "If" in ts.meta["unsupported_ops"]
    assert ts.num_params() == n + 1  # the float threshold is an initializer too
    assert sorted(ts.tensors) == ["h/else_branch/else_w", "h/then_branch/then_w", "zero"]


def test_reshape_target_from_input_values_is_refused(tmp_path: Path) -> None:
    """A Reshape whose target comes from ``ReduceMax(x)`` depends on the input's values: it
    must never be folded (at zero inputs it would look constant)."""
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
        helper.make_node("Cast", ["m"], ["mi"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["mi", "zero"], ["mv"]),
        helper.make_node("Concat", ["minus1", "mv"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = {"zero": np.array([0], np.int64), "minus1": np.array([-1], np.int64)}
    path = _save(tmp_path, nodes, inits, ["batch", "n"])
    with pytest.raises(UnsupportedOpError, match="ReduceMax") as err:
        import_onnx(path, strict=True)
    assert path in str(err.value) and "\n" not in str(err.value)


def test_batch_sized_tensor_is_refused_naming_its_op(tmp_path: Path) -> None:
    """``x + zeros(B, 4)``: the zeros vary with the batch size and are no shape."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("ConstantOfShape", ["s"], ["z"]),
        helper.make_node("Add", ["x", "z"], ["y"]),
    ]
    path = _save(tmp_path, nodes, {}, ["batch", 4])
    with pytest.raises(UnsupportedOpError, match=r"ConstantOfShape.*batch size") as err:
        import_onnx(path, strict=True)
    assert "\n" not in str(err.value)
