"""The quickstart (`make demo`): its three demonstrations hold on a fresh work directory."""

from __future__ import annotations

from pathlib import Path

from zoolens.index import ModelIndex
from zoolens.nn import load_encoder
from zoolens.quickstart import run_quickstart


def test_quickstart_end_to_end(tmp_path: Path) -> None:
    # An earlier run with another encoder left its index behind (as an upgrade that ships
    # a new default encoder does): the quickstart re-embeds it instead of failing.
    run_quickstart(workdir=str(tmp_path / "qs"), encoder="weight-stats")
    out = run_quickstart(workdir=str(tmp_path / "qs"))
    index = ModelIndex.open(str(tmp_path / "qs" / "index"), encoder=None)
    assert index.encoder.id == load_encoder("default").id and len(index) == 108
    checks = out["symmetry"]
    assert isinstance(checks, list) and len(checks) == 4
    for c in checks:  # (a) found at rank 1, identical embedding, different raw weights
        assert c.rank == 1 and c.embedding_cosine >= 0.9999, c
        assert c.raw_weight_cosine < 0.9 and c.max_output_diff < 1e-3, c
    tasks = out["neighbour_tasks"]  # (b) five neighbours from the zoo
    assert isinstance(tasks, list) and len(tasks) == 5
    true_acc, pred = out["true_accuracy"], out["predicted_accuracy"]  # (c)
    assert isinstance(true_acc, float) and isinstance(pred, float)
    assert 0.0 <= pred <= 1.0 and true_acc > 0.8
