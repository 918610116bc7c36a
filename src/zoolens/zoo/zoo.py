"""`Zoo`: a directory of nets in zoolens format plus a Parquet manifest, one row per model.

Layout::

    <zoo>/
      manifest.parquet       one row per model (schema: zoolens.zoo.manifest.COLUMNS)
      zoo.json               how it was made (preset and seed; absent for imported zoos)
      models/<id>/           arch.json + model.safetensors (zoolens.load_net) + row.json
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pandas as pd

from zoolens.errors import LoadError
from zoolens.ir import Net, load_net_dir
from zoolens.zoo.manifest import MANIFEST_FILE, read_manifest

ZOO_FILE = "zoo.json"
MODELS_DIR = "models"


class Zoo:
    """An opened zoo. Use `Zoo.open`.

    Args:
        path: the zoo directory.
        manifest: its manifest, one row per model.
        info: the content of ``zoo.json`` (empty if absent).
    """

    def __init__(self, path: str, manifest: pd.DataFrame, info: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.info = info

    @classmethod
    def open(cls, path: str) -> Zoo:
        """Open the zoo in directory `path`.

        Returns:
            The `Zoo`; ``zoo.manifest`` is a pandas DataFrame.
        """
        if not os.path.exists(os.path.join(path, MANIFEST_FILE)):
            raise LoadError(
                f"{path}: no {MANIFEST_FILE} (not a zoolens zoo; generate one with "
                "`zoolens zoo generate` or import one with zoolens.zoo.importers)"
            )
        info: dict[str, Any] = {}
        if os.path.exists(os.path.join(path, ZOO_FILE)):
            with open(os.path.join(path, ZOO_FILE)) as f:
                info = json.load(f)
        return cls(path, read_manifest(path), info)

    def __len__(self) -> int:
        return len(self.manifest)

    def __iter__(self) -> Iterator[tuple[Net, pd.Series]]:
        """Yield ``(net, row)`` for every model, in manifest order."""
        for _, row in self.manifest.iterrows():
            yield self.load(str(row["id"])), row

    def __repr__(self) -> str:
        return f"Zoo({self.path!r}, {len(self)} models)"

    def model_path(self, model_id: str) -> str:
        """Directory holding model `model_id`."""
        return os.path.join(self.path, MODELS_DIR, model_id)

    def load(self, model_id: str) -> Net:
        """The `Net` of model `model_id`."""
        path = self.model_path(model_id)
        if not os.path.isdir(path):
            raise LoadError(f"{self.path}: no model {model_id!r} (missing {path})")
        return load_net_dir(path)

    def row(self, model_id: str) -> pd.Series:
        """The manifest row of model `model_id`."""
        hits = self.manifest[self.manifest["id"] == model_id]
        if hits.empty:
            raise LoadError(f"{self.path}: model {model_id!r} is not in the manifest")
        return hits.iloc[0]

    def counts(self) -> pd.DataFrame:
        """Models per (kind, task, family): a DataFrame with a ``models`` column."""
        df = self.manifest.groupby(["kind", "task", "family"]).size()
        return df.rename("models").reset_index()
