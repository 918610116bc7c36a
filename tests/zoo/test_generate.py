"""generate_zoo: determinism, resumability, jobs, lineage, accuracy spread, refusal to mix."""

from __future__ import annotations

import os
from dataclasses import replace

import pandas as pd
import pytest

from zoolens.errors import ZoolensError
from zoolens.zoo import Zoo, generate_zoo
from zoolens.zoo.presets import ZooPreset
from zoolens.zoo.tasks import transfer_tasks


def hashes(zoo: Zoo) -> dict[str, str]:
    return {str(row["id"]): net.content_hash() for net, row in zoo}


def test_generates_every_model_of_the_preset(micro_zoo: Zoo, micro_preset: ZooPreset) -> None:
    assert len(micro_zoo) == micro_preset.total
    assert sorted(os.listdir(os.path.join(micro_zoo.path, "models"))) == sorted(
        micro_zoo.manifest["id"]
    )
    assert set(micro_zoo.manifest["task"]) >= set(micro_preset.tasks)
    assert micro_zoo.info["seed"] == 0 and micro_zoo.info["preset"]["name"] == "micro"


def test_same_seed_gives_bit_identical_weights(
    tmp_path, micro_zoo: Zoo, micro_preset: ZooPreset
) -> None:
    few = replace(micro_preset, n_models=5, n_finetunes=1, n_inrs=2)  # a prefix of the micro plan
    again = generate_zoo(few, str(tmp_path / "again"), seed=0, progress=False)
    ref = hashes(micro_zoo)
    got = hashes(again)
    base = again.manifest[(again.manifest["kind"] != "inr") & (again.manifest["parent"] == "")]
    common = list(base["id"])
    assert len(common) >= 5
    assert all(got[i] == ref[i] for i in common)


def test_other_seed_gives_other_weights(tmp_path, small_preset: ZooPreset) -> None:
    a = generate_zoo(
        replace(small_preset, n_inrs=0, n_finetunes=0), str(tmp_path / "a"), seed=1, progress=False
    )
    b = generate_zoo(
        replace(small_preset, n_inrs=0, n_finetunes=0), str(tmp_path / "b"), seed=2, progress=False
    )
    assert set(hashes(a).values()).isdisjoint(hashes(b).values())


def test_resume_after_interruption_gives_the_same_zoo(
    tmp_path, small_preset: ZooPreset, small_zoo: Zoo
) -> None:
    out, full = str(tmp_path / "z"), small_zoo
    part = generate_zoo(small_preset, out, seed=3, progress=False, limit=2)  # "interrupted"
    assert 0 < len(part) < small_preset.total
    os.makedirs(os.path.join(out, "models", ".tmp-m00003-999"))  # a half-written model
    done = generate_zoo(small_preset, out, seed=3, progress=False)
    assert hashes(done) == hashes(full)
    cols = [c for c in full.manifest.columns if c != "num_params"]
    pd.testing.assert_frame_equal(done.manifest[cols], full.manifest[cols])
    assert not any(n.startswith(".tmp") for n in os.listdir(os.path.join(out, "models")))


def test_two_worker_processes_write_the_same_weights(
    tmp_path, small_preset: ZooPreset, small_zoo: Zoo
) -> None:
    two = generate_zoo(small_preset, str(tmp_path / "two"), seed=3, jobs=2, progress=False)
    assert hashes(two) == hashes(small_zoo)


def test_refuses_to_mix_presets_or_seeds(tmp_path, small_preset: ZooPreset) -> None:
    out = str(tmp_path / "z")
    generate_zoo(
        replace(small_preset, n_models=1, n_finetunes=0, n_inrs=0), out, seed=0, progress=False
    )
    with pytest.raises(ZoolensError, match="seed"):
        generate_zoo(
            replace(small_preset, n_models=1, n_finetunes=0, n_inrs=0), out, seed=1, progress=False
        )
    with pytest.raises(ZoolensError, match="preset"):
        generate_zoo(small_preset, out, seed=0, progress=False)


def test_accuracy_varies_within_each_task(micro_zoo: Zoo) -> None:
    m = micro_zoo.manifest
    metric = m["accuracy"].where(
        m["kind"] == "classification", m["r2"].where(m["kind"] == "regression", m["psnr"])
    )
    for task, values in metric.groupby(m["task"]):
        assert len(values) >= 2, task
        assert values.nunique() >= 2, task


def test_finetuned_children_point_at_real_parents(micro_zoo: Zoo, micro_preset: ZooPreset) -> None:
    m = micro_zoo.manifest.set_index("id")
    children = m[m["parent"] != ""]
    assert len(children) == micro_preset.n_finetunes
    for cid, child in children.iterrows():
        parent = m.loc[child["parent"]]
        assert parent["parent"] == "" and parent["family"] == child["family"]
        assert child["split"] == parent["split"], cid
        if child["finetune"] == "head":
            assert child["task"] in transfer_tasks(parent["task"])
        else:
            assert child["finetune"] == "continue" and child["task"] == parent["task"]
