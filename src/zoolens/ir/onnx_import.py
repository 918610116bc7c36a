"""Import an ONNX file into a `Net` (or, when its ops exceed the IR, a `TensorSet`).

Reads files from both torch exporters (TorchScript-based ``dynamo=False`` and the default
dynamo exporter) and produces the same op kinds, attributes and parameter roles as
`zoolens.ir.fx_import`, so nets from either importer are interchangeable. Uses the ``onnx``
package only: its reference evaluator runs the part of the graph that does not depend on the
input's values (shape arithmetic), never the network itself.
"""

from __future__ import annotations

import logging
import os

import onnx

from zoolens.errors import LoadError, UnsupportedOpError
from zoolens.ir._onnx_graph import OnnxGraph, Unsupported
from zoolens.ir._onnx_ops import KNOWN_OPS, Builder
from zoolens.ir._onnx_patterns import rewrite
from zoolens.ir._onnx_weights import file_weights
from zoolens.ir.net import Net
from zoolens.ir.tensorset import TensorSet
from zoolens.ir.weights import file_size

logger = logging.getLogger(__name__)


def import_onnx(path: str, strict: bool = False, output: str | None = None) -> Net | TensorSet:
    """Read an ONNX model file.

    Everything that does not depend on the input's values (shape arithmetic of dynamic-batch
    exports, constant subgraphs, ``If`` on a constant condition) is evaluated first; the rest
    is translated op by op.

    Args:
        path: a ``.onnx`` file; the data path read runs from one input ``(B, *input_shape)``
            to one output.
        strict: raise `UnsupportedOpError` when the graph uses ops the IR cannot represent,
            instead of returning its float weights as a `TensorSet` with a warning.
        output: the graph output to read; default the first. The others are listed in
            ``meta["other_outputs"]`` (with a warning).

    Returns:
        A `Net` computing what the file computes, or a `TensorSet` of the file's float
        weights (initializers, also those of ``If``/``Loop``/``Scan`` subgraphs, and
        non-scalar float constants, in file order) with ``meta["unsupported_ops"]``.

    Raises:
        LoadError: the file is empty, truncated, corrupt or not an ONNX model.
        InvalidWeightsError: a tensor holds NaN or Inf.
        UnsupportedOpError: with ``strict=True``, for ops the IR lacks.
    """
    path = os.fspath(path)
    model = _read_model(path)
    graph: OnnxGraph | None = None
    try:
        graph = OnnxGraph(model, path, output)
        if graph.other_outputs:
            logger.warning(
                "%s: %d graph outputs; reading the data path of %r, not of %s",
                path,
                len(graph.other_outputs) + 1,
                graph.output,
                ", ".join(map(repr, graph.other_outputs)),
            )
        return _translate(graph, model)
    except Unsupported as e:
        if strict:
            raise UnsupportedOpError(
                f"{path}: unsupported ONNX op(s) {', '.join(e.op_types)}{_on(graph)}: "
                f"{e.detail}; without --strict/strict=True zoolens reads its weights as a "
                "TensorSet"
            ) from None
        logger.warning(
            "%s: ONNX op(s) %s%s cannot be represented (%s); reading its weights "
            "without wiring (TensorSet)",
            path,
            ", ".join(e.op_types),
            _on(graph),
            e.detail,
        )
        return _tensor_set(model, graph, path, e)


def _on(graph: OnnxGraph | None) -> str:
    """`` on the path to output 'y'`` when the file has several outputs, else ``""``."""
    return f" on the path to output {graph.output!r}" if graph and graph.other_outputs else ""


def _read_model(path: str) -> onnx.ModelProto:
    file_size(path, ", not an ONNX model")
    try:
        model = onnx.load(path)
    except Exception as e:  # protobuf DecodeError, external-data errors, ...
        raise LoadError(
            f"{path}: not a readable ONNX model, the file is corrupt or "
            f"truncated ({_first_line(e)})"
        ) from None
    if not model.graph.node:
        raise LoadError(
            f"{path}: no graph nodes; the file is truncated, corrupt or not an ONNX model"
        )
    try:
        # The checker serialises its argument; beyond protobuf's 2 GB it must read the file.
        onnx.checker.check_model(path if model.ByteSize() >= 2**31 else model)
    except Exception as e:  # onnx.checker.ValidationError and friends
        raise LoadError(f"{path}: invalid ONNX model ({_first_line(e)})") from None
    return model


def _translate(graph: OnnxGraph, model: onnx.ModelProto) -> Net:
    rewrite(graph)
    unknown = {
        f"{n.domain}::{n.op_type}" if n.domain else n.op_type
        for n in graph.nodes
        if n.op_type not in KNOWN_OPS or n.domain
    }
    if unknown:
        raise Unsupported(unknown, "the IR has no equivalent")
    ops, output = Builder(graph).build()
    net = Net(
        ops=ops,
        input_shape=_input_shape(graph),
        input="input",
        output=output,
        meta=_meta(graph, model),
    )
    _check_runs(net, graph)
    return net


def _input_shape(graph: OnnxGraph) -> tuple[int, ...]:
    shape = graph.shape(graph.input)
    if shape is None or len(shape) < 2 or any(d is None for d in shape[1:]):
        raise Unsupported(
            ["<input>"],
            f"input {graph.input!r} has shape {shape}; zoolens "
            "needs (batch, features...) with fixed non-batch sizes",
        )
    return tuple(int(d) for d in shape[1:] if d is not None)


def _meta(graph: OnnxGraph, model: onnx.ModelProto) -> dict[str, object]:
    opsets = {o.domain or "ai.onnx": int(o.version) for o in model.opset_import}
    producer = f"{model.producer_name} {model.producer_version}".strip()
    meta: dict[str, object] = {
        "importer": "onnx",
        "source": graph.path,
        "producer": producer,
        "opset": opsets.get("ai.onnx", 0),
    }
    if graph.other_outputs:
        meta["output"] = graph.output
        meta["other_outputs"] = list(graph.other_outputs)
        meta["file_num_params"] = sum(int(t.numel()) for t in file_weights(model).values())
    return meta


def _check_runs(net: Net, graph: OnnxGraph) -> None:
    """Run the net once; its output shape must be the one the file declares."""
    try:
        info = net.value_infos()[net.output]
    except (RuntimeError, ValueError, UnsupportedOpError) as e:
        raise Unsupported(
            ["<graph>"],
            f"the translated network does not run on input shape "
            f"{net.input_shape} ({_first_line(e)})",
        ) from None
    declared = graph.shape(graph.output)
    got = (info.units, *info.spatial)
    if declared is None or any(d is None for d in declared[1:]):
        return
    if tuple(declared[1:]) != got:
        raise Unsupported(
            ["<graph>"],
            f"the translated network outputs shape {got}, the file declares {tuple(declared[1:])}",
        )


def _tensor_set(
    model: onnx.ModelProto, graph: OnnxGraph | None, path: str, e: Unsupported
) -> TensorSet:
    meta: dict[str, object] = {
        "source": path,
        "format": "onnx",
        "unsupported_ops": e.op_types,
        "reason": e.detail,
    }
    if graph is not None and graph.other_outputs:
        meta["output"], meta["other_outputs"] = graph.output, list(graph.other_outputs)
    ts = TensorSet(file_weights(model, path), meta)
    ts.check_finite(path)
    return ts


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:200]
