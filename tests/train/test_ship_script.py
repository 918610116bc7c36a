"""`benchmarks/ship_encoder.py`: what it saves carries the weight asked for, and the card's
row for it is that saved encoder's retrieval on the test split."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from tests.train.tiny_zoos import SMALL, inr, regressor

from zoolens.bench.measure import subset_retrieval
from zoolens.eval import retrieval_metrics
from zoolens.nn import NeuralGraphEncoder, load_encoder
from zoolens.train.data import group_labels
from zoolens.zoo import Zoo
from zoolens.zoo.importers import write_zoo

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "ship_encoder.py")


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """36 INRs (3 edge directions) and 36 regressors (3 tasks), a third of each per split."""
    g = torch.Generator().manual_seed(5)
    items = []
    for i in range(72):
        split = ("train", "val", "test")[i // 3 % 3]
        if i < 36:
            row = {"task": "inr-edges", "kind": "inr", "label": i % 3, "family": "inr-tanh"}
            net = inr(i % 3, g)
        else:
            r2 = 0.3 + 0.6 * float(torch.rand(1, generator=g))
            family = "other" if i % 4 == 0 else "mlp"
            row = {"task": f"x{i % 3}", "kind": "regression", "family": family, "r2": r2}
            net = regressor(i % 3, g)
        items.append((net, {**row, "id": f"m{i:03d}", "split": split, "index": i}))
    out = str(tmp_path_factory.mktemp("zoo") / "ship")
    write_zoo(items, out)
    return out


@pytest.mark.slow
def test_ship_saves_what_its_card_measures(zoo_dir: str, tmp_path) -> None:
    run = str(tmp_path / "run")  # a training run: the encoder in best/, its history beside
    NeuralGraphEncoder(SMALL).save(os.path.join(run, "best"))
    with open(os.path.join(run, "metrics.csv"), "w") as f:
        f.write("epoch,val_mAP\n1,0.5\n")
    with open(os.path.join(run, "train_config.json"), "w") as f:
        f.write('{"seed": 0}\n')
    dest = str(tmp_path / "weights")
    best = os.path.join(run, "best")
    cmd = [sys.executable, SCRIPT, "--zoo", zoo_dir, "--encoder", best]
    cmd += ["--heldout-encoder", best, "--heldout-tasks", "x2", "--heldout-families", "other"]
    cmd += ["--dest", dest, "--name", "ng", "--fingerprint", "0.2"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = os.path.join(dest, "ng")
    for name in ("config.json", "model.safetensors", "MODEL_CARD.md", "metrics.csv"):
        assert os.path.exists(os.path.join(out, name)), name
    enc = load_encoder(out)
    assert isinstance(enc, NeuralGraphEncoder)
    assert enc.config == NeuralGraphEncoder(SMALL).config.replace(fingerprint=0.2)
    with open(os.path.join(out, "MODEL_CARD.md")) as f:
        card = f.read()
    assert card.strip() in done.stdout  # the card it prints is the one it writes
    assert f"--encoder {best}" in card and '{"seed": 0}' in card
    row = next(line for line in card.splitlines() if line.startswith("| ng (trained)"))
    cells = [float(c) for c in row.strip("|").split("|")[1:]]
    zoo = Zoo.open(zoo_dir)
    test = zoo.manifest[zoo.manifest["split"] == "test"].reset_index(drop=True)
    nets = [zoo.load(str(i)).to(torch.float32) for i in test["id"]]
    z, labels = enc.encode(nets), group_labels(test)
    m = retrieval_metrics(z, labels)
    inr_rows = test["kind"].eq("inr").to_numpy()
    want = [m["mAP"], m["P@1"], m["P@5"], m["MRR"], subset_retrieval(z, labels, inr_rows)["mAP"]]
    np.testing.assert_allclose(cells[:5], want, atol=6e-4)
    part = next(
        line for line in card.splitlines() if line.startswith("| ng (trained): learned part alone")
    )
    learned = retrieval_metrics(enc.with_fingerprint(0.0).encode(nets), labels)["mAP"]
    assert float(part.strip("|").split("|")[1]) == pytest.approx(learned, abs=6e-4)


def test_ship_takes_a_bare_encoder_dir(zoo_dir: str, tmp_path) -> None:
    """An encoder directory without a training run (e.g. a shipped one): no history to
    copy, the card says so."""
    fp = {"fingerprint_layout": "isometric", "fingerprint_probes": 8}
    NeuralGraphEncoder({**SMALL, **fp}).save(str(tmp_path / "enc"))
    dest = str(tmp_path / "weights")
    cmd = [sys.executable, SCRIPT, "--zoo", zoo_dir, "--encoder", str(tmp_path / "enc")]
    cmd += ["--dest", dest, "--name", "ng", "--fingerprint", "0.3"]
    subprocess.run(cmd, capture_output=True, check=True)
    assert not os.path.exists(os.path.join(dest, "ng", "metrics.csv"))
    with open(os.path.join(dest, "ng", "MODEL_CARD.md")) as f:
        card = f.read()
    assert "Training config: `—`" in card
    assert "(layout `isometric`, on the first 8 of its 32 probes)" in card  # what it ships
