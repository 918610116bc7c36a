"""Refitting the quality head on a frozen encoder, with the function's output statistics."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn
from typer.testing import CliRunner

from zoolens.cli import app
from zoolens.graph import default_probes, net_to_graph
from zoolens.ir import Net, load_net
from zoolens.nn import LayerwiseEncoder, NeuralGraphEncoder, load_encoder
from zoolens.nn.fingerprint import STATISTICS, output_statistics
from zoolens.symmetry import random_exact_action
from zoolens.train.quality import fit_quality_head
from zoolens.zoo import Zoo
from zoolens.zoo.importers import write_zoo

SMALL = {"hidden": 8, "dim": 16, "layers": 1, "readout_layers": 1, "n_probes": 32, "seed": 1}


def _mlp(scale: float, seed: int) -> Net:
    """A random 2-layer MLP classifier whose logits are multiplied by `scale`."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 4))
    with torch.no_grad():
        model[2].weight.mul_(scale)
        model[2].bias.mul_(scale)
    net = load_net(model.eval(), input_shape=(6,))
    assert isinstance(net, Net)
    return net


def _target(scale: float) -> float:
    """The zoo's 'accuracy': rises with the logit scale (how decided the function is)."""
    return float(0.1 + 0.8 * np.log(scale / 0.2) / np.log(40.0))


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    rng = np.random.default_rng(0)
    items = []
    for i in range(60):
        scale = float(0.2 * 40.0 ** rng.uniform())
        row = {
            "id": f"m{i:03d}",
            "task": "t",
            "kind": "classification",
            "family": "mlp",
            "accuracy": _target(scale),
            "split": ("train", "train", "val")[i % 3],
            "index": i,
        }
        items.append((_mlp(scale, i), row))
    out = str(tmp_path_factory.mktemp("zoo") / "scaled")
    write_zoo(items, out)
    return out


def test_output_statistics_are_invariant_and_sensitive() -> None:
    g = torch.Generator().manual_seed(0)
    probes = default_probes((6,), 32)
    net = _mlp(3.0, 0).to(torch.float64)
    stats = output_statistics([net_to_graph(n, probes=probes) for n in (net, _mlp(0.3, 0))])
    assert stats.shape == (2, len(STATISTICS))
    moved = random_exact_action(net, g)
    same = output_statistics([net_to_graph(moved, probes=probes)])
    assert torch.allclose(stats[0], same[0], atol=1e-5)
    confidence = STATISTICS.index("confidence")
    assert stats[0, confidence] > stats[1, confidence] + 0.1  # larger logits: more decided
    single = nn.Sequential(nn.Linear(6, 1)).eval()
    regressor = load_net(single, input_shape=(6,))
    assert isinstance(regressor, Net)
    row = output_statistics([net_to_graph(regressor, probes=probes)])[0]
    assert row[STATISTICS.index("single_output")] == 1 and row[confidence] == 0


def test_refit_head_reads_the_statistics(zoo_dir: str, tmp_path) -> None:
    enc = NeuralGraphEncoder(SMALL)
    before = {k: v.clone() for k, v in enc.state_tensors().items()}
    fit = fit_quality_head(enc, zoo_dir, stats=True, steps=600, weight_decays=(1e-3, 1e-1))
    assert set(fit.val_r2) == {1e-3, 1e-1} and fit.n_train == 40 and fit.n_val == 20
    assert max(fit.val_r2.values()) == fit.val_r2[fit.weight_decay] > 0.8
    assert all(torch.equal(before[k], v) for k, v in enc.state_tensors().items())  # untouched
    refit = fit.encoder
    assert refit.config.quality_stats and refit.quality_extra_dim == len(STATISTICS)
    zoo = Zoo.open(zoo_dir)
    val = zoo.manifest[zoo.manifest["split"] == "val"]
    nets = [zoo.load(str(i)).to(torch.float32) for i in val["id"]]
    pred = refit.predict_quality(nets)
    assert spearmanr(pred, val["accuracy"]).statistic > 0.8
    assert np.array_equal(refit.encode(nets), enc.encode(nets))  # embeddings unchanged
    # invariant: a transformed copy gets the same prediction; sensitive: they spread
    g = torch.Generator().manual_seed(3)
    moved = [random_exact_action(n, g) for n in nets[:5]]
    assert np.allclose(refit.predict_quality(moved), pred[:5], atol=1e-4)
    assert pred.std() > 0.1
    # saved and loaded, it predicts the same; without the statistics it refuses
    refit.save(str(tmp_path / "enc"))
    back = load_encoder(str(tmp_path / "enc"))
    assert np.allclose(back.predict_quality(nets), pred, atol=1e-6)
    z, _ = refit.quality_inputs(nets)
    with pytest.raises(ValueError, match="also reads"):
        refit.quality_logits(z)


@pytest.mark.slow
def test_learned_only_head_misses_what_the_statistics_give(zoo_dir: str) -> None:
    """On this zoo the quality is how decided the function is; an untrained encoder's
    learned embedding alone predicts it worse than with the statistics."""
    enc = NeuralGraphEncoder(SMALL)
    plain = fit_quality_head(enc, zoo_dir, stats=False, steps=600, weight_decays=(1e-3, 1e-1))
    stats = fit_quality_head(enc, zoo_dir, stats=True, steps=600, weight_decays=(1e-3, 1e-1))
    assert not plain.encoder.config.quality_stats and plain.encoder.quality_extra_dim == 0
    assert max(stats.val_r2.values()) > max(plain.val_r2.values()) + 0.03  # 0.81 vs 0.74


def test_layerwise_has_no_statistics(zoo_dir: str) -> None:
    with pytest.raises(ValueError, match="no function statistics"):
        fit_quality_head(LayerwiseEncoder({"dim": 16}), zoo_dir, stats=True, steps=10)


@pytest.mark.slow
def test_cli_fit_quality(zoo_dir: str, tmp_path) -> None:
    enc_dir, out = str(tmp_path / "enc"), str(tmp_path / "refit")
    NeuralGraphEncoder(SMALL).save(enc_dir)
    runner = CliRunner()
    args = ["fit-quality", "--zoo", zoo_dir, "--encoder", enc_dir, "--out", out]
    result = runner.invoke(app, [*args, "--steps", "200"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["n_train"] == 40 and summary["encoder_dir"] == out
    assert load_encoder(out).config.quality_stats is True
    bad = runner.invoke(app, ["fit-quality", "--zoo", str(tmp_path / "nope"), "--out", out])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    assert os.path.exists(os.path.join(out, "config.json"))  # the earlier result is kept
