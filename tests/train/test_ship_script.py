"""`benchmarks/ship_encoder.py`: what it saves carries the weights asked for and its fitted
heads, and the card's row for it is that saved encoder's retrieval on the test split."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from tests.train.test_function import SMALL, _regressor
from tests.train.test_render_head import _inr

from zoolens.eval import retrieval_metrics
from zoolens.eval.bench_measure import subset_retrieval
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
            net = _inr(i % 3, g)
        else:
            r2 = 0.3 + 0.6 * float(torch.rand(1, generator=g))
            family = "other" if i % 4 == 0 else "mlp"
            row = {"task": f"x{i % 3}", "kind": "regression", "family": family, "r2": r2}
            net = _regressor(i % 3, g)
        items.append((net, {**row, "id": f"m{i:03d}", "split": split, "index": i}))
    out = str(tmp_path_factory.mktemp("zoo") / "ship")
    write_zoo(items, out)
    return out


@pytest.mark.slow
def test_ship_saves_what_its_card_measures(zoo_dir: str, tmp_path) -> None:
    run = str(tmp_path / "run")
    NeuralGraphEncoder(SMALL).save(os.path.join(run, "best"))
    with open(os.path.join(run, "metrics.csv"), "w") as f:
        f.write("epoch,val_mAP\n1,0.5\n")
    with open(os.path.join(run, "train_config.json"), "w") as f:
        f.write('{"seed": 0}\n')
    dest = str(tmp_path / "weights")
    cmd = [sys.executable, SCRIPT, "--zoo", zoo_dir, "--run", run, "--heldout-run", run]
    cmd += ["--heldout-tasks", "x2", "--heldout-families", "other", "--dest", dest]
    cmd += ["--name", "ng", "--fingerprint", "0.2", "--fingerprint-norm", "zscore"]
    cmd += ["--function-head", "0.2", "--interface", "0.1", "--render-head", "0.2"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = os.path.join(dest, "ng")
    for name in ("config.json", "model.safetensors", "MODEL_CARD.md", "metrics.csv"):
        assert os.path.exists(os.path.join(out, name)), name
    enc = load_encoder(out)
    assert isinstance(enc, NeuralGraphEncoder)
    cfg = enc.config
    assert (cfg["fingerprint"], cfg["fingerprint_norm"], cfg["function_head"]) == (
        0.2,
        "zscore",
        0.2,
    )
    assert (cfg["interface"], cfg["render_head"], cfg["render_count"]) == (0.1, 0.2, 3)
    assert enc.function is not None and enc.render is not None
    with open(os.path.join(out, "MODEL_CARD.md")) as f:
        card = f.read()
    assert card.strip() in done.stdout  # the card it prints is the one it writes
    assert "--render-head 0.2" in card and "render head, trained: fit on 12 models" in card
    row = next(line for line in card.splitlines() if line.startswith("| ng (trained)"))
    cells = [float(c) for c in row.strip("|").split("|")[1:]]
    zoo = Zoo.open(zoo_dir)
    test = zoo.manifest[zoo.manifest["split"] == "test"].reset_index(drop=True)
    nets = [zoo.load(str(i)).to(torch.float32) for i in test["id"]]
    z, labels = enc.encode(nets), group_labels(test)
    m = retrieval_metrics(z, labels)
    inr = test["kind"].eq("inr").to_numpy()
    want = [m["mAP"], m["P@1"], m["P@5"], m["MRR"], subset_retrieval(z, labels, inr)["mAP"]]
    np.testing.assert_allclose(cells[:5], want, atol=6e-4)
