"""`benchmarks/fingerprint_weight.py`: the grid it prints is what the encoder scores on the
validation split, the row it picks is the criterion's best, and what it saves carries
that weight."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from tests.train.tiny_zoos import SMALL, write_signs_zoo

from zoolens.bench.measure import subset_retrieval
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


def _rows(stdout: str) -> list[list[str]]:
    rows = [line for line in stdout.splitlines() if line.startswith("| ") and "weight" not in line]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows]


def test_grid_rows_choice_and_save(zoo_dir: str, tmp_path) -> None:
    enc = NeuralGraphEncoder(SMALL)
    other = NeuralGraphEncoder({**SMALL, "seed": 2})  # a stand-in counterpart
    enc.save(str(tmp_path / "enc"))
    other.save(str(tmp_path / "held"))
    out = str(tmp_path / "saved")
    cmd = [sys.executable, SCRIPT, "--zoo", zoo_dir, "--encoder", str(tmp_path / "enc")]
    cmd += ["--heldout-encoder", str(tmp_path / "held")]
    cmd += ["--heldout-tasks", "x2", "--heldout-families", "other"]
    cmd += ["--weights", "0,0.5,1", "--save", out]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    cells = _rows(done.stdout)
    assert [c[0] for c in cells] == ["all"] * 3  # the encoder's own probe count
    assert [c[1].split()[0] for c in cells] == ["0", "0.5", "1"]
    val_mean = [float(c[5]) for c in cells]
    chosen = [i for i, c in enumerate(cells) if "(chosen)" in c[1]]
    assert chosen == [int(np.argmax(val_mean))]
    zoo = Zoo.open(zoo_dir)
    val = zoo.manifest[zoo.manifest["split"] == "val"].reset_index(drop=True)
    nets = [zoo.load(str(i)).to(torch.float32) for i in val["id"]]
    labels = group_labels(val)
    tasks = val["task"].eq("x2").to_numpy()
    for c in cells:  # the printed validation mAPs are the encoders' under that weight
        w = float(c[1].split()[0])
        z = enc.with_fingerprint(w).encode(nets)
        h = other.with_fingerprint(w).encode(nets)
        assert float(c[2]) == pytest.approx(retrieval_metrics(z, labels)["mAP"], abs=2e-3)
        assert float(c[3]) == pytest.approx(subset_retrieval(h, labels, tasks)["mAP"], abs=2e-3)
    best = float(cells[chosen[0]][1].split()[0])
    for key, source in (("trained", enc), ("heldout", other)):
        saved = load_encoder(os.path.join(out, key))
        assert isinstance(saved, NeuralGraphEncoder) and saved.config.fingerprint == best
        assert saved.config.replace(fingerprint=0.0) == source.config  # nothing else moved
    assert "test" not in done.stdout.splitlines()[0].lower()  # no test-split column


def test_without_counterpart_the_criterion_is_val_map(zoo_dir: str, tmp_path) -> None:
    NeuralGraphEncoder(SMALL).save(str(tmp_path / "enc"))
    cmd = [sys.executable, SCRIPT, "--zoo", zoo_dir, "--encoder", str(tmp_path / "enc")]
    done = subprocess.run([*cmd, "--weights", "0,0.3"], capture_output=True, text=True, check=True)
    cells = _rows(done.stdout)
    assert len(cells) == 2 and all(len(c) == 4 and c[2] == c[3] for c in cells)
    bad = subprocess.run([*cmd, "--weights", "1.5"], capture_output=True, text=True)
    assert bad.returncode != 0 and "[0, 1]" in bad.stderr


def test_several_zoos_each_get_a_column_and_the_layout_is_saved(zoo_dir: str, tmp_path) -> None:
    NeuralGraphEncoder(SMALL).save(str(tmp_path / "enc"))
    cmd = [sys.executable, SCRIPT, "--zoo", zoo_dir, "--zoo", zoo_dir]
    cmd += ["--encoder", str(tmp_path / "enc"), "--weights", "0.2,0.7", "--layout", "isometric"]
    done = subprocess.run([*cmd, "--save", str(tmp_path / "s")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    cells = _rows(done.stdout)
    assert all(len(c) == 5 and c[2] == c[3] for c in cells)  # probes, w, zoo 1, zoo 2, mean
    saved = load_encoder(str(tmp_path / "s" / "trained"))
    assert isinstance(saved, NeuralGraphEncoder)
    assert saved.config.fingerprint_layout == "isometric"


def test_probe_counts_are_chosen_with_the_weight(zoo_dir: str, tmp_path) -> None:
    enc = NeuralGraphEncoder({**SMALL, "fingerprint_layout": "isometric"})
    enc.save(str(tmp_path / "enc"))
    cmd = [sys.executable, SCRIPT, "--zoo", zoo_dir, "--encoder", str(tmp_path / "enc")]
    cmd += ["--weights", "0,0.6,1", "--fingerprint-probes", f"0,{SMALL['n_probes'] // 4}"]
    done = subprocess.run([*cmd, "--save", str(tmp_path / "s")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    cells = _rows(done.stdout)
    k = str(SMALL["n_probes"] // 4)
    assert [(c[0], c[1].split()[0]) for c in cells] == [
        ("all", "0"),
        ("all", "0.6"),
        ("all", "1"),
        (k, "0.6"),
        (k, "1"),
    ]  # weight 0 reads no fingerprint: once
    zoo = Zoo.open(zoo_dir)
    val = zoo.manifest[zoo.manifest["split"] == "val"].reset_index(drop=True)
    nets = [zoo.load(str(i)).to(torch.float32) for i in val["id"]]
    labels = group_labels(val)
    for c in cells:
        probes, w = (0 if c[0] == "all" else int(c[0])), float(c[1].split()[0])
        z = enc.with_fingerprint(w, probes=probes).encode(nets)
        assert float(c[2]) == pytest.approx(retrieval_metrics(z, labels)["mAP"], abs=2e-3)
    chosen = next(c for c in cells if "(chosen)" in c[1])
    saved = load_encoder(str(tmp_path / "s" / "trained"))
    assert isinstance(saved, NeuralGraphEncoder)
    assert saved.config.fingerprint_probes == (0 if chosen[0] == "all" else int(chosen[0]))
    bad = subprocess.run([*cmd, "--fingerprint-probes", "100000"], capture_output=True, text=True)
    assert bad.returncode != 0 and "n_probes" in bad.stderr
