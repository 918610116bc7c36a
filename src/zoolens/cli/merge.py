"""``zoolens align REF MODEL --out OUT`` and ``zoolens merge A B --out OUT``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer

from zoolens.cli.app import app
from zoolens.errors import LoadError, ZoolensError

if TYPE_CHECKING:
    import numpy as np

    from zoolens.ir.net import Net

_NET_HELP = "A zoolens net directory or an .onnx file."
_OUT_HELP = (
    "Where to write the result: a .onnx file, or a directory (zoolens format: arch.json + "
    "model.safetensors)."
)


def _load(path: str, what: str) -> Net:
    from zoolens.ir.load import load_net
    from zoolens.ir.net import Net

    net = load_net(path)
    if not isinstance(net, Net):
        raise LoadError(
            f"{what} {path}: weights without wiring; align and merge need a net "
            "(a zoolens directory or an .onnx file)"
        )
    return net


def _load_data(path: str | None) -> np.ndarray | None:
    if path is None:
        return None
    import numpy as np

    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as e:
        raise LoadError(f"--data {path}: not a readable .npy array ({e})") from None


def _check_out(out: str) -> None:
    """OUT is written as ONNX (``.onnx``) or a zoolens directory; refuse anything else
    before any work."""
    if os.path.isfile(out) and not out.lower().endswith(".onnx"):
        raise ZoolensError(
            f"--out {out}: a file that is not .onnx; give a .onnx path or a directory"
        )


def _save(net: Net, out: str) -> None:
    if out.lower().endswith(".onnx"):
        from zoolens.ir.onnx_export import export_onnx

        export_onnx(net, out)
    else:
        net.save(out)
    typer.echo(f"wrote {out}")


@app.command("align")
def align_command(
    ref: str = typer.Argument(..., help=f"The reference net. {_NET_HELP}"),
    model: str = typer.Argument(..., help=f"The net to align to REF. {_NET_HELP}"),
    out: str = typer.Option(..., "--out", "-o", help=_OUT_HELP),
    method: str = typer.Option("weights", "--method", help="weights | activations"),
    data: str | None = typer.Option(
        None, "--data", help="Inputs (n, *input_shape) .npy for activation matching."
    ),
) -> None:
    """Permute (and rescale, where exact) MODEL's units to match REF; OUT computes MODEL's
    function."""
    from zoolens.merge import align

    if method not in ("weights", "activations"):
        raise ZoolensError(f"--method {method!r}: expected weights or activations")
    _check_out(out)
    a, b = _load(ref, "REF"), _load(model, "MODEL")
    _save(align(a, b, method=method, data=_load_data(data)), out)  # type: ignore[arg-type]


@app.command("merge")
def merge_command(
    a: str = typer.Argument(..., help=f"First net. {_NET_HELP}"),
    b: str = typer.Argument(..., help=f"Second net, same architecture. {_NET_HELP}"),
    out: str = typer.Option(..., "--out", "-o", help=_OUT_HELP),
    alpha: float = typer.Option(0.5, "--alpha", min=0.0, max=1.0, help="Weight of B."),
    method: str = typer.Option(
        "aligned", "--method", help="aligned | naive | task-arithmetic | ties"
    ),
    base: str | None = typer.Option(
        None, "--base", help="Common parent of A and B (task-arithmetic, ties)."
    ),
    lam: float = typer.Option(1.0, "--lambda", help="Task-vector scale (task-arithmetic, ties)."),
    density: float = typer.Option(
        0.2, "--density", min=0.0, max=1.0, help="Fraction of each task vector TIES keeps."
    ),
    data: str | None = typer.Option(
        None, "--data", help="Inputs .npy for BatchNorm statistics (default: probe inputs)."
    ),
    repair: bool = typer.Option(
        False, "--repair", help="aligned/naive: REPAIR every hidden unit's statistics on --data."
    ),
) -> None:
    """Merge A and B into one net of their architecture."""
    from zoolens.merge import METHODS, merge

    if method not in METHODS:
        raise ZoolensError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    _check_out(out)
    net_a, net_b = _load(a, "A"), _load(b, "B")
    parent = _load(base, "BASE") if base is not None else None
    merged = merge(
        net_a,
        net_b,
        alpha=alpha,
        method=method,  # type: ignore[arg-type]
        base=parent,
        data=_load_data(data),
        lam=lam,
        density=density,
        repair=repair,
    )
    _save(merged, out)
