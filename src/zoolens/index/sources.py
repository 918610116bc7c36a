"""What can be added to an index: paths, directories, zoos and in-memory nets, as `Entry` rows."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union, cast

from zoolens.errors import ZoolensError

if TYPE_CHECKING:  # torch is imported only when a model is loaded or embedded
    from zoolens.ir import Net, TensorSet

log = logging.getLogger(__name__)

MANIFEST = "manifest.parquet"
MODEL_EXTENSIONS = (".onnx", ".safetensors", ".pt", ".pth", ".bin", ".ckpt")
Item = Union["Net", "TensorSet", str, os.PathLike[str]]


def is_model(obj: object) -> bool:
    """True for a loaded model (a Net or TensorSet), without importing torch."""
    return not isinstance(obj, (str, os.PathLike)) and hasattr(obj, "content_hash")


@dataclass
class Entry:
    """One model to add.

    Args:
        item: a loaded model or a path to load.
        label: how reports name it (the path, or the id of an in-memory net).
        source: absolute path stored in the catalog (None for in-memory models).
        id: the wanted model id (a suffix is appended if taken).
        metadata: JSON-able metadata.
    """

    item: Item
    label: str
    source: str | None
    id: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _fspath(item: Item) -> str:
    return os.fspath(cast("str | os.PathLike[str]", item))


def is_zoo(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, MANIFEST))


def is_model_path(path: str) -> bool:
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "arch.json"))
    return path.lower().endswith(MODEL_EXTENSIONS)


def default_id(item: Item) -> str:
    """File name without extension; directory name; for an in-memory net its hash prefix."""
    if is_model(item):
        model = cast("Net | TensorSet", item)
        name = model.meta.get("name") if isinstance(model.meta, dict) else None
        return str(name) if name else f"net-{model.content_hash()[:12]}"
    path = os.path.normpath(_fspath(item))
    base = os.path.basename(path)
    return base if os.path.isdir(path) else os.path.splitext(base)[0]


def expand(
    items: Sequence[Item] | Item,
    metadata: Mapping[str, Any] | Sequence[Any] | None,
    ids: Sequence[str] | None,
    recursive: bool,
) -> tuple[list[Entry], list[tuple[str, str]]]:
    """Turn what the user passed into entries, zoo dirs and (with `recursive`) folders expanded.

    Args:
        items: paths, nets, or a single one of them.
        metadata: one dict for all items, or one dict per item.
        ids: one id per item (each item must then be a single model).
        recursive: look inside plain directories for model files and net directories.

    Returns:
        ``(entries, failed)`` with ``failed`` a list of ``(path, message)``.
    """
    if isinstance(items, (str, os.PathLike)) or is_model(items):
        items = [cast(Item, items)]
    items = list(cast("Sequence[Item]", items))
    per_item = _per_item_metadata(metadata, len(items))
    if ids is not None and len(ids) != len(items):
        raise ZoolensError(f"got {len(ids)} ids for {len(items)} items")
    entries: list[Entry] = []
    failed: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        got, bad = _expand_one(item, recursive)
        failed.extend(bad)
        if ids is not None:
            if len(got) != 1:
                raise ZoolensError(
                    f"{_label(item)}: an explicit id needs a single model, "
                    f"this expands to {len(got)}"
                )
            got[0].id = str(ids[i])
        for e in got:
            e.metadata = {**e.metadata, **per_item[i]}
        entries.extend(got)
    return entries, failed


def _per_item_metadata(
    metadata: Mapping[str, Any] | Sequence[Any] | None, n: int
) -> list[dict[str, Any]]:
    if metadata is None:
        return [{} for _ in range(n)]
    if isinstance(metadata, Mapping):
        return [dict(metadata) for _ in range(n)]
    metadata = list(metadata)
    if len(metadata) != n:
        raise ZoolensError(f"got {len(metadata)} metadata dicts for {n} items")
    return [dict(m or {}) for m in metadata]


def _label(item: Item) -> str:
    return default_id(item) if is_model(item) else _fspath(item)


def _expand_one(item: Item, recursive: bool) -> tuple[list[Entry], list[tuple[str, str]]]:
    if is_model(item):
        return [Entry(item, default_id(item), None, default_id(item))], []
    path = _fspath(item)
    if is_zoo(path):
        return zoo_entries(path)
    if os.path.isdir(path) and not is_model_path(path):
        if not recursive:
            return [], [
                (
                    path,
                    "a directory that is neither a zoolens net nor a zoo; pass "
                    "recursive=True (--recursive) to add the models inside",
                )
            ]
        return _walk(path)
    return [_path_entry(path)], []


def _path_entry(path: str, model_id: str | None = None) -> Entry:
    return Entry(path, path, os.path.abspath(path), model_id or default_id(path))


def _walk(root: str) -> tuple[list[Entry], list[tuple[str, str]]]:
    entries: list[Entry] = []
    failed: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for d in list(dirnames):
            sub = os.path.join(dirpath, d)
            if is_zoo(sub):
                got, bad = zoo_entries(sub)
                entries.extend(got)
                failed.extend(bad)
                dirnames.remove(d)
            elif is_model_path(sub):
                entries.append(_path_entry(sub))
                dirnames.remove(d)
        entries.extend(
            _path_entry(os.path.join(dirpath, f))
            for f in sorted(filenames)
            if f.lower().endswith(MODEL_EXTENSIONS)
        )
    return entries, failed


def zoo_entries(zoo_dir: str) -> tuple[list[Entry], list[tuple[str, str]]]:
    """One entry per manifest row: ``models/<id>`` (or the row's ``path``), the row as metadata."""
    import pandas as pd

    manifest = os.path.join(zoo_dir, MANIFEST)
    try:
        frame = pd.read_parquet(manifest)
    except Exception as e:  # pyarrow raises many kinds
        return [], [(manifest, f"cannot read zoo manifest ({e})")]
    if "id" not in frame.columns:
        return [], [(manifest, "zoo manifest has no 'id' column")]
    entries = []
    for row in frame.to_dict(orient="records"):
        model_id = str(row.pop("id"))
        rel = row.pop("path", None)
        path = (
            os.path.join(zoo_dir, str(rel))
            if isinstance(rel, str) and rel
            else os.path.join(zoo_dir, "models", model_id)
        )
        entry = _path_entry(path, model_id)
        entry.metadata = row
        entries.append(entry)
    log.info("zoo %s: %d models in the manifest", zoo_dir, len(entries))
    return entries, []
