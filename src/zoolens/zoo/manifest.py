"""The manifest of a zoo: one Parquet row per model, with a fixed schema.

Columns (dtype): see `COLUMNS`. Conventions:

- ``accuracy`` is test accuracy for classification and NaN otherwise; regression models
  report ``test_loss`` (MSE, standardised targets) and ``r2``; INRs report ``psnr`` and
  ``test_loss`` (MSE over the image) and their digit in ``label``.
- ``parent`` is the id of the model a fine-tune started from (``""`` if none) and
  ``finetune`` how (``continue`` or ``head``).
- ``split`` (train / val / test, 70 / 15 / 15) is a seeded hash of the lineage root's id,
  so a fine-tuned child always sits in its parent's split.
- ``input_shape`` is written ``"1x8x8"``.
- ``num_params`` counts trainable parameters (BatchNorm running statistics excluded).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: column → dtype kind: "str", "int" (int64) or "float" (float64).
COLUMNS: dict[str, str] = {
    "id": "str",
    "task": "str",
    "dataset": "str",
    "kind": "str",
    "family": "str",
    "arch": "str",
    "num_params": "int",
    "lr": "float",
    "optimizer": "str",
    "weight_decay": "float",
    "epochs": "int",
    "batch_size": "int",
    "dropout": "float",
    "init_scale": "float",
    "label_noise": "float",
    "train_fraction": "float",
    "activation": "str",
    "depth": "int",
    "width": "int",
    "seed": "int",
    "accuracy": "float",
    "test_loss": "float",
    "r2": "float",
    "psnr": "float",
    "label": "int",
    "image_index": "int",
    "steps": "int",
    "parent": "str",
    "finetune": "str",
    "split": "str",
    "input_shape": "str",
    "n_outputs": "int",
    "index": "int",
}

_DEFAULTS = {"str": "", "int": -1, "float": math.nan}
MANIFEST_FILE = "manifest.parquet"


def assign_split(root_id: str, seed: int, fractions: tuple[float, float] = (0.70, 0.15)) -> str:
    """``train`` / ``val`` / ``test`` from a seeded hash of `root_id`.

    Args:
        root_id: id of the lineage root (the model itself if it has no parent).
        seed: the zoo seed.
        fractions: train and val fractions; the rest is test.
    """
    h = hashlib.sha256(f"zoolens-split:{seed}:{root_id}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    if u < fractions[0]:
        return "train"
    return "val" if u < fractions[0] + fractions[1] else "test"


def complete_row(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with every column of `COLUMNS`, missing ones filled with their default."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise KeyError(f"manifest row has unknown columns {sorted(unknown)}")
    return {c: row.get(c, _DEFAULTS[k]) for c, k in COLUMNS.items()}


def rows_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A manifest DataFrame with the schema's column order and dtypes, sorted by ``index``."""
    import pandas as pd

    df = pd.DataFrame([complete_row(r) for r in rows], columns=list(COLUMNS))
    for col, kind in COLUMNS.items():
        if kind == "int":
            df[col] = df[col].astype("int64")
        elif kind == "float":
            df[col] = df[col].astype("float64")
        else:
            df[col] = df[col].astype(str)
    return df.sort_values("index", kind="stable").reset_index(drop=True)


def write_manifest(df: pd.DataFrame, zoo_dir: str) -> str:
    """Write `df` to ``zoo_dir/manifest.parquet`` atomically (temp file + rename).

    Returns:
        The manifest's path.
    """
    path = os.path.join(zoo_dir, MANIFEST_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def read_manifest(zoo_dir: str) -> pd.DataFrame:
    """Read ``zoo_dir/manifest.parquet`` into a DataFrame."""
    import pandas as pd

    return pd.read_parquet(os.path.join(zoo_dir, MANIFEST_FILE))


def count_params(net: Any) -> int:
    """Trainable parameters of a `Net`: every tensor but BatchNorm running statistics
    (`zoolens.ir.Net.trainable_params`)."""
    return int(net.trainable_params())


def shape_str(shape: tuple[int, ...]) -> str:
    """``(1, 8, 8)`` → ``"1x8x8"``."""
    return "x".join(str(s) for s in shape)


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1x8x8"`` → ``(1, 8, 8)``."""
    return tuple(int(s) for s in str(text).split("x") if s)


def kept(
    manifest: pd.DataFrame, exclude_tasks: Sequence[str] = (), exclude_families: Sequence[str] = ()
) -> pd.Series:
    """True for the rows of `manifest` whose task and family are both not excluded."""
    return ~manifest["task"].isin(list(exclude_tasks)) & ~manifest["family"].isin(
        list(exclude_families)
    )
