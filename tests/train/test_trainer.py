"""Contrastive training: runs, checkpoints, resumes, logs, keeps exact invariance, learns."""

from __future__ import annotations

import csv
import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from zoolens.nn import load_encoder
from zoolens.symmetry import random_exact_action
from zoolens.testing import assert_invariant, random_net
from zoolens.train import TrainConfig, Trainer, supcon_loss, train_encoder
from zoolens.zoo.importers import write_zoo

FAMILIES = ("mlp", "cnn2d_bn", "siren")


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small synthetic zoo whose 'task' is the architecture family (learnable)."""
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(36):
        fam = FAMILIES[i % 3]
        row = {
            "id": f"m{i:03d}",
            "task": fam,
            "kind": "classification",
            "family": fam,
            "accuracy": float(torch.rand(1, generator=g)),
            "split": "val" if i >= 27 else "train",
            "index": i,
        }
        items.append((random_net(fam, g, dtype=torch.float32), row))
    out = str(tmp_path_factory.mktemp("zoo"))
    write_zoo(items, out)
    return out


CFG = TrainConfig(
    epochs=2,
    batch_size=12,
    per_group=4,
    encoder_config={"hidden": 16, "dim": 32, "layers": 2, "readout_layers": 1},
)


def test_supcon_prefers_aligned_positives() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    good = torch.nn.functional.normalize(
        torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [0.1, 1]]), dim=1
    )
    bad = good[[0, 2, 1, 3]]
    assert supcon_loss(good, labels, 0.1) < supcon_loss(bad, labels, 0.1)


def test_train_writes_checkpoints_and_metrics(zoo_dir: str, tmp_path) -> None:
    out = str(tmp_path / "run")
    result = train_encoder(zoo_dir, out, CFG, progress=False)
    assert len(result.history) == 2
    assert os.path.exists(os.path.join(out, "best", "config.json"))
    with open(os.path.join(out, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(float(r["epoch"])) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["loss"])) and 0 <= float(r["val_mAP"]) <= 1 for r in rows)
    assert not os.path.exists(os.path.join(out, "tb"))  # TensorBoard only when asked
    trained = load_encoder(os.path.join(out, "best"))
    g = torch.Generator().manual_seed(5)
    assert_invariant(trained, random_net("cnn2d_bn", g, dtype=torch.float32), g)


def test_time_budget_stops_before_an_epoch_that_would_overrun(
    zoo_dir: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each epoch takes 60 s of a fake clock; a 1.5 min budget fits one epoch, and the
    second is not started (it would end at 2 min)."""
    import types

    import zoolens.train.trainer as trainer_module

    clock = [0.0]
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(time=lambda: clock[0]))
    run_epoch = Trainer.run_epoch

    def one_minute_epoch(self: Trainer, *args: object, **kwargs: object) -> dict[str, float]:
        clock[0] += 60.0
        return run_epoch(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Trainer, "run_epoch", one_minute_epoch)
    tight = TrainConfig(**{**CFG.to_dict(), "epochs": 3, "max_minutes": 1.5})
    result = train_encoder(zoo_dir, str(tmp_path / "run"), tight, progress=False)
    assert [h["epoch"] for h in result.history] == [1.0]
    roomy = TrainConfig(**{**CFG.to_dict(), "epochs": 3, "max_minutes": 2.5})
    result = train_encoder(zoo_dir, str(tmp_path / "run2"), roomy, progress=False)
    assert [h["epoch"] for h in result.history] == [1.0, 2.0]


def test_resume_continues_from_the_last_epoch(zoo_dir: str, tmp_path) -> None:
    out = str(tmp_path / "run")
    train_encoder(zoo_dir, out, CFG, progress=False)
    longer = TrainConfig(**{**CFG.to_dict(), "epochs": 3})
    trainer = Trainer(zoo_dir, out, longer)
    result = trainer.fit(resume=True, progress=False)
    assert [h["epoch"] for h in result.history] == [3.0]  # epochs 1-2 were not redone
    first_two = trainer.seconds
    assert first_two > 0  # the wall time of epochs 1-2, read from the checkpoint
    assert result.history[0]["seconds"] > first_two  # "seconds" counts across resumes


def test_training_improves_validation_retrieval(zoo_dir: str, tmp_path) -> None:
    cfg = TrainConfig(**{**CFG.to_dict(), "epochs": 6, "patience": 10, "lr": 3e-3})
    trainer = Trainer(zoo_dir, str(tmp_path / "run"), cfg)
    from zoolens.train.data import load_split
    from zoolens.train.trainer import validation_map

    before = validation_map(trainer.encoder, load_split(trainer.zoos[0], "val"))
    result = trainer.fit(progress=False)
    assert result.best_map > before


def test_cli_passes_every_option_and_the_run_records_its_tasks(zoo_dir: str, tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from zoolens.cli import app

    out = tmp_path / "run"
    args = ["train", "--zoo", zoo_dir, "--out", str(out), "--epochs", "1", "--hidden", "16"]
    held = ["--exclude-tasks", "siren", "--exclude-families", "mlp"]
    result = CliRunner().invoke(app, [*args, *held, "--tau", "0.07", "--readout-hidden", "24"])
    assert result.exit_code == 0, result.output
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["exclude_tasks"] == ["siren"] and cfg["tau"] == 0.07
    assert cfg["exclude_families"] == ["mlp"]
    assert cfg["trained_on"]["tasks"] == cfg["trained_on"]["families"] == ["cnn2d_bn"]
    assert "n_probes" not in cfg["encoder_config"]  # the encoder's own default applies
    assert cfg["encoder_config"]["readout_hidden"] == 24
    bad = CliRunner().invoke(app, [*args[:-2], "--hidden", "30"])  # 4 heads do not divide it
    assert bad.exit_code == 2 and "hidden 30 is not a multiple of heads 4" in bad.output


def test_training_fits_the_quality_head_that_ships_with_the_encoder(zoo_dir: str, tmp_path) -> None:
    result = train_encoder(zoo_dir, str(tmp_path / "run"), CFG, progress=False)
    fresh = type(result.encoder)({**CFG.encoder_config, "seed": CFG.seed})
    trained_head = {k: v for k, v in result.encoder.state_tensors().items() if "quality" in k}
    assert trained_head, "the quality head is part of the saved state"
    moved = [not torch.equal(v, fresh.state_tensors()[k]) for k, v in trained_head.items()]
    assert all(moved)


def test_tensorboard_scalars_equal_metrics_csv(zoo_dir: str, tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train_encoder(zoo_dir, str(out), replace(CFG, tensorboard=True), progress=False)
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == sorted(k for k in rows[0] if k != "epoch")
    for tag in events.Tags()["scalars"]:
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        expected = [(int(float(r["epoch"])), float(r[tag])) for r in rows]
        assert [s for s, _ in logged] == [s for s, _ in expected] == [1, 2]
        np.testing.assert_allclose([v for _, v in logged], [v for _, v in expected], rtol=1e-6)


def test_tensorboard_without_the_package_is_refused_before_training(
    zoo_dir: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from zoolens.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'zoolens\[train\]'$"):
        Trainer(zoo_dir, str(tmp_path / "run"), replace(CFG, tensorboard=True))
    assert not (tmp_path / "run").exists()


def test_functional_loss_is_zero_when_cosines_match_and_only_counts_marked_pairs() -> None:
    from zoolens.train.losses import functional_loss

    z = torch.nn.functional.normalize(
        torch.randn(5, 8, generator=torch.Generator().manual_seed(0)), dim=1
    )
    sim = z @ z.T
    same = torch.ones(5, 5, dtype=torch.bool) & ~torch.eye(5, dtype=torch.bool)
    assert float(functional_loss(z, sim, same)) < 1e-12
    off = sim.clone()
    off[0, 1] = off[1, 0] = sim[0, 1] + 0.5
    assert float(functional_loss(z, off, same)) == pytest.approx(2 * 0.25 / 20)
    only = torch.zeros(5, 5, dtype=torch.bool)
    only[2, 3] = True
    assert float(functional_loss(z, off, only)) < 1e-12  # the changed pair is not marked
    assert float(functional_loss(z, off, torch.zeros(5, 5, dtype=torch.bool))) == 0.0


def test_functional_profiles_compare_only_same_interfaces(zoo_dir: str) -> None:
    from zoolens.nn import NeuralGraphEncoder
    from zoolens.train.data import functional_profiles, load_split
    from zoolens.zoo import Zoo

    split = load_split(Zoo.open(zoo_dir), "train")
    enc = NeuralGraphEncoder({"hidden": 16, "dim": 32, "layers": 1, "readout_layers": 1})
    graphs = [enc.graph(n) for n in split.nets]
    rows, iface = functional_profiles(graphs, split.nets)
    assert rows.shape[0] == len(graphs)
    nonzero = rows.norm(dim=1) > 0
    torch.testing.assert_close(rows.norm(dim=1)[nonzero], torch.ones(int(nonzero.sum())))
    from zoolens.nn.fingerprint import output_responses

    keys = [
        (n.input_shape, output_responses(g).shape[1])
        for n, g in zip(split.nets, graphs, strict=True)
    ]
    for i in range(len(keys)):  # one code per (input shape, output count), and only one
        assert {keys[j] for j in range(len(keys)) if iface[j] == iface[i]} == {keys[i]}
    assert len(set(iface.tolist())) == len(set(keys)) > 1
    # a net's copy under an exact action has the same profile
    g = torch.Generator().manual_seed(1)
    twin = random_exact_action(split.nets[0].to(torch.float64), g).to(torch.float32)
    r2, _ = functional_profiles([enc.graph(twin)], [twin])
    torch.testing.assert_close(r2[0], rows[0], atol=1e-4, rtol=0)


def test_training_on_several_zoos_with_the_functional_term(zoo_dir: str, tmp_path) -> None:
    cfg = replace(CFG, functional=1.0, epochs=1)
    res = train_encoder([zoo_dir, zoo_dir], str(tmp_path / "run"), cfg, progress=False)
    row = res.history[0]
    assert row["functional"] > 0 and np.isfinite(row["loss"])
    with open(tmp_path / "run" / "train_config.json") as f:
        assert '"functional": 1.0' in f.read()


def test_init_fine_tunes_a_saved_encoder_from_its_weights(zoo_dir: str, tmp_path) -> None:
    from typer.testing import CliRunner

    from zoolens.cli import app
    from zoolens.nn import NeuralGraphEncoder

    stats = {"fingerprint": 0.3, "quality_stats": True, "seed": 4}  # a head on output stats
    base = NeuralGraphEncoder({**CFG.encoder_config, **stats})
    base.save(str(tmp_path / "base"))
    cfg = replace(CFG, init=str(tmp_path / "base"), encoder_config={"hidden": 64})
    trainer = Trainer(zoo_dir, str(tmp_path / "run"), cfg)
    start = trainer.encoder
    assert start.config.hidden == 16 and start.config.fingerprint == 0.0  # its own config
    for k, t in base.state_tensors().items():  # its weights, not a fresh draw
        assert torch.equal(start.state_tensors()[k], t), k
    fresh = Trainer(zoo_dir, str(tmp_path / "fresh"), CFG).encoder  # seed 0
    assert any(  # sensitivity: a fresh encoder of the same config differs
        not torch.equal(fresh.state_tensors()[k], t) for k, t in base.state_tensors().items()
    )
    result = trainer.fit(progress=False)
    moved = result.encoder.state_tensors()
    assert any(not torch.equal(moved[k], t) for k, t in base.state_tensors().items())

    args = ["train", "--zoo", zoo_dir, "--out", str(tmp_path / "cli"), "--epochs", "1"]
    ok = CliRunner().invoke(app, [*args, "--init", str(tmp_path / "base")])
    assert ok.exit_code == 0, ok.output
    clash = CliRunner().invoke(app, [*args, "--init", str(tmp_path / "base"), "--hidden", "64"])
    assert clash.exit_code == 2 and "drop --hidden" in clash.output
    missing = CliRunner().invoke(app, [*args, "--init", str(tmp_path / "nowhere")])
    assert missing.exit_code != 0 and "Traceback" not in missing.output
