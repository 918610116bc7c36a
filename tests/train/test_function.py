"""The function head: a learned map of the fingerprint, fit on a frozen encoder."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from zoolens.cli import app
from zoolens.errors import ZoolensError
from zoolens.eval import retrieval_metrics
from zoolens.ir import Net, load_net
from zoolens.nn import NeuralGraphEncoder, load_encoder
from zoolens.symmetry import random_exact_action
from zoolens.testing import FAMILIES, assert_invariant, cosine, random_net
from zoolens.train import TrainConfig, Trainer
from zoolens.train.function import fit_class_head, fit_function_head
from zoolens.train.quality import fit_quality_head
from zoolens.zoo import Zoo
from zoolens.zoo.importers import write_zoo

SMALL = {"hidden": 8, "dim": 16, "layers": 1, "readout_layers": 1, "n_probes": 32, "seed": 1}
HEADED = {**SMALL, "fingerprint": 0.2, "function_head": 0.4, "function_hidden": 32}


def _regressor(task: int, g: torch.Generator) -> Net:
    """A one-output net of 3 inputs that mostly follows ``± tanh(b * x[task])``: the
    sign is random, so same-task nets have fingerprints of cosine near -1 or +1."""
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    with torch.no_grad():
        model[0].weight.copy_(0.2 * torch.randn(8, 3, generator=g))
        model[0].weight[0, task] = 1.0 + 2.0 * torch.rand(1, generator=g)
        model[0].bias.copy_(0.2 * torch.randn(8, generator=g))
        model[2].weight.copy_(0.05 * torch.randn(1, 8, generator=g))
        model[2].weight[0, 0] = torch.sign(torch.randn(1, generator=g)) * 2.0
    net = load_net(model.eval(), input_shape=(3,))
    assert isinstance(net, Net)
    return net


def write_signs_zoo(
    out: str, n: int, family: Callable[[int], str], split: Callable[[int], str], seed: int
) -> str:
    """A zoo of `n` `_regressor` nets, model i of task ``x{i % 3}``, family and split by i."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        row = {
            "id": f"m{i:03d}",
            "task": f"x{i % 3}",
            "kind": "regression",
            "family": family(i),
            "r2": 0.5,
            "split": split(i),
            "index": i,
        }
        items.append((_regressor(i % 3, g), row))
    write_zoo(items, out)
    return out


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_signs_zoo(
        str(tmp_path_factory.mktemp("zoo") / "signs"),
        90,
        lambda i: "other" if i % 10 == 9 else "mlp",  # 9 models, all in train
        lambda i: "val" if i // 3 % 5 == 0 else "train",  # 6 per task
        seed=0,
    )


def _val(zoo_dir: str) -> tuple[list[Net], np.ndarray]:
    zoo = Zoo.open(zoo_dir)
    val = zoo.manifest[zoo.manifest["split"] == "val"]
    return [zoo.load(str(i)).to(torch.float32) for i in val["id"]], val["task"].to_numpy()


def test_headed_encoder_is_invariant_and_sensitive() -> None:
    """Every part of the embedding (learned, fingerprint, head) is exactly invariant and
    still tells different nets apart (an untrained head spreads them little: 1 - cos
    ~1e-4, against ~1e-15 under an action)."""
    g = torch.Generator().manual_seed(2)
    enc = NeuralGraphEncoder(HEADED)
    assert enc.dim == 16 + 256 + 128 and enc.function is not None
    nets = [random_net(f, g) for f in FAMILIES]
    for net in nets:
        assert_invariant(enc, net, g)
    z, moved = enc.encode(nets), enc.encode([random_exact_action(n, g) for n in nets])
    n = len(nets)
    for cols in (slice(0, 16), slice(16, 272), slice(272, None)):
        p, q = z[:, cols], moved[:, cols]
        apart = min(1 - cosine(p[i], p[j]) for i in range(n) for j in range(i))
        same = max(1 - cosine(p[i], q[i]) for i in range(n))
        assert same < 1e-9 and apart > 1e-5, (cols, same, apart)


def test_three_part_cosine_and_round_trip(tmp_path) -> None:
    g = torch.Generator().manual_seed(4)
    nets = [random_net(f, g) for f in FAMILIES]
    enc = NeuralGraphEncoder(HEADED)
    z = enc.encode(nets).astype(np.float64)
    learned = NeuralGraphEncoder(SMALL).encode(nets)
    graphs = enc.graphs(nets)
    fp = enc.fingerprints(graphs)
    assert enc.function is not None
    with torch.no_grad():
        head = enc.function(torch.from_numpy(fp)).numpy()
    for i in range(3):
        for j in range(i):
            want = (
                0.4 * cosine(learned[i], learned[j])
                + 0.2 * cosine(fp[i], fp[j])
                + 0.4 * cosine(head[i], head[j])
            )
            assert abs(cosine(z[i], z[j]) - want) < 1e-5
    enc.save(str(tmp_path / "enc"))
    back = load_encoder(str(tmp_path / "enc"))
    assert back.id == enc.id and np.array_equal(back.encode(nets), enc.encode(nets))
    dropped = enc.with_fingerprint(0.3, head=0.0)  # the head can be weighed, or dropped
    assert dropped.function is None and dropped.dim == 16 + 256
    assert np.allclose(dropped.encode(nets)[:, :16] / np.sqrt(0.7), learned, atol=1e-6)
    reweighed = enc.with_fingerprint(0.1, head=0.5).encode(nets)
    assert np.allclose(reweighed[:, -128:] / np.sqrt(0.5), z[:, -128:] / np.sqrt(0.4), atol=1e-6)
    with pytest.raises(ValueError, match="no function head"):
        NeuralGraphEncoder(SMALL).with_fingerprint(0.2, head=0.3)
    for bad in ({"function_head": -0.1}, {"function_head": 0.6, "fingerprint": 0.4}):
        with pytest.raises(ValueError, match="function head weight"):
            NeuralGraphEncoder({**SMALL, **bad})


@pytest.mark.slow
def test_fit_learns_what_the_raw_fingerprint_misses(zoo_dir: str) -> None:
    """Same task, random output sign: the raw fingerprint splits each task in two, the
    fitted head joins them; the frozen parts and the argument stay as they were."""
    enc = NeuralGraphEncoder({**SMALL, "fingerprint": 0.5})
    before = {k: v.clone() for k, v in enc.state_tensors().items()}
    fit = fit_function_head(enc, zoo_dir, 0.6, fingerprint=0.2, steps=300, tau=0.1)
    assert all(torch.equal(before[k], v) for k, v in enc.state_tensors().items())
    assert fit.n_train == 72 and fit.encoder.config["function_head"] == 0.6
    nets, tasks = _val(zoo_dir)
    assert fit.val_map_before == pytest.approx(retrieval_metrics(enc.encode(nets), tasks)["mAP"])
    assert fit.val_map_after > fit.val_map_before + 0.15, (fit.val_map_before, fit.val_map_after)
    head_only = fit.encoder.encode(nets)[:, -128:]
    assert retrieval_metrics(head_only, tasks)["mAP"] > 0.9
    state = fit.encoder.state_tensors()
    assert all(torch.equal(state[k], v) for k, v in before.items())  # module, quality head
    g = torch.Generator().manual_seed(5)
    z = fit.encoder.encode(nets[:4] + [random_exact_action(n, g) for n in nets[:4]])
    assert min(cosine(z[i], z[i + 4]) for i in range(4)) > 0.9999
    requality = fit_quality_head(fit.encoder, zoo_dir, stats=True, steps=5, weight_decays=(1.0,))
    assert np.array_equal(requality.encoder.encode(nets), fit.encoder.encode(nets))


def test_fit_keeps_out_what_it_is_told(zoo_dir: str) -> None:
    enc = NeuralGraphEncoder(SMALL)
    fit = fit_function_head(enc, zoo_dir, 0.3, exclude_tasks=["x1"], steps=5)
    assert fit.n_train == 72 - 24
    fit = fit_function_head(enc, zoo_dir, 0.3, exclude_families=["other"], steps=5)
    assert fit.n_train == 72 - 9
    with pytest.raises(ValueError, match="expected > 0"):
        fit_function_head(enc, zoo_dir, 0.0)
    with pytest.raises(ValueError, match="fewer than 2"):
        fit_function_head(enc, zoo_dir, 0.3, exclude_tasks=["x0", "x1", "x2"])


def test_cli_fit_function(zoo_dir: str, tmp_path) -> None:
    enc_dir, out = str(tmp_path / "enc"), str(tmp_path / "fitted")
    NeuralGraphEncoder(SMALL).save(enc_dir)
    runner = CliRunner()
    args = ["fit-function", "--zoo", zoo_dir, "--encoder", enc_dir, "--out", out]
    result = runner.invoke(app, [*args, "--steps", "20", "--exclude-tasks", "x2"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["n_train"] == 72 - 24 and summary["encoder_dir"] == out
    assert load_encoder(out).config["function_head"] == 0.4
    assert load_encoder(out).config["fingerprint_norm"] == "none"
    normed = runner.invoke(app, [*args, "--steps", "5", "--fingerprint-norm", "zscore"])
    assert normed.exit_code == 0 and load_encoder(out).config["fingerprint_norm"] == "zscore"
    wrong_norm = runner.invoke(app, [*args, "--fingerprint-norm", "l2"])
    assert wrong_norm.exit_code != 0 and "--fingerprint-norm" in wrong_norm.output
    assert "Traceback" not in wrong_norm.output
    bad = runner.invoke(app, ["fit-function", "--zoo", str(tmp_path / "nope"), *args[3:]])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    assert os.path.exists(os.path.join(out, "config.json"))  # the earlier result is kept
    lw = ["fit-function", "--zoo", zoo_dir, "--encoder", "layerwise", "--out", str(tmp_path)]
    wrong = runner.invoke(app, lw)
    assert wrong.exit_code != 0 and "not a neural-graph" in wrong.output


def test_training_refuses_a_function_head(zoo_dir: str, tmp_path) -> None:
    """The trainer does not fit the head; an encoder config asking for one is refused
    rather than trained with a random head in its embedding."""
    cfg = TrainConfig(epochs=1, encoder_config={**SMALL, "function_head": 0.3})
    with pytest.raises(ZoolensError, match="fit-function"):
        Trainer(zoo_dir, str(tmp_path / "run"), cfg)


def test_class_head_joins_what_the_raw_fingerprint_splits(zoo_dir: str) -> None:
    """The class head classifies the fingerprint into the train split's groups: both
    output signs of a task land in one class. Its part is a probability row, exactly
    invariant, different for different tasks; the function head fit before stays."""
    enc = fit_function_head(NeuralGraphEncoder(HEADED), zoo_dir, 0.3, steps=20).encoder
    fit = fit_class_head(enc, zoo_dir, 0.3, steps=300)
    assert fit.encoder.config["class_count"] == 3 and fit.encoder.classes is not None
    assert fit.encoder.dim == 16 + 256 + 128 + 3
    nets, tasks = _val(zoo_dir)
    assert fit.val_map_after > fit.val_map_before + 0.15, (fit.val_map_before, fit.val_map_after)
    probs = fit.encoder.encode(nets)[:, -3:] / np.sqrt(0.3)
    np.testing.assert_allclose(np.linalg.norm(probs, axis=1), 1.0, atol=1e-5)
    assert retrieval_metrics(probs, tasks)["mAP"] > 0.9
    assert enc.function is not None and fit.encoder.function is not None
    for key, v in enc.function.state_dict().items():
        assert torch.equal(fit.encoder.function.state_dict()[key], v)
    g = torch.Generator().manual_seed(6)
    moved = fit.encoder.encode([random_exact_action(n, g) for n in nets[:4]])[:, -3:]
    np.testing.assert_allclose(moved / np.sqrt(0.3), probs[:4], atol=1e-6)
    refit = fit_function_head(fit.encoder, zoo_dir, 0.3, steps=5).encoder
    assert refit.classes is not None  # fitting one head keeps the other
    np.testing.assert_allclose(
        refit.encode(nets)[:, -3:], fit.encoder.encode(nets)[:, -3:], atol=1e-6
    )


def test_class_head_weights_and_round_trip(zoo_dir: str, tmp_path) -> None:
    enc = fit_class_head(NeuralGraphEncoder(SMALL), zoo_dir, 0.25, steps=5).encoder
    nets, _ = _val(zoo_dir)
    enc.save(str(tmp_path / "enc"))
    back = load_encoder(str(tmp_path / "enc"))
    assert back.id == enc.id and np.array_equal(back.encode(nets), enc.encode(nets))
    assert isinstance(back, NeuralGraphEncoder)
    dropped = back.with_fingerprint(0.0, classes=0.0)
    assert dropped.classes is None and dropped.dim == 16
    with pytest.raises(ValueError, match="no class head"):
        NeuralGraphEncoder(SMALL).with_fingerprint(0.0, classes=0.2)
    with pytest.raises(ValueError, match="class_count"):
        NeuralGraphEncoder({**SMALL, "class_head": 0.2})
    with pytest.raises(ValueError, match="class head weight"):
        NeuralGraphEncoder({**SMALL, "class_head": 0.6, "class_count": 3, "fingerprint": 0.5})
    with pytest.raises(ValueError, match="probe"):  # the class head reads the fingerprint
        NeuralGraphEncoder({**SMALL, "class_head": 0.2, "class_count": 3, "n_probes": 0})
    runner = CliRunner()
    out = str(tmp_path / "cli")
    args = ["fit-function", "--zoo", zoo_dir, "--encoder", str(tmp_path / "enc"), "--out", out]
    result = runner.invoke(app, [*args, "--head", "class", "--steps", "5", "--weight", "0.2"])
    assert result.exit_code == 0, result.output
    assert load_encoder(out).config["class_head"] == 0.2
    bad = runner.invoke(app, [*args, "--head", "softmax"])
    assert bad.exit_code != 0 and "--head" in bad.output and "Traceback" not in bad.output
    cfg = TrainConfig(epochs=1, encoder_config={**SMALL, "class_head": 0.2, "class_count": 3})
    with pytest.raises(ZoolensError, match="fit-function"):
        Trainer(zoo_dir, str(tmp_path / "run"), cfg)
