"""``zoolens train``: contrastive training of an encoder on a zoo; ``zoolens fit-quality``:
refitting its quality head afterwards."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import typer

from zoolens.cli.app import app, fail

if TYPE_CHECKING:
    from zoolens.nn import Encoder


@app.command()
def train(
    zoo: list[str] = typer.Option(
        ...,
        "--zoo",
        help="zoo directory (manifest.parquet + models/); repeat for several (e.g. the shards "
        "of `zoolens zoo procedural`): their train splits train, their val splits choose",
    ),
    out: str = typer.Option(..., "--out", help="run directory: checkpoints, metrics.csv"),
    encoder: str = typer.Option("neural-graph", help="neural-graph | layerwise | flat-transformer"),
    positives: str = typer.Option("task", help="augment | task (same-task siblings too)"),
    lam: float = typer.Option(0.8, help="weight of the contrastive loss vs accuracy MSE"),
    tau: float = typer.Option(0.1, help="temperature"),
    functional: float = typer.Option(
        0.0, help="weight of the term making embedding cosines track the functions' cosines"
    ),
    epochs: int = typer.Option(20),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(1e-3),
    weight_decay: float = typer.Option(1e-4),
    probes: int = typer.Option(
        -1, help="probe inputs per node (neural-graph); 0 = none; -1 = the encoder's default"
    ),
    hidden: int = typer.Option(32, help="encoder width (node states)"),
    readout_hidden: int = typer.Option(
        0, help="width of the per-output readout MLP (neural-graph); 0 = twice --hidden"
    ),
    seed: int = typer.Option(0),
    patience: int = typer.Option(5, help="epochs without val-mAP gain before stopping"),
    max_minutes: float = typer.Option(30.0, help="wall-clock budget"),
    resume: bool = typer.Option(False, help="continue from OUT/last"),
    tensorboard: bool = typer.Option(
        False, help="also log the per-epoch metrics as TensorBoard scalars in OUT/tb ([train])"
    ),
    exclude_tasks: str = typer.Option("", help="comma-separated tasks kept out of training"),
    exclude_families: str = typer.Option(
        "", help="comma-separated architecture families kept out of training"
    ),
    init: str = typer.Option(
        "",
        help="fine-tune: start from this encoder (name or directory), keeping its "
        "architecture; its fingerprint weight is 0 while training",
    ),
) -> None:
    """Train an encoder; the best one (by validation mAP) is written to OUT/best."""
    from zoolens.train import TrainConfig, train_encoder

    enc_cfg: dict[str, object] = {"hidden": hidden}
    if encoder == "neural-graph":
        enc_cfg.update(_graph_options(readout_hidden, probes))
    if init:
        arch = {"encoder": encoder, "probes": probes, "hidden": hidden}
        given = [o for o, v in {**arch, "readout_hidden": readout_hidden}.items() if v != _ARCH[o]]
        if given:
            opts = ", ".join("--" + o.replace("_", "-") for o in given)
            raise fail(f"--init {init} keeps that encoder's architecture; drop {opts}")
        enc_cfg = {}
    else:
        _check_encoder_config(encoder, enc_cfg)
    cfg = TrainConfig(
        encoder=encoder,
        encoder_config=enc_cfg,
        positives=positives,  # type: ignore[arg-type]
        lam=lam,
        tau=tau,
        functional=functional,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        patience=patience,
        max_minutes=max_minutes,
        exclude_tasks=_names(exclude_tasks),
        exclude_families=_names(exclude_families),
        tensorboard=tensorboard,
        init=init,
    )
    result = train_encoder(zoo, out, cfg, resume=resume, progress=sys.stderr.isatty())
    typer.echo(
        json.dumps(
            {
                "best_epoch": result.best_epoch,
                "best_val_mAP": result.best_map,
                "encoder_dir": f"{out}/best",
            }
        )
    )


#: The architecture options of `train` and their defaults (refused beside ``--init``).
_ARCH: dict[str, object] = {
    "encoder": "neural-graph",
    "probes": -1,
    "hidden": 32,
    "readout_hidden": 0,
}


def _graph_options(readout_hidden: int, probes: int) -> dict[str, object]:
    """The neural-graph encoder options given on the command line (the rest: its defaults)."""
    options: dict[str, object] = {}
    if readout_hidden > 0:
        options["readout_hidden"] = readout_hidden
    if probes >= 0:
        options["n_probes"] = probes
    return options


def _check_encoder_config(name: str, options: dict[str, object]) -> None:
    """Refuse, as a one-line usage error, options the encoder's config does not accept."""
    from zoolens.errors import ZoolensError
    from zoolens.nn import encoder_class  # importing zoolens.nn registers every encoder

    try:
        encoder_class(name).config_class.from_dict(options, source=f"--encoder {name}")
    except ZoolensError as e:
        raise fail(str(e)) from None


def _names(text: str) -> tuple[str, ...]:
    """The non-empty names of a comma-separated list."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


@app.command("fit-quality")
def fit_quality(
    zoo: str = typer.Option(..., "--zoo", help="zoo with train/val splits and test metrics"),
    encoder: str = typer.Option("default", help="encoder name or directory (its head is refit)"),
    out: str = typer.Option(..., "--out", help="directory for the encoder with its new head"),
    stats: bool = typer.Option(
        True, help="the head also reads the function's output statistics (neural-graph)"
    ),
    steps: int = typer.Option(2000, help="optimiser steps per weight decay"),
    seed: int = typer.Option(0),
) -> None:
    """Refit an encoder's quality head (what `predict_quality` reads) on a zoo, the
    encoder frozen; the weight decay with the best validation R² is kept."""
    from zoolens.nn import load_encoder
    from zoolens.nn.torch_encoder import TorchEncoder
    from zoolens.train.quality import fit_quality_head

    enc = load_encoder(encoder)
    if not isinstance(enc, TorchEncoder):
        raise fail(f"--encoder {encoder}: {enc.name!r} has no trained quality head")
    _fit_and_save(
        lambda: fit_quality_head(enc, zoo, stats=stats, steps=steps, seed=seed),
        out,
        lambda r: {
            "weight_decay": r.weight_decay,
            "val_R2": r.val_r2,
            "n_train": r.n_train,
            "n_val": r.n_val,
        },
    )


class _Fit(Protocol):
    @property
    def encoder(self) -> Encoder: ...


F = TypeVar("F", bound=_Fit)


def _fit_and_save(fit: Callable[[], F], out: str, summary: Callable[[F], dict[str, Any]]) -> None:
    """Run `fit` (a ValueError becomes a one-line error), save its encoder to `out` (only
    then: an earlier result there stays on failure) and print `summary` of it as JSON."""
    try:
        result = fit()
    except ValueError as e:
        raise fail(str(e)) from None
    result.encoder.save(out)
    typer.echo(json.dumps({**summary(result), "encoder_dir": out}))
