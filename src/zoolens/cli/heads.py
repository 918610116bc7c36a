"""``zoolens fit-head`` and ``zoolens predict``: a head of a user's own label on embeddings."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from zoolens.cli.app import app

_ENCODER_HELP = "Encoder name or saved directory; default: the one the head was fitted on."


def _value(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


@app.command("fit-head")
def fit_head_command(
    zoo: str = typer.Option(..., "--zoo", "-z", help="The zoo directory (its manifest)."),
    label: str = typer.Option(..., "--label", "-l", help="The manifest column to predict."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to save the head in."),
    encoder: str = typer.Option(
        "default", "--encoder", "-e", help="Encoder name or saved encoder directory."
    ),
    kind: str = typer.Option(
        "auto", "--kind", help="auto (float columns regress, others classify), classify, regress."
    ),
    hidden: int = typer.Option(0, "--hidden", min=0, help="Hidden units (0: a linear head)."),
    threads: int = typer.Option(
        1, "--threads", min=1, help="Torch threads (1: small fits gain nothing from more)."
    ),
) -> None:
    """Fit a classifier or regressor of LABEL on the frozen embeddings of a zoo's models.

    The train split fits it, the val split chooses its L2 weight and gives the score
    printed beside the trivial baseline (majority class, or the train mean).
    """
    from zoolens.errors import HeadError
    from zoolens.train.heads import fit_head

    if kind not in ("auto", "classify", "regress"):
        raise HeadError(f"--kind {kind!r}; use auto, classify or regress")
    head = fit_head(
        zoo, label, encoder, kind=kind, hidden=hidden, progress=sys.stderr.isatty(), threads=threads
    )
    head.save(str(out))
    c = head.config
    baseline = "majority class" if c.kind == "classify" else "train mean"
    what = f"{len(c.classes)} classes" if c.kind == "classify" else "regression"
    typer.echo(
        f"head {c.label!r} ({what}) on {c.encoder_id}: val {c.metric} {c.val_score:.4f} "
        f"({baseline} baseline {c.baseline_score:.4f}); {c.n_train} train / {c.n_val} val "
        f"models, weight decay {c.weight_decay:g} → {out}"
    )


@app.command("predict")
def predict_command(
    paths: list[str] = typer.Argument(..., help="Checkpoints: zoolens dirs, .onnx, .pt, ..."),
    head: str = typer.Option(..., "--head", "-H", help="A head directory (zoolens fit-head)."),
    encoder: str | None = typer.Option(None, "--encoder", "-e", help=_ENCODER_HELP),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object per line: path, label, prediction, probability."
    ),
) -> None:
    """Predict a head's label for each PATH: one line per model, in input order."""
    from zoolens.errors import LoadError
    from zoolens.nn import Head, load_encoder

    fitted = Head.load(head)
    source = encoder or fitted.config.encoder_source
    if source is None:
        raise LoadError(f"{head}: the head does not record its encoder; pass --encoder")
    enc = load_encoder(source)
    fitted.check_encoder(enc.id)
    z = enc.encode(paths, progress=not as_json and sys.stderr.isatty())
    predictions = fitted.predict(z, encoder_id=enc.id)
    proba = fitted.predict_proba(z, enc.id) if fitted.config.kind == "classify" else None
    for i, (path, pred) in enumerate(zip(paths, predictions, strict=True)):
        row: dict[str, Any] = {
            "path": path,
            "label": fitted.config.label,
            "prediction": _value(pred),
        }
        if proba is not None:
            row["probability"] = round(float(proba[i].max()), 6)
        if as_json:
            typer.echo(json.dumps(row))
        elif proba is not None:
            typer.echo(f"{path}\t{_value(pred)}\t(p={proba[i].max():.3f})")
        else:
            typer.echo(f"{path}\t{float(pred):.6g}")
