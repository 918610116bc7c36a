"""The plan: a pure function of (preset, seed), stable by index, covering tasks/families."""

from __future__ import annotations

from dataclasses import replace

import pytest

from zoolens.errors import ZoolensError
from zoolens.zoo.archs import FAMILIES
from zoolens.zoo.plan import model_id, plan_zoo
from zoolens.zoo.presets import BENCH, TINY, ZooPreset
from zoolens.zoo.tasks import get_task


def specs(preset: ZooPreset, seed: int) -> list:
    return [s for u in plan_zoo(preset, seed) for s in u.specs]


def test_plan_is_pure_and_seeded() -> None:
    assert specs(TINY, 0) == specs(TINY, 0)
    assert specs(TINY, 0) != specs(TINY, 1)


def test_growing_a_preset_keeps_the_models_already_planned() -> None:
    small = {s.id: s for s in specs(replace(TINY, n_finetunes=0, n_inrs=0), 5)}
    big = {s.id: s for s in specs(replace(TINY, n_models=200, n_finetunes=0, n_inrs=0), 5)}
    assert all(big[i] == s for i, s in small.items())


def test_every_task_and_family_is_used_and_compatible() -> None:
    all_specs = specs(TINY, 0)
    assert [s.index for s in sorted(all_specs, key=lambda s: s.index)] == list(range(TINY.total))
    assert sorted(s.id for s in all_specs) == [model_id(i) for i in range(TINY.total)]
    trained = [s for s in all_specs if not s.family.startswith("inr")]
    assert {s.task for s in trained} == set(TINY.tasks)
    assert {s.family for s in trained} == set(TINY.families)
    for s in trained:
        assert len(get_task(s.task).input_shape) in FAMILIES[s.family]


def test_units_group_inrs_and_put_finetunes_last() -> None:
    units = plan_zoo(TINY, 0)
    inr_units = [u for u in units if u.kind == "inr"]
    assert sum(len(u.specs) for u in inr_units) == TINY.n_inrs
    for u in inr_units:
        assert len({(s.task, s.depth, s.width, s.activation, s.hp) for s in u.specs}) == 1
    phase1 = [u.specs[0] for u in units if u.phase == 1]
    assert len(phase1) == TINY.n_finetunes and all(s.parent for s in phase1)


def test_bench_is_large_enough() -> None:
    units = plan_zoo(BENCH, 0)
    n_inr = sum(len(u.specs) for u in units if u.kind == "inr")
    assert n_inr >= 2000 and len(units) - len([u for u in units if u.kind == "inr"]) >= 2000


def test_bad_presets_are_refused() -> None:
    with pytest.raises(ZoolensError, match="family"):
        plan_zoo(replace(TINY, families=("transformer",)), 0)
    with pytest.raises(ZoolensError, match="no family"):
        plan_zoo(replace(TINY, tasks=("iris",), families=("cnn2d",)), 0)
