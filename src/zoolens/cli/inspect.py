"""``zoolens inspect PATH``: what zoolens reads from a checkpoint, layer by layer."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from zoolens.cli.app import app
from zoolens.errors import LoadError, ZoolensError

INPUTS_OPTION: Any = typer.Option(
    None,
    "--inputs",
    metavar="NAMES",
    help="Model inputs the net reads, comma-separated: input_ids (the default) or "
    "input_ids,attention_mask (Hugging Face text models: the mask becomes a second input).",
)

if TYPE_CHECKING:
    from zoolens.ir.net import Net
    from zoolens.ir.tensorset import TensorSet


@app.command("inspect")
def inspect_command(
    path: str = typer.Argument(
        ..., help="A zoolens net directory, .onnx, .safetensors, .pt/.pth/.bin/.ckpt file."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    strict: bool = typer.Option(
        False, "--strict", help="Fail on ONNX ops the IR cannot represent."
    ),
    input_shape: str | None = typer.Option(
        None, "--input-shape", help="Input shape without batch, e.g. 1,28,28."
    ),
    inputs: str | None = INPUTS_OPTION,
) -> None:
    """Print the layers (op, output shape, parameters) and the parameter count."""
    from zoolens.ir.load import load_net
    from zoolens.ir.net import Net

    shape = parse_shape(input_shape) if input_shape else None
    names = parse_inputs(inputs) if inputs else None
    obj = load_net(path, input_shape=shape, strict=strict, inputs=names)
    report = net_report(obj, shape) if isinstance(obj, Net) else tensorset_report(obj)
    report = {"path": path, **report}
    typer.echo(json.dumps(report, indent=1, default=str) if as_json else format_report(report))


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,28,28"`` → ``(1, 28, 28)``.

    Raises:
        ZoolensError: the text is not comma-separated positive integers.
    """
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise ZoolensError(
            f"--input-shape {text!r}: expected positive integers separated by "
            "commas, such as 1,28,28"
        )
    return shape


def parse_inputs(text: str) -> tuple[str, ...]:
    """``"input_ids,attention_mask"`` → ``("input_ids", "attention_mask")``, one of the input
    sets `zoolens.ir.hf_import.INPUTS` names.

    Raises:
        ZoolensError: another list of names.
    """
    from zoolens.ir.hf_import import INPUTS

    names = tuple(s.strip() for s in text.split(","))
    if names not in INPUTS:
        known = " or ".join(",".join(n) for n in INPUTS)
        raise ZoolensError(f"--inputs {text!r}: expected {known}")
    return names


def net_report(net: Net, input_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Layers of `net` with their output shapes (for batch size 1) and parameters.

    Args:
        net: the network.
        input_shape: run it on this input shape instead of its own.
    """
    if input_shape is not None and tuple(input_shape) != tuple(net.input_shape):
        net = net.clone()
        net.input_shape = tuple(input_shape)
    try:
        infos = net.value_infos()
    except (RuntimeError, ValueError) as e:
        raise LoadError(
            f"the net does not run on input shape {net.input_shape} "
            f"({str(e).splitlines()[0][:200]})"
        ) from None
    layers = []
    for row, op in zip(net.summary(), net.ops, strict=True):
        info = infos[op.output]
        layers.append(
            {
                **row,
                "kind": op.kind,
                "activation": op.fn if op.kind == "act" else None,
                "output_shape": [info.units, *info.spatial],
                "attrs": op.attrs,
            }
        )
    return {
        "kind": "Net",
        "input_shape": list(net.input_shape),
        "extra_inputs": list(net.extra_inputs),
        "num_params": net.num_params(),
        "meta": net.meta,
        "layers": layers,
    }


def tensorset_report(ts: TensorSet) -> dict[str, Any]:
    """Tensors of `ts` with shapes, dtypes and parameter counts."""
    return {
        "kind": "TensorSet",
        "num_params": ts.num_params(),
        "meta": ts.meta,
        "tensors": ts.summary(),
    }


def format_report(report: dict[str, Any]) -> str:
    """Human-readable table of a `net_report` / `tensorset_report`."""
    lines = [f"{report['path']}: read as {report['kind']}"]
    if report["kind"] == "Net":
        lines[0] += (
            f" (importer: {report['meta'].get('importer', 'zoolens')}), "
            f"input shape {tuple(report['input_shape'])}"
        )
        if report.get("extra_inputs"):
            lines[0] += f", also reads {', '.join(report['extra_inputs'])}"
        rows: list[tuple[str, ...]] = [("name", "op", "activation", "output", "params", "count")]
        rows += [
            (
                r["name"],
                r["kind"],
                r["activation"] or "-",
                _shape(r["output_shape"]),
                _params(r["params"]),
                f"{r['num_params']:,}",
            )
            for r in report["layers"]
        ]
    else:
        lines[0] += " (weights without wiring)"
        rows = [("name", "shape", "dtype", "count")]
        rows += [
            (t["name"], _shape(t["shape"]), t["dtype"], f"{t['num_params']:,}")
            for t in report["tensors"]
        ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += [
        "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    lines.append(f"total parameters: {report['num_params']:,}")
    if report["meta"].get("unsupported_ops"):
        lines.append(
            f"unsupported ops: {', '.join(report['meta']['unsupported_ops'])} "
            f"({report['meta'].get('reason', '')})"
        )
    elif report["meta"].get("reason"):
        lines.append(f"not read as a network: {report['meta']['reason']}")
    return "\n".join(lines)


def _shape(shape: list[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _params(params: dict[str, list[int]]) -> str:
    return (
        ", ".join(f"{k} {'x'.join(str(s) for s in v) or 'scalar'}" for k, v in params.items())
        or "-"
    )
