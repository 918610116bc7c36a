"""Zoo.open: manifest, length, iteration, loading by id, counts."""

from __future__ import annotations

import pytest

from zoolens.errors import LoadError
from zoolens.ir import Net
from zoolens.zoo import Zoo
from zoolens.zoo.manifest import count_params


def test_open_iterate_and_load(micro_zoo: Zoo) -> None:
    zoo = Zoo.open(micro_zoo.path)
    assert len(zoo) == len(zoo.manifest) > 0
    pairs = list(zoo)
    assert len(pairs) == len(zoo)
    net, row = pairs[3]
    assert isinstance(net, Net) and row["id"] == zoo.manifest["id"].iloc[3]
    assert zoo.load(row["id"]).content_hash() == net.content_hash()
    assert zoo.row(row["id"])["task"] == row["task"]
    assert count_params(net) == row["num_params"]
    assert tuple(net.input_shape) == tuple(int(s) for s in row["input_shape"].split("x"))


def test_counts_cover_every_model(micro_zoo: Zoo) -> None:
    counts = micro_zoo.counts()
    assert counts["models"].sum() == len(micro_zoo)
    assert {"kind", "task", "family", "models"} <= set(counts.columns)


def test_missing_zoo_and_model_are_clear_errors(tmp_path, micro_zoo: Zoo) -> None:
    with pytest.raises(LoadError, match="manifest"):
        Zoo.open(str(tmp_path))
    with pytest.raises(LoadError, match="no model"):
        micro_zoo.load("nope")
