"""`benchmarks/fingerprint_weight.py`: the grid it prints is what the encoders score, the
row it picks is the criterion's best, and what it saves carries those weights."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from tests.train.test_function import SMALL, write_signs_zoo

from zoolens.eval import retrieval_metrics
from zoolens.nn import NeuralGraphEncoder, load_encoder
from zoolens.train.data import group_labels
from zoolens.zoo import Zoo

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "fingerprint_weight.py")


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_signs_zoo(
        str(tmp_path_factory.mktemp("zoo") / "grid"),
        72,
        lambda i: "other" if i % 12 == 11 else "mlp",
        lambda i: ("train", "val", "test")[i // 3 % 3],
        seed=3,
    )


def _run_dir(path: str, enc: NeuralGraphEncoder) -> str:
    enc.save(os.path.join(path, "best"))
    for name in ("metrics.csv", "train_config.json"):
        with open(os.path.join(path, name), "w") as f:
            f.write("{}\n" if name.endswith(".json") else "epoch\n")
    return path


def test_grid_rows_choice_and_save(zoo_dir: str, tmp_path) -> None:
    enc = NeuralGraphEncoder(SMALL)
    run = _run_dir(str(tmp_path / "run"), enc)
    out = str(tmp_path / "saved")
    cmd = [sys.executable, SCRIPT, "--zoo", zoo_dir, "--run", run, "--heldout-run", run]
    cmd += ["--heldout-tasks", "x2", "--heldout-families", "other", "--norms", "zscore"]
    cmd += ["--weights", "0,0.5", "--interface-weights", "0,0.3", "--save", out]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rows = [line for line in done.stdout.splitlines() if line.startswith("| zscore")]
    assert len(rows) == 4
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows]
    val_mean = [float(c[9]) for c in cells]
    chosen = [i for i, c in enumerate(cells) if "(chosen)" in c[5]]
    assert chosen == [int(np.argmax(val_mean))]
    zoo = Zoo.open(zoo_dir)
    val = zoo.manifest[zoo.manifest["split"] == "val"].reset_index(drop=True)
    nets = [zoo.load(str(i)).to(torch.float32) for i in val["id"]]
    for c in cells:  # the printed validation mAP is the encoder's under those weights
        w, k = float(c[1]), float(c[3])
        z = enc.with_fingerprint(w, "zscore", interface=k).encode(nets)
        want = retrieval_metrics(z, group_labels(val))["mAP"]
        assert float(c[6]) == pytest.approx(want, abs=2e-3)
    best = cells[chosen[0]]
    for key in ("trained", "heldout"):
        saved = load_encoder(os.path.join(out, key, "best"))
        assert saved.config["fingerprint"] == float(best[1])
        assert saved.config["interface"] == float(best[3])
        assert os.path.exists(os.path.join(out, key, "metrics.csv"))


def test_render_weight_scales_the_rest(zoo_dir: str, tmp_path) -> None:
    """A render weight r prints (and uses) the row's other weights times 1 - r; on a zoo
    without coordinate nets every net shares the render part, so each row scores as the
    same row without it."""
    enc = NeuralGraphEncoder({**SMALL, "render_head": 0.1, "render_count": 3})
    run = _run_dir(str(tmp_path / "run"), enc)
    cmd = [sys.executable, SCRIPT, "--zoo", zoo_dir, "--run", run, "--heldout-run", run]
    cmd += ["--heldout-tasks", "x2", "--heldout-families", "other", "--norms", "zscore"]
    cmd += ["--weights", "0.5", "--interface-weights", "0.3", "--render-weights", "0,0.2"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rows = [line for line in done.stdout.splitlines() if line.startswith("| zscore")]
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows]
    assert [(c[1], c[3], c[5].split()[0]) for c in cells] == [
        ("0.5", "0.3", "0"),
        ("0.4", "0.24", "0.2"),
    ]
    assert cells[0][6:] == cells[1][6:]  # every mAP, validation and test
    zoo = Zoo.open(zoo_dir)
    val = zoo.manifest[zoo.manifest["split"] == "val"].reset_index(drop=True)
    nets = [zoo.load(str(i)).to(torch.float32) for i in val["id"]]
    z = enc.with_fingerprint(0.4, "zscore", interface=0.24, render=0.2).encode(nets)
    want = retrieval_metrics(z, group_labels(val))["mAP"]
    assert float(cells[1][6]) == pytest.approx(want, abs=2e-3)
