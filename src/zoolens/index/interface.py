"""A model's interface as catalog metadata, and the same-interface filter built from it.

When a loaded `Net` is added, its metadata gets ``input_shape`` (a JSON list, the shape of
one input without the batch axis) and ``n_outputs`` (output units); these computed values
replace any the caller or a zoo manifest gave under those keys (a manifest writes
``input_shape`` as ``"1x8x8"``), so every row of an index carries one format. A `TensorSet`
(weights without wiring) gets neither. Filter on them like any key:
``--where n_outputs=10`` or ``--where input_shape=[1,8,8]`` (no spaces).

Indexes built before zoolens recorded interfaces still open; their rows lack the keys and
so match no interface filter (re-add the models to record them).
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any, cast

from zoolens.errors import IndexError as IndexStoreError
from zoolens.index.filters import Condition
from zoolens.index.sources import is_model

if TYPE_CHECKING:
    from zoolens.index.catalog import Catalog
    from zoolens.ir import Net, TensorSet

log = logging.getLogger(__name__)

KEYS = ("input_shape", "n_outputs")


def interface_metadata(model: Net | TensorSet) -> dict[str, Any]:
    """``{"input_shape": [...], "n_outputs": n}`` for a Net; ``{}`` for a TensorSet."""
    from zoolens.ir import Net

    if not isinstance(model, Net):
        return {}
    try:
        n_outputs = model.value_infos()[model.output].units
    except Exception as e:  # a net that cannot run on zeros still gets its input shape
        log.info("no output count for %s: %s", model.meta.get("name", "a net"), e)
        return {"input_shape": [int(d) for d in model.input_shape]}
    return {"input_shape": [int(d) for d in model.input_shape], "n_outputs": int(n_outputs)}


def interface_conditions(metadata: dict[str, Any], label: str) -> list[Condition]:
    """Conditions matching models whose input shape and output count equal `metadata`'s.

    Raises:
        IndexStoreError: `metadata` lacks either key (`label` names the query).
    """
    missing = [k for k in KEYS if metadata.get(k) is None]
    if missing:
        raise IndexStoreError(
            f"{label}: no {' / '.join(missing)} to match (a TensorSet, or a model indexed "
            "before zoolens recorded interfaces); search without same_interface"
        )
    shape = json.dumps([int(d) for d in metadata["input_shape"]], separators=(",", ":"))
    return [("input_shape", "=", shape), ("n_outputs", "=", int(metadata["n_outputs"]))]


def query_interface(query: Any, catalog: Catalog) -> tuple[Any, list[Condition]]:
    """The same-interface conditions of one query, and the query with any path loaded.

    Args:
        query: a path, a loaded model, or a model id of the catalog.
        catalog: the index's catalog (for ids).

    Returns:
        ``(query, conditions)``: a path comes back as its loaded model, so it is read once.

    Raises:
        IndexStoreError: an embedding or a batch of queries, or a query without interface.
    """
    from zoolens.nn.base import as_model

    if is_model(query):
        return query, interface_conditions(interface_metadata(query), "the query")
    if isinstance(query, (str, os.PathLike)):
        path = os.fspath(query)
        if os.path.exists(path):
            model = as_model(path)
            return model, interface_conditions(interface_metadata(model), path)
        rec = catalog.record(path)
        if rec is not None:
            return query, interface_conditions(cast(dict[str, Any], rec["metadata"]), path)
        return query, []  # the search reports the missing path
    raise IndexStoreError(
        "same_interface needs one query model (a path, a Net or a model id), "
        "not an embedding or a batch"
    )
