"""``zoolens train``: contrastive training of an encoder on a zoo; ``zoolens fit-quality``
and ``zoolens fit-function``: fitting its quality head and its function head afterwards."""

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
    zoo: str = typer.Option(..., "--zoo", help="zoo directory (manifest.parquet + models/)"),
    out: str = typer.Option(..., "--out", help="run directory: checkpoints, metrics.csv"),
    encoder: str = typer.Option("neural-graph", help="neural-graph | layerwise | flat-transformer"),
    positives: str = typer.Option("task", help="augment | task (same-task siblings too)"),
    lam: float = typer.Option(0.8, help="weight of the contrastive loss vs accuracy MSE"),
    tau: float = typer.Option(0.1, help="temperature"),
    epochs: int = typer.Option(20),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(1e-3),
    weight_decay: float = typer.Option(1e-4),
    probes: int = typer.Option(
        -1, help="probe inputs per node (neural-graph); 0 = none; -1 = the encoder's default"
    ),
    probe_kind: str = typer.Option(
        "", help="probe inputs: sobol, smooth, normal or structured (neural-graph); empty = default"
    ),
    hidden: int = typer.Option(32, help="encoder width (node states)"),
    readout_hidden: int = typer.Option(
        0, help="width of the per-output readout MLP (neural-graph); 0 = twice --hidden"
    ),
    output_linear: int = typer.Option(
        -1, help="outputs read side by side by a linear map (neural-graph); -1 = default"
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
) -> None:
    """Train an encoder; the best one (by validation mAP) is written to OUT/best."""
    from zoolens.train import TrainConfig, train_encoder

    enc_cfg: dict[str, object] = {"hidden": hidden}
    if encoder == "neural-graph":
        enc_cfg.update(_graph_options(readout_hidden, output_linear, probes, probe_kind))
    cfg = TrainConfig(
        encoder=encoder,
        encoder_config=enc_cfg,
        positives=positives,  # type: ignore[arg-type]
        lam=lam,
        tau=tau,
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


def _graph_options(
    readout_hidden: int, output_linear: int, probes: int, probe_kind: str
) -> dict[str, object]:
    """The neural-graph encoder options given on the command line (the rest: its defaults)."""
    options: dict[str, object] = {}
    if readout_hidden > 0:
        options["readout_hidden"] = readout_hidden
    if output_linear >= 0:
        options["output_linear"] = output_linear
    if probes >= 0:
        options["n_probes"] = probes
    if probe_kind:
        from zoolens.graph.build import PROBE_KINDS

        if probe_kind not in PROBE_KINDS:
            raise fail(f"--probe-kind: {probe_kind!r} is none of {', '.join(PROBE_KINDS)}")
        options["probes"] = probe_kind
    return options


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


@app.command("fit-function")
def fit_function(
    zoo: str = typer.Option(..., "--zoo", help="zoo with train/val splits"),
    encoder: str = typer.Option(..., help="a trained neural-graph encoder (name or directory)"),
    out: str = typer.Option(..., "--out", help="directory for the encoder with its head"),
    weight: float = typer.Option(0.4, help="the head's weight in the embedding's cosine"),
    fingerprint: float = typer.Option(
        -1.0, help="the fingerprint's weight; -1 keeps the encoder's"
    ),
    fingerprint_norm: str = typer.Option(
        "", help="none | centre | zscore: the fingerprint's per-output norm; empty keeps it"
    ),
    exclude_tasks: str = typer.Option("", help="comma-separated tasks kept out of the fit"),
    exclude_families: str = typer.Option(
        "", help="comma-separated architecture families kept out of the fit"
    ),
    steps: int = typer.Option(1500),
    tau: float = typer.Option(0.05, help="temperature (contrastive head)"),
    seed: int = typer.Option(0),
    head: str = typer.Option(
        "contrastive",
        help="contrastive (the function head) | class (the class head) | render (the "
        "render head: a classifier of the INRs' drawings)",
    ),
) -> None:
    """Fit a neural-graph encoder's function head (a learned map of its fingerprint), its
    class head (a classifier of it) or its render head (a classifier of the drawings of
    coordinate nets) on a zoo, the encoder frozen; prints validation mAP before and
    after."""
    from zoolens.nn import NeuralGraphEncoder, load_encoder
    from zoolens.train.function import fit_class_head, fit_function_head, fit_render_head

    if head not in ("contrastive", "class", "render"):
        raise fail(f"--head {head!r}: expected contrastive, class or render")
    enc = load_encoder(encoder)
    if not isinstance(enc, NeuralGraphEncoder):
        raise fail(f"--encoder {encoder}: {enc.name!r} is not a neural-graph encoder")
    if fingerprint_norm:
        try:
            enc = enc.with_fingerprint(float(enc.config["fingerprint"]), fingerprint_norm)
        except ValueError as e:
            raise fail(f"--fingerprint-norm: {e}") from None
    common: dict[str, Any] = {
        "exclude_tasks": _names(exclude_tasks),
        "exclude_families": _names(exclude_families),
        "steps": steps,
        "seed": seed,
    }
    fp = None if fingerprint < 0 else fingerprint  # the render head does not read it
    fits = {
        "contrastive": lambda: fit_function_head(enc, zoo, weight, fp, tau=tau, **common),
        "class": lambda: fit_class_head(enc, zoo, weight, fp, **common),
        "render": lambda: fit_render_head(enc, zoo, weight, **common),
    }
    _fit_and_save(
        fits[head],
        out,
        lambda r: {
            "n_train": r.n_train,
            "val_mAP_before": r.val_map_before,
            "val_mAP_after": r.val_map_after,
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
