"""Importers for published zoo layouts, each on a small fixture written in that layout and
checked against an independent reference implementation of the network."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from zoolens.errors import LoadError
from zoolens.ir import Net, TensorSet
from zoolens.zoo import COLUMNS, Zoo
from zoolens.zoo.importers import read_inr_zoo, read_model_zoo, read_small_cnn_zoo, write_zoo

# -- Small CNN Zoo: weights.npy + layout.csv + metrics.csv.gz (TensorFlow layout) ---------
_TF_VARS = [
    ("sequential/conv2d/bias:0", (16,)),
    ("sequential/conv2d/kernel:0", (3, 3, 1, 16)),
    ("sequential/conv2d_1/bias:0", (16,)),
    ("sequential/conv2d_1/kernel:0", (3, 3, 16, 16)),
    ("sequential/conv2d_2/bias:0", (16,)),
    ("sequential/conv2d_2/kernel:0", (3, 3, 16, 16)),
    ("sequential/dense/bias:0", (10,)),
    ("sequential/dense/kernel:0", (16, 10)),
]
_ACTS = ["relu", "tanh", "relu", "selu"]


def write_small_cnn_zoo(root: Path) -> np.ndarray:
    rows, start = [], 0
    for name, shape in _TF_VARS:
        size = int(np.prod(shape))
        rows.append(
            {
                "varname": name,
                "start_idx": start,
                "end_idx": start + size,
                "size": size,
                "shape": str(shape),
            }
        )
        start += size
    assert start == 4970  # the published parameter count
    weights = np.random.default_rng(0).normal(0, 0.4, (len(_ACTS), start)).astype(np.float32)
    root.mkdir(parents=True)
    np.save(root / "weights.npy", weights)
    pd.DataFrame(rows).to_csv(root / "layout.csv", index=False)
    pd.DataFrame(
        {
            "test_accuracy": [0.91, 0.42, 0.3, 0.8],
            "step": [86, 86, 20, 86],
            "config.activation": _ACTS,
            "config.learning_rate": [1e-3, 5e-3, 1e-2, 1e-3],
            "config.optimizer": ["adam", "sgd", "adam", "rmsprop"],
            "config.l2reg": 1e-4,
            "config.dropout": [0.0, 0.2, 0.0, 0.1],
            "config.init_std": 0.05,
            "config.train_fraction": [1.0, 0.5, 1.0, 0.25],
            "config.dataset": "mnist",
        }
    ).to_csv(root / "metrics.csv.gz", index=False, compression="gzip")
    return weights


def reference_small_cnn(flat: np.ndarray, act: str, x: np.ndarray) -> np.ndarray:
    """NHWC, HWIO, 'valid' stride-2 convolutions written out with einsum (float64)."""
    params, start = {}, 0
    for name, shape in _TF_VARS:
        size = int(np.prod(shape))
        params[name] = flat[start : start + size].reshape(shape).astype(np.float64)
        start += size
    f = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh}[act]
    h = x.astype(np.float64)  # (B, H, W, C)
    for scope in ("conv2d", "conv2d_1", "conv2d_2"):
        k, b = params[f"sequential/{scope}/kernel:0"], params[f"sequential/{scope}/bias:0"]
        oh, ow = (h.shape[1] - 3) // 2 + 1, (h.shape[2] - 3) // 2 + 1
        out = sum(
            np.einsum(
                "bijc,co->bijo", h[:, i : i + 2 * oh - 1 : 2, j : j + 2 * ow - 1 : 2], k[i, j]
            )
            for i in range(3)
            for j in range(3)
        )
        h = f(out + b)
    gap = h.mean(axis=(1, 2))
    return gap @ params["sequential/dense/kernel:0"] + params["sequential/dense/bias:0"]


def test_small_cnn_zoo_matches_the_tensorflow_layout_reference(tmp_path: Path) -> None:
    weights = write_small_cnn_zoo(tmp_path / "mnist")
    items = list(read_small_cnn_zoo(str(tmp_path / "mnist")))
    assert [r["id"] for _, r in items] == ["scnn-000000", "scnn-000001", "scnn-000003"]
    x = np.random.default_rng(1).normal(size=(4, 28, 28, 1)).astype(np.float32)
    for net, row in items[:2]:
        assert isinstance(net, Net) and net.num_params() == 4970 == row["num_params"]
        i = int(row["index"])
        got = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().double().numpy()
        np.testing.assert_allclose(
            got, reference_small_cnn(weights[i], _ACTS[i], x), rtol=1e-4, atol=1e-5
        )
        assert row["accuracy"] == [0.91, 0.42][i] and row["task"] == "mnist"
        assert row["activation"] == _ACTS[i] and row["lr"] == [1e-3, 5e-3][i]
    unsupported, row = items[2]
    assert isinstance(unsupported, TensorSet) and "selu" in unsupported.meta["unsupported"]


# -- DWSNets / NFN INRs: **/checkpoints/model_final.pth with seq.N.weight/bias ------------
def siren_state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sizes = [(32, 2), (32, 32), (1, 32)]
    state = {}
    for i, (o, n) in enumerate(sizes):
        state[f"seq.{i}.weight"] = (torch.rand(o, n, generator=g) * 2 - 1) / n
        state[f"seq.{i}.bias"] = torch.rand(o, generator=g) * 0.1
    return state


def reference_inr(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """DWSNets' INR: Siren layers sin(30 (W x + b)), a Linear, then + 0.5."""
    h = x.double()
    for i in range(2):
        h = torch.sin(
            30.0 * (h @ state[f"seq.{i}.weight"].double().T + state[f"seq.{i}.bias"].double())
        )
    return h @ state["seq.2.weight"].double().T + state["seq.2.bias"].double() + 0.5


def test_inr_zoo_matches_the_siren_reference(tmp_path: Path) -> None:
    dirs = {"mnist_png_training_2_23645": 2, "mnist_png_testing_7_00012": 7, "4/abc": 4}
    states = {}
    for k, name in enumerate(dirs):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        states[name] = siren_state(k)
        torch.save(states[name], tmp_path / name / "checkpoints" / "model_final.pth")
    x = torch.rand(50, 2) * 2 - 1
    items = list(read_inr_zoo(str(tmp_path)))
    assert len(items) == 3
    for net, row in items:
        name = next(n for n in dirs if row["id"] == n.replace("/", "_"))
        assert row["label"] == dirs[name] and row["kind"] == "inr"
        assert [op.fn for op in net.ops if op.kind == "act"] == ["sin", "sin"]
        torch.testing.assert_close(
            net(x).double(), reference_inr(states[name], x), rtol=1e-5, atol=1e-5
        )
        assert (
            row["split"] == "test"
            if "testing" in name
            else row["split"] in {"train", "val", "test"}
        )


class Evil:
    pass


def test_inr_zoo_refuses_unsafe_or_foreign_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "a" / "checkpoints").mkdir(parents=True)
    torch.save(
        {"seq.0.weight": torch.zeros(2, 2), "x": Evil()},
        tmp_path / "a" / "checkpoints" / "model_final.pth",
    )
    with pytest.raises(LoadError, match="weights-only"):
        list(read_inr_zoo(str(tmp_path)))
    torch.save(
        {"layers.0.weight": torch.zeros(2, 2)}, tmp_path / "a" / "checkpoints" / "model_final.pth"
    )
    with pytest.raises(LoadError, match=r"seq\.N"):
        list(read_inr_zoo(str(tmp_path)))


# -- Schürholt et al. model zoos: params.json + result.json + checkpoint_*/checkpoints ----
class ReferenceCNN(nn.Module):
    """The model-zoo 'CNN' (28x28 inputs) with dropout, layer by layer."""

    def __init__(self) -> None:
        super().__init__()
        self.module_list = nn.ModuleList(
            [
                nn.Conv2d(1, 8, 5),
                nn.MaxPool2d(2, 2),
                nn.Tanh(),
                nn.Dropout(0.1),
                nn.Conv2d(8, 6, 5),
                nn.MaxPool2d(2, 2),
                nn.Tanh(),
                nn.Dropout(0.1),
                nn.Conv2d(6, 4, 2),
                nn.Tanh(),
                nn.Flatten(),
                nn.Linear(36, 20),
                nn.Tanh(),
                nn.Dropout(0.1),
                nn.Linear(20, 10),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.module_list:
            x = m(x)
        return x


def write_model(root: Path, name: str, config: dict, states: dict[int, dict]) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(config))
    lines = [
        json.dumps({"training_iteration": e, "test_acc": 0.5 + e / 100, "test_loss": 1.0})
        for e in range(1, max(states) + 1)
    ]
    (folder / "result.json").write_text("\n".join(lines) + "\n")
    for epoch, state in states.items():
        (folder / f"checkpoint_{epoch:06d}").mkdir()
        torch.save(state, folder / f"checkpoint_{epoch:06d}" / "checkpoints")


def test_model_zoo_reads_cnn_mlp_and_falls_back_to_tensorsets(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cnn = ReferenceCNN().eval()
    mlp = nn.Sequential(
        nn.Linear(10, 8), nn.LeakyReLU(), nn.Linear(8, 6), nn.LeakyReLU(), nn.Linear(6, 3)
    )
    mlp_state = {f"module_list.{k}": v for k, v in mlp.state_dict().items()}
    base = {
        "optim::lr": 3e-4,
        "optim::optimizer": "adam",
        "optim::wd": 1e-3,
        "seed": 7,
        "training::batchsize": 32,
    }
    cnn_cfg = {
        **base,
        "model::type": "CNN",
        "model::channels_in": 1,
        "model::nlin": "tanh",
        "model::dropout": 0.1,
        "model::init_type": "kaiming_uniform",
    }
    write_model(
        tmp_path,
        "NN_tune_trainable_a_00000_0_seed=7",
        cnn_cfg,
        {1: {k: v * 0 for k, v in cnn.state_dict().items()}, 2: cnn.state_dict()},
    )
    write_model(
        tmp_path,
        "NN_tune_trainable_a_00001_1_seed=8",
        {
            **base,
            "model::type": "MLP",
            "model::i_dim": 10,
            "model::h_dim": [8, 6],
            "model::o_dim": 3,
            "model::nlin": "leakyrelu",
            "model::dropout": 0.0,
            "model::use_bias": True,
        },
        {5: mlp_state},
    )
    write_model(
        tmp_path,
        "NN_tune_trainable_a_00002_2_seed=9",
        {**base, "model::type": "Resnet18"},
        {3: {"conv.weight": torch.ones(2, 2)}},
    )
    items = list(read_model_zoo(str(tmp_path), task="mnist"))
    (net_c, row_c), (net_m, _), (other, _) = items
    x = torch.randn(5, 1, 28, 28)
    torch.testing.assert_close(net_c(x), cnn(x), rtol=1e-5, atol=1e-6)
    assert row_c["epochs"] == 2 and row_c["accuracy"] == pytest.approx(0.52)
    assert row_c["activation"] == "tanh" and row_c["lr"] == 3e-4 and row_c["seed"] == 7
    v = torch.randn(5, 10)
    torch.testing.assert_close(net_m(v), mlp(v), rtol=1e-5, atol=1e-6)
    assert isinstance(other, TensorSet) and "Resnet18" in other.meta["unsupported"]
    first = next(read_model_zoo(str(tmp_path), epoch=1))[0]
    assert isinstance(first, Net) and all(float(t.abs().sum()) == 0 for t in first.parameters())


def test_imported_models_become_a_zoo(tmp_path: Path) -> None:
    write_small_cnn_zoo(tmp_path / "scnn")
    zoo = write_zoo(read_small_cnn_zoo(str(tmp_path / "scnn")), str(tmp_path / "zoo"))
    assert isinstance(zoo, Zoo) and len(zoo) == 2  # the selu model is not a Net
    assert list(zoo.manifest.columns) == list(COLUMNS)
    for net, row in zoo:
        assert net.num_params() == row["num_params"] and not math.isnan(row["accuracy"])
