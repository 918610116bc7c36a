"""Fit a head of a zoo's own label on a frozen encoder: `fit_head(zoo, label, encoder)`.

The zoo's ``train`` split fits the head, its ``val`` split chooses the L2 weight and gives
the reported score beside a trivial baseline (majority class / train mean). The ``test``
split is not read. Rows whose label is missing (NaN, None, or the manifest's default for
the column: ``""`` for text, ``-1`` for integers) are left out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from zoolens.errors import HeadError
from zoolens.nn.base import Encoder
from zoolens.nn.heads import WEIGHT_DECAYS, Head, fit_head_on_embeddings, infer_kind
from zoolens.zoo import Zoo
from zoolens.zoo.manifest import COLUMNS

log = logging.getLogger(__name__)

#: Columns that name or place a model rather than describe it.
NOT_LABELS = ("id", "split", "parent", "index")
_MISSING = {"str": "", "int": -1}


def _present(column: pd.Series, label: str) -> np.ndarray:
    """True where the label is given."""
    missing = column.isna()
    default = _MISSING.get(COLUMNS.get(label, ""))
    if default is not None:
        missing = missing | column.eq(default)
    return np.asarray(~missing.to_numpy(dtype=bool))


def label_rows(zoo: Zoo, label: str, split: str) -> pd.DataFrame:
    """Manifest rows of `split` whose `label` is given.

    Raises:
        HeadError: `label` is not a manifest column, or the zoo has no ``split`` column.
    """
    m = zoo.manifest
    if label not in m.columns or label in NOT_LABELS:
        usable = sorted(c for c in m.columns if c not in NOT_LABELS)
        raise HeadError(f"{zoo.path}: no label column {label!r} in the manifest; columns: {usable}")
    if "split" not in m.columns:
        raise HeadError(f"{zoo.path}: the manifest has no 'split' column (train / val / test)")
    rows = m[m["split"].eq(split)]
    return rows[_present(rows[label], label)].reset_index(drop=True)


def _embed(
    zoo: Zoo,
    rows: pd.DataFrame,
    encoder: Encoder,
    batch_size: int,
    progress: bool,
    threads: int | None,
) -> np.ndarray:
    paths = [zoo.model_path(str(i)) for i in rows["id"]]
    return encoder.encode(paths, batch_size=batch_size, progress=progress, threads=threads)


def fit_head(
    zoo: Zoo | str | os.PathLike[str],
    label: str,
    encoder: Encoder | str = "default",
    *,
    kind: str = "auto",
    hidden: int = 0,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    steps: int = 200,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = False,
    threads: int | None = None,
) -> Head:
    """Fit a classifier or regressor of manifest column `label` on frozen embeddings.

    Args:
        zoo: a `Zoo` or its directory.
        label: the manifest column to predict (``task``, ``family``, ``accuracy``...).
        encoder: an `Encoder`, or a name / saved directory for `zoolens.nn.load_encoder`
            (recorded in the head, so `zoolens predict` finds the encoder again).
        kind: ``"auto"`` (float columns regress, text / bool / integer columns classify),
            ``"classify"`` or ``"regress"``.
        hidden: hidden units of the head (0: linear).
        weight_decays: L2 weights tried; the best on the val split is kept.
        steps, seed: L-BFGS iterations and initialisation seed.
        batch_size, progress: of the embedding.
        threads: torch threads while embedding and fitting (restored after); None leaves
            the caller's.

    Returns:
        The `Head`; ``head.config.val_score`` and ``baseline_score`` hold the val split's
        accuracy or R² and the trivial predictor's.

    Raises:
        HeadError: unknown column, a split without labelled models, one class only.
    """
    from zoolens.nn.load import load_encoder

    zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(os.fspath(zoo))
    source = None
    if not isinstance(encoder, Encoder):
        source = os.path.abspath(encoder) if os.path.isdir(encoder) else encoder
        encoder = load_encoder(encoder)
    train, val = label_rows(zoo, label, "train"), label_rows(zoo, label, "val")
    for split, rows in (("train", train), ("val", val)):
        if len(rows) < 2:
            raise HeadError(
                f"{zoo.path}: {len(rows)} {split} model(s) with a {label!r} label; need at least 2"
            )
    y_train, y_val = train[label].to_numpy(), val[label].to_numpy()
    kind = infer_kind(y_train) if kind == "auto" else kind
    if kind == "classify" and len(set(y_train.tolist())) < 2:
        raise HeadError(
            f"{zoo.path}: label {label!r} has one class ({y_train[0]!r}) in the train split; "
            "a classifier needs at least 2"
        )
    z_train = _embed(zoo, train, encoder, batch_size, progress, threads)
    z_val = _embed(zoo, val, encoder, batch_size, progress, threads)
    head = fit_head_on_embeddings(
        z_train,
        y_train,
        z_val,
        y_val,
        label=label,
        encoder_id=encoder.id,
        kind=kind,
        hidden=hidden,
        weight_decays=weight_decays,
        steps=steps,
        seed=seed,
        encoder_source=source,
        threads=threads,
    )
    c = head.config
    log.info(
        "head %s (%s): val %s %.3f, baseline %.3f, weight decay %g",
        label,
        c.kind,
        c.metric,
        c.val_score,
        c.baseline_score,
        c.weight_decay,
    )
    return head
