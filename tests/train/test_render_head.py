"""The render head: a CNN classifier of coordinate nets' drawings, fit on a frozen encoder."""

from __future__ import annotations

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
from zoolens.testing import cosine
from zoolens.train import TrainConfig, Trainer
from zoolens.train.data import group_labels
from zoolens.train.function import fit_class_head, fit_render_head
from zoolens.zoo import Zoo
from zoolens.zoo.importers import write_zoo

from .test_function import SMALL, _regressor, write_signs_zoo

# the direction of an INR's edge: along x, along y, along the diagonal
_EDGES = ((1.0, 0.0), (0.0, 1.0), (0.7, 0.7))


def _inr(label: int, g: torch.Generator) -> Net:
    """A coordinate net drawing a soft edge across the image in direction `_EDGES[label]`,
    at a random offset and sharpness, over small random clutter."""
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    with torch.no_grad():
        model[0].weight.copy_(0.3 * torch.randn(8, 2, generator=g))
        model[0].weight[0] = (2.0 + 2.0 * torch.rand(1, generator=g)) * torch.tensor(_EDGES[label])
        model[0].bias.copy_(0.5 * torch.randn(8, generator=g))
        model[2].weight.copy_(0.1 * torch.randn(1, 8, generator=g))
        model[2].weight[0, 0] = 2.0
    net = load_net(model.eval(), input_shape=(2,))
    assert isinstance(net, Net)
    return net


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """60 INRs (20 per edge direction; a quarter of each in val) and 30 regressors."""
    g = torch.Generator().manual_seed(3)
    items = []
    for i in range(60):
        row = {
            "id": f"inr{i:03d}",
            "task": "inr-edges",
            "kind": "inr",
            "label": i % 3,
            "family": "inr-tanh",
            "split": "val" if i // 3 % 4 == 0 else "train",
            "index": i,
        }
        items.append((_inr(i % 3, g), row))
    for i in range(30):
        row = {
            "id": f"reg{i:03d}",
            "task": f"x{i % 3}",
            "kind": "regression",
            "family": "mlp",
            "r2": 0.5,
            "split": "val" if i // 3 % 4 == 0 else "train",
            "index": 60 + i,
        }
        items.append((_regressor(i % 3, g), row))
    out = str(tmp_path_factory.mktemp("zoo") / "edges")
    write_zoo(items, out)
    return out


def _val(zoo_dir: str) -> tuple[list[Net], np.ndarray, np.ndarray]:
    zoo = Zoo.open(zoo_dir)
    val = zoo.manifest[zoo.manifest["split"] == "val"]
    nets = [zoo.load(str(i)).to(torch.float32) for i in val["id"]]
    return nets, group_labels(val), (val["kind"] == "inr").to_numpy()


@pytest.mark.slow
def test_render_head_tells_the_drawings_apart(zoo_dir: str) -> None:
    """Fit on the train INRs' drawings, the head puts each val INR with its edge direction;
    its part is a probability row for INRs, one shared orthogonal row for every other
    net, and exactly invariant; the class head fit before is kept."""
    base = fit_class_head(NeuralGraphEncoder(SMALL), zoo_dir, 0.2, steps=5).encoder
    fit = fit_render_head(base, zoo_dir, 0.3, steps=200)
    enc = fit.encoder
    assert enc.config["render_count"] == 3 and enc.render is not None
    assert enc.dim == base.dim + 4 and fit.n_train == 45  # the train INRs
    assert fit.val_map_after > fit.val_map_before + 0.1, (fit.val_map_before, fit.val_map_after)
    nets, groups, inr = _val(zoo_dir)
    part = enc.encode(nets)[:, -4:] / np.sqrt(0.3)
    np.testing.assert_allclose(np.linalg.norm(part, axis=1), 1.0, atol=1e-5)
    assert (part[inr, :3] >= 0).all() and not part[inr, 3].any()
    np.testing.assert_allclose(part[~inr], [[0, 0, 0, 1]] * int((~inr).sum()), atol=1e-6)
    assert retrieval_metrics(part[inr], groups[inr])["mAP"] > 0.95
    assert base.classes is not None and enc.classes is not None
    for key, v in base.classes.state_dict().items():
        assert torch.equal(enc.classes.state_dict()[key], v)
    g = torch.Generator().manual_seed(7)
    idx = np.flatnonzero(inr)[:4]
    moved = enc.encode([random_exact_action(nets[i], g) for i in idx])[:, -4:] / np.sqrt(0.3)
    np.testing.assert_allclose(moved, part[idx], atol=1e-6)


def test_render_part_moves_no_other_ranking(zoo_dir: str, tmp_path) -> None:
    """The cosine of two embeddings is the weighted sum of their parts' cosines; the
    render part's is 0 between a drawn and an undrawn net and 1 between two undrawn ones.
    With the other weights scaled by 1 - r, the cosines among undrawn nets are the old
    ones times 1 - r plus r: their order stays."""
    base = NeuralGraphEncoder({**SMALL, "fingerprint": 0.2})
    enc = fit_render_head(base, zoo_dir, 0.25, steps=5).encoder
    scaled = enc.with_fingerprint(0.2 * 0.75, render=0.25)
    nets, _, inr = _val(zoo_dir)
    z, old = scaled.encode(nets), base.encode(nets)
    probs = z[:, -4:-1] / np.sqrt(0.25)
    for i in range(len(nets)):
        for j in range(i):
            rest = 0.75 * cosine(old[i], old[j])
            render = 0.25 * float(probs[i] @ probs[j]) if inr[i] and inr[j] else 0.0
            render = 0.25 if not (inr[i] or inr[j]) else render
            assert abs(cosine(z[i], z[j]) - rest - render) < 1e-5
    enc.save(str(tmp_path / "enc"))
    back = load_encoder(str(tmp_path / "enc"))
    assert back.id == enc.id and np.array_equal(back.encode(nets), enc.encode(nets))
    assert isinstance(back, NeuralGraphEncoder)
    dropped = back.with_fingerprint(0.2, render=0.0)
    assert dropped.render is None and np.allclose(dropped.encode(nets), old, atol=1e-6)


def test_render_head_refusals(zoo_dir: str, tmp_path) -> None:
    with pytest.raises(ValueError, match="no render head"):
        NeuralGraphEncoder(SMALL).with_fingerprint(0.0, render=0.2)
    with pytest.raises(ValueError, match="render_count"):
        NeuralGraphEncoder({**SMALL, "render_head": 0.2})
    with pytest.raises(ValueError, match="render head weight"):
        NeuralGraphEncoder({**SMALL, "render_head": 0.6, "render_count": 3, "fingerprint": 0.5})
    with pytest.raises(ValueError, match="render head weight"):
        fit_render_head(NeuralGraphEncoder(SMALL), zoo_dir, 0.0)
    cfg = TrainConfig(epochs=1, encoder_config={**SMALL, "render_head": 0.2, "render_count": 3})
    with pytest.raises(ZoolensError, match="fit-function"):
        Trainer(zoo_dir, str(tmp_path / "run"), cfg)
    no_inrs = write_signs_zoo(str(tmp_path / "signs"), 30, lambda i: "mlp", lambda i: "train", 1)
    with pytest.raises(ValueError, match="too few"):
        fit_render_head(NeuralGraphEncoder(SMALL), no_inrs, 0.2, steps=5)


def test_cli_fit_render_head(zoo_dir: str, tmp_path) -> None:
    NeuralGraphEncoder(SMALL).save(str(tmp_path / "enc"))
    runner = CliRunner()
    out = str(tmp_path / "cli")
    args = ["fit-function", "--zoo", zoo_dir, "--encoder", str(tmp_path / "enc"), "--out", out]
    result = runner.invoke(app, [*args, "--head", "render", "--steps", "5", "--weight", "0.2"])
    assert result.exit_code == 0, result.output
    assert "val_mAP_after" in result.output
    back = load_encoder(out)
    assert back.config["render_head"] == 0.2 and back.config["render_count"] == 3
    no_inrs = write_signs_zoo(str(tmp_path / "signs"), 30, lambda i: "mlp", lambda i: "train", 1)
    bad = runner.invoke(app, [*args[:1], "--zoo", no_inrs, *args[3:], "--head", "render"])
    assert bad.exit_code != 0 and "too few" in bad.output and "Traceback" not in bad.output
