"""`fit_head` on a zoo: train split fits, val split chooses and scores, test split unread."""

from __future__ import annotations

import numpy as np
import pytest

from zoolens.errors import HeadError
from zoolens.nn import WeightStats
from zoolens.testing.zoos import scaled_mlp, write_label_zoo
from zoolens.train.heads import fit_head, label_rows
from zoolens.zoo import Zoo
from zoolens.zoo.importers import write_zoo


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    return write_label_zoo(str(tmp_path_factory.mktemp("zoo") / "labels"))


def test_task_head_beats_the_majority_baseline(zoo):
    encoder = WeightStats()
    head = fit_head(zoo, "task", encoder)
    c = head.config
    assert c.kind == "classify" and c.classes == ("loud", "quiet") and c.encoder_id == encoder.id
    assert (c.n_train, c.n_val) == (24, 8)  # the test split is not read
    assert c.val_score == 1.0 and c.baseline_score == 0.5
    val = label_rows(zoo, "task", "val")
    paths = [zoo.model_path(i) for i in val["id"]]
    assert list(encoder.predict(paths, head)) == list(val["task"])


def test_accuracy_head_regresses(zoo):
    head = fit_head(zoo, "accuracy", WeightStats())
    c = head.config
    assert c.kind == "regress" and c.metric == "r2"
    assert c.val_score > 0.8 and c.baseline_score < 0.1


def test_shuffled_labels_fall_to_chance(zoo, tmp_path):
    """Sensitivity twin: the same models, task labels assigned at random."""
    rng = np.random.default_rng(3)
    rows = zoo.manifest.to_dict(orient="records")
    tasks = rng.permutation([r["task"] for r in rows])
    items = [
        (
            zoo.load(r["id"]),
            {**{k: r[k] for k in ("id", "kind", "family", "split", "index")}, "task": t},
        )
        for r, t in zip(rows, tasks, strict=True)
    ]
    shuffled = write_zoo(items, str(tmp_path / "shuffled"))
    head = fit_head(shuffled, "task", WeightStats())
    assert head.config.val_score <= 0.75


def test_bad_labels_are_refused(zoo, tmp_path):
    with pytest.raises(HeadError, match="no label column 'nope'"):
        fit_head(zoo, "nope", WeightStats())
    with pytest.raises(HeadError, match="one class"):
        fit_head(zoo, "family", WeightStats())  # every model is an mlp
    with pytest.raises(HeadError, match="0 train"):
        fit_head(zoo, "psnr", WeightStats())  # missing (NaN) for every model
    with pytest.raises(HeadError, match="no label column 'split'"):
        fit_head(zoo, "split", WeightStats())
    only_train = write_zoo(
        [
            (scaled_mlp(1.0, i), {"id": f"t{i}", "task": "ab"[i % 2], "split": "train"})
            for i in range(6)
        ],
        str(tmp_path / "no-val"),
    )
    with pytest.raises(HeadError, match="0 val"):
        fit_head(only_train, "task", WeightStats())
