"""Presets are data: sizes required by the issue, round trips, registration."""

from __future__ import annotations

from dataclasses import replace

import pytest

from zoolens.errors import ZoolensError
from zoolens.zoo import PRESETS, ZooPreset, get_preset, register_preset
from zoolens.zoo.presets import BENCH, TINY, preset_from_dict


def test_tiny_and_bench_sizes() -> None:
    assert TINY.n_models + TINY.n_finetunes + TINY.n_inrs >= 80 and TINY.n_inrs > 0
    assert len(TINY.tasks) >= 8 and len(TINY.families) >= 3
    assert BENCH.n_models + BENCH.n_finetunes >= 2000 and BENCH.n_inrs >= 2000


def test_round_trip_and_registration() -> None:
    assert preset_from_dict(TINY.to_dict()) == TINY
    mine = replace(TINY, name="mine-test", n_models=3)
    register_preset(mine)
    try:
        assert get_preset("mine-test") is mine and get_preset(mine) is mine
    finally:
        PRESETS.pop("mine-test")
    with pytest.raises(ZoolensError, match="unknown zoo preset"):
        get_preset("mine-test")
    assert isinstance(get_preset("tiny"), ZooPreset)
