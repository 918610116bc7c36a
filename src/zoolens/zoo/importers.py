"""Readers for the model-zoo layouts the field publishes, mapping each model to a `Net` + row.

- `read_small_cnn_zoo`: the Small CNN Zoo (Unterthiner et al., 2020): ``weights.npy``
  (models × parameters), ``layout.csv`` (``varname, start_idx, end_idx, shape`` in TensorFlow
  layout) and ``metrics.csv.gz`` (``test_accuracy``, ``config.*`` hyper-parameters).
- `read_inr_zoo`: the DWSNets / NFN INR layout, ``**/checkpoints/model_final.pth`` state
  dicts with keys ``seq.N.weight/bias`` (SIREN layers ``sin(w0 (W x + b))``, output + 0.5).
- `read_model_zoo`: the Schürholt et al. model-zoo layout, one Ray Tune folder per model
  with ``params.json``, ``result.json`` and ``checkpoint_*/checkpoints``.

Each reader yields ``(net, row)``; rows use the manifest columns. `write_zoo` stores them as
a zoolens zoo. Checkpoints are always read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoolens.errors import LoadError, UnsupportedOpError
from zoolens.ir import Net, Op, TensorSet
from zoolens.ir.fx_import import import_module
from zoolens.zoo.manifest import (
    assign_split,
    count_params,
    rows_to_frame,
    shape_str,
    write_manifest,
)
from zoolens.zoo.zoo import Zoo

log = logging.getLogger(__name__)

Row = dict[str, Any]
_ACTS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leakyrelu": nn.LeakyReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def _activation(name: str, where: str) -> nn.Module:
    if name.lower() not in _ACTS:
        raise UnsupportedOpError(
            f"{where}: activation {name!r} is not supported by the IR "
            f"(supported: {', '.join(_ACTS)})"
        )
    return _ACTS[name.lower()]()


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt / unsafe pickles
        raise LoadError(f"{path}: cannot read a weights-only torch state dict ({e})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise LoadError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}


class SequentialModel(nn.Module):
    """Layers applied in order, kept in ``module_list`` (the key prefix of the checkpoints)."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.module_list = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.module_list:
            x = layer(x)
        return x


# -- Small CNN Zoo -----------------------------------------------------------------------
def _small_cnn_tensors(flat: np.ndarray, layout: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(weight, bias)`` per layer in PyTorch layout, in layer order (conv…, dense)."""
    layers: dict[str, dict[str, np.ndarray]] = {}
    for _, r in layout.iterrows():
        prefix, _, leaf = str(r["varname"]).rpartition("/")
        shape = tuple(ast.literal_eval(str(r["shape"])))
        layers.setdefault(prefix, {})[leaf.split(":")[0]] = np.asarray(
            flat[int(r["start_idx"]) : int(r["end_idx"])]
        ).reshape(shape)

    def order(name: str) -> tuple[int, int]:
        m = re.search(r"(conv2d|dense)(?:_(\d+))?$", name)
        if m is None:
            raise LoadError(f"layout.csv: unexpected variable scope {name!r}")
        return (m.group(1) == "dense", int(m.group(2) or 0))

    out = []
    for name in sorted(layers, key=order):
        k, b = layers[name]["kernel"], layers[name]["bias"]
        w = k.transpose(3, 2, 0, 1) if k.ndim == 4 else k.T  # HWIO → OIHW, (in, out) → (out, in)
        out.append(
            (
                torch.tensor(np.ascontiguousarray(w), dtype=torch.float32),
                torch.tensor(b, dtype=torch.float32),
            )
        )
    return out


def small_cnn(
    tensors: list[tuple[torch.Tensor, torch.Tensor]],
    activation: str,
    stride: int = 2,
    padding: int = 0,
) -> SequentialModel:
    """The Small CNN Zoo network: conv (3x3, stride 2) + act, repeated → GAP → dense."""
    layers: list[nn.Module] = []
    for w, b in tensors[:-1]:
        conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride, padding)
        conv.weight.data.copy_(w)
        conv.bias.data.copy_(b)
        layers += [conv, _activation(activation, "small CNN zoo")]
    w, b = tensors[-1]
    dense = nn.Linear(w.shape[1], w.shape[0])
    dense.weight.data.copy_(w)
    dense.bias.data.copy_(b)
    return SequentialModel([*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), dense])


_SMALL_CNN_HP = {
    "config.learning_rate": "lr",
    "config.optimizer": "optimizer",
    "config.l2reg": "weight_decay",
    "config.dropout": "dropout",
    "config.init_std": "init_scale",
    "config.train_fraction": "train_fraction",
    "config.activation": "activation",
}


def read_small_cnn_zoo(
    path: str,
    dataset: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    final_only: bool = True,
    limit: int | None = None,
) -> Iterator[tuple[Net | TensorSet, Row]]:
    """Read a Small CNN Zoo directory (``weights.npy``, ``layout.csv``, ``metrics.csv.gz``).

    Args:
        path: the directory of one collection (e.g. ``mnist``).
        dataset: task name for the rows; default ``config.dataset`` or the folder name.
        input_shape: one input, channels first; default (1, 32, 32) for CIFAR-10 / SVHN
            collections, else (1, 28, 28). Convolutions use 'valid' padding.
        final_only: keep only each run's last checkpoint when ``metrics`` has a ``step``.
        limit: read at most this many models.

    Returns:
        An iterator of ``(net, row)``; a model with an activation the IR lacks comes as a
        `TensorSet` with the reason in ``meta["unsupported"]``.
    """
    import pandas as pd

    root = Path(path)
    weights = np.load(root / "weights.npy", mmap_mode="r")  # (models, params)
    layout = pd.read_csv(root / "layout.csv")
    metrics = pd.read_csv(root / "metrics.csv.gz")
    if len(metrics) != len(weights):
        raise LoadError(f"{root}: {len(metrics)} metric rows but {len(weights)} weight rows")
    keep = np.arange(len(weights))
    if final_only and "step" in metrics:
        keep = keep[(metrics["step"] == metrics["step"].max()).to_numpy()]
    name = dataset or str(metrics.get("config.dataset", pd.Series([root.name])).iloc[0])
    shape = input_shape or ((1, 32, 32) if re.search("cifar|svhn", name, re.I) else (1, 28, 28))
    for i in keep[:limit]:
        m = metrics.iloc[int(i)]
        row = _small_cnn_row(int(i), m, name, shape)
        tensors = _small_cnn_tensors(weights[int(i)], layout)
        try:
            model = small_cnn(tensors, str(m.get("config.activation", "relu")))
        except UnsupportedOpError as e:
            flat = {
                f"layer{k}.{r}": t
                for k, pair in enumerate(tensors)
                for r, t in zip(("weight", "bias"), pair, strict=True)
            }
            yield TensorSet(flat, {"source": str(root), "unsupported": str(e)}), row
            continue
        net = import_module(model, shape)
        row.update(num_params=count_params(net), n_outputs=int(tensors[-1][1].numel()))
        yield net, row


def _small_cnn_row(i: int, m: Any, dataset: str, shape: tuple[int, ...]) -> Row:
    row: Row = {
        "id": f"scnn-{i:06d}",
        "index": i,
        "task": dataset,
        "dataset": dataset,
        "kind": "classification",
        "family": "small-cnn",
        "arch": f"small-cnn(in={shape_str(shape)},conv=3x3/2,act="
        f"{m.get('config.activation', 'relu')},gap)",
        "accuracy": float(m.get("test_accuracy", math.nan)),
        "epochs": int(m.get("step", -1)),
        "input_shape": shape_str(shape),
        "split": assign_split(f"scnn-{i:06d}", 0),
    }
    for col, key in _SMALL_CNN_HP.items():
        if col in m.index and not (isinstance(m[col], float) and math.isnan(m[col])):
            row[key] = m[col] if key in ("optimizer", "activation") else float(m[col])
    for key in ("optimizer", "activation"):
        row[key] = str(row.get(key, ""))
    return row


# -- DWSNets / NFN INRs ------------------------------------------------------------------
def inr_net(
    state: dict[str, torch.Tensor], w0: float = 30.0, output_offset: float = 0.5, source: str = ""
) -> Net:
    """A SIREN ``seq.N.weight/bias`` state dict as a `Net`: ``sin(w0 (W x + b))`` layers,
    then a Linear whose bias absorbs the constant `output_offset`."""
    idx = sorted({int(k.split(".")[1]) for k in state if re.fullmatch(r"seq\.\d+\.weight", k)})
    extra = set(state) - {f"seq.{i}.{r}" for i in idx for r in ("weight", "bias")}
    if not idx or extra:
        raise LoadError(
            f"{source}: not a seq.N.weight/bias SIREN state dict "
            f"(unexpected keys: {sorted(extra)[:5]})"
        )
    ops, value = [], "input"
    for n, i in enumerate(idx):
        w = state[f"seq.{i}.weight"].float()
        b = state.get(f"seq.{i}.bias", torch.zeros(w.shape[0])).float()
        last = n == len(idx) - 1
        ops.append(
            Op(
                f"seq_{i}",
                "linear",
                (value,),
                f"seq_{i}",
                {"weight": w, "bias": b + output_offset if last else b},
            )
        )
        value = f"seq_{i}"
        if not last:
            ops.append(Op(f"scale_{i}", "scale", (value,), f"scale_{i}", attrs={"factor": w0}))
            ops.append(Op(f"sin_{i}", "act", (f"scale_{i}",), f"sin_{i}", attrs={"fn": "sin"}))
            value = f"sin_{i}"
    net = Net(
        ops=ops,
        input_shape=(int(state[f"seq.{idx[0]}.weight"].shape[1]),),
        meta={"importer": "zoolens.zoo.importers.inr", "source": source},
    )
    net.check_finite(source)
    return net


def _inr_label(model_dir: Path) -> int:
    if model_dir.parent.name.isdigit():  # <class>/<id>/checkpoints/...
        return int(model_dir.parent.name)
    m = re.search(r"_(\d)_\d+$", model_dir.name)  # DWSNets: mnist_png_training_2_23645
    return int(m.group(1)) if m else -1


def read_inr_zoo(
    path: str,
    task: str = "inr-mnist",
    w0: float = 30.0,
    output_offset: float = 0.5,
    limit: int | None = None,
) -> Iterator[tuple[Net, Row]]:
    """Read INRs stored as ``**/checkpoints/model_final.pth`` (DWSNets / NFN layout).

    Args:
        path: the root folder.
        task: task name for the rows.
        w0: SIREN frequency of every hidden layer.
        output_offset: constant added to the output (DWSNets INRs return ``seq(x) + 0.5``).
        limit: read at most this many INRs.

    Returns:
        ``(net, row)`` per INR; ``label`` is the class folder or the ``_<digit>_<n>`` suffix.
    """
    files = sorted(Path(path).glob("**/checkpoints/model_final.pth"))
    for k, f in enumerate(files[:limit]):
        model_dir = f.parent.parent
        rel = model_dir.relative_to(path).as_posix()
        net = inr_net(_load_state_dict(f), w0, output_offset, str(f))
        widths = [op.params["weight"].shape[0] for op in net.ops if op.kind == "linear"]
        split = "test" if "test" in rel else assign_split(rel, 0)
        yield (
            net,
            {
                "id": _safe_id(rel),
                "index": k,
                "task": task,
                "dataset": task,
                "kind": "inr",
                "family": "inr-sine",
                "activation": "sine",
                "depth": len(widths) - 1,
                "width": max(widths[:-1], default=0),
                "num_params": count_params(net),
                "arch": f"siren(in={net.input_shape[0]},hidden={widths[:-1]},w0={w0:g},"
                f"out={widths[-1]})",
                "label": _inr_label(model_dir),
                "split": split,
                "input_shape": shape_str(net.input_shape),
                "n_outputs": widths[-1],
            },
        )


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.") or "model"


# -- Schürholt et al. model zoos ---------------------------------------------------------
def modelzoo_module(config: dict[str, Any]) -> tuple[nn.Module, tuple[int, ...]] | None:
    """The network a model-zoo ``params.json`` describes, or None if it is not a plain
    MLP / CNN / CNN2 / CNN3 (module order matches the checkpoints' ``module_list.N``)."""
    kind, act = config.get("model::type"), str(config.get("model::nlin", "relu"))
    drop = float(config.get("model::dropout", 0.0))
    if kind == "MLP":
        dims = [int(config["model::i_dim"]), *np.atleast_1d(config["model::h_dim"]).tolist()]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [
                nn.Linear(a, b, bias=config.get("model::use_bias", True)),
                _activation(act, "params.json"),
            ]
            layers += [nn.Dropout(drop)] if drop > 0 else []
        layers.append(
            nn.Linear(
                dims[-1], int(config["model::o_dim"]), bias=config.get("model::use_bias", True)
            )
        )
        return SequentialModel(layers), (dims[0],)
    convs = {
        "CNN": ([8, 6, 4], [5, 5, 2], 28, 2),
        "CNN2": ([6, 9, 6], [5, 5, 2], 28, 2),
        "CNN3": ([16, 32, 15], [3, 3, 3], 32, 3),
    }
    if kind not in convs:
        return None
    channels, kernels, size, pooled = convs[str(kind)]
    c = c_in = int(config.get("model::channels_in", 1))
    layers = []
    for n, (c_out, k) in enumerate(zip(channels, kernels, strict=True)):
        layers.append(nn.Conv2d(c, c_out, k))
        layers += [nn.MaxPool2d(2, 2)] if n < pooled else []
        layers.append(_activation(act, "params.json"))
        layers += [nn.Dropout(drop)] if (drop > 0 or kind == "CNN3") and n < pooled else []
        size = (size - k + 1) // 2 if n < pooled else size - k + 1
        c = c_out
    layers += [nn.Flatten(), nn.Linear(c * size * size, 20), _activation(act, "params.json")]
    layers += [nn.Dropout(drop)] if drop > 0 or kind == "CNN3" else []
    layers.append(nn.Linear(20, 10))
    side = 32 if kind == "CNN3" else 28
    return SequentialModel(layers), (c_in, side, side)


def _results(folder: Path) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    path = folder / "result.json"
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.strip():
            r = json.loads(line)
            out[int(r.get("training_iteration", len(out) + 1))] = r
    return out


def read_model_zoo(
    path: str, task: str | None = None, epoch: int | None = None, limit: int | None = None
) -> Iterator[tuple[Net | TensorSet, Row]]:
    """Read a Schürholt et al. model zoo: one folder per model with ``params.json``,
    ``result.json`` and ``checkpoint_<epoch>/checkpoints``.

    Args:
        path: the zoo root.
        task: task name for the rows (default: the root folder's name).
        epoch: which checkpoint to read (default: the last one).
        limit: read at most this many models.

    Returns:
        ``(net, row)``; architectures other than MLP / CNN / CNN2 / CNN3 (or whose
        checkpoint does not match them) come as a `TensorSet`.
    """
    folders = sorted(p.parent for p in Path(path).glob("**/params.json"))
    for k, folder in enumerate(folders[:limit]):
        config = json.loads((folder / "params.json").read_text())
        ckpts = {int(p.name.split("_")[-1]): p for p in folder.glob("checkpoint_*")}
        if not ckpts:
            log.warning("%s: no checkpoint_* folder; skipped", folder)
            continue
        ep = epoch if epoch is not None else max(ckpts)
        if ep not in ckpts:
            raise LoadError(f"{folder}: no checkpoint for epoch {ep} (have {sorted(ckpts)})")
        state = _load_state_dict(ckpts[ep] / "checkpoints")
        model = _modelzoo_net(config, state, str(folder))
        result = _results(folder).get(ep, {})
        yield model, _modelzoo_row(k, folder, config, result, ep, model, task or Path(path).name)


def _modelzoo_net(
    config: dict[str, Any], state: dict[str, torch.Tensor], source: str
) -> Net | TensorSet:
    try:
        built = modelzoo_module(config)
        if built is not None:
            module, shape = built
            module.load_state_dict(state, strict=True)
            net = import_module(module, shape)
            net.meta["source"] = source
            return net
        reason = f"architecture {config.get('model::type')!r} is not a plain MLP/CNN"
    except (LoadError, RuntimeError, KeyError) as e:  # UnsupportedOpError is a LoadError
        reason = str(e).splitlines()[0]
    log.warning("%s: read as a TensorSet (%s)", source, reason)
    return TensorSet(state, {"source": source, "unsupported": reason})


def _modelzoo_row(
    k: int,
    folder: Path,
    config: dict[str, Any],
    result: dict[str, Any],
    ep: int,
    model: Net | TensorSet,
    task: str,
) -> Row:
    shape = model.input_shape if isinstance(model, Net) else ()
    return {
        "id": _safe_id(folder.name),
        "index": k,
        "task": task,
        "dataset": task,
        "kind": str(config.get("training::task", "classification")),
        "family": f"modelzoo-{str(config.get('model::type', '?')).lower()}",
        "arch": str(config.get("model::type", "")),
        "num_params": count_params(model) if isinstance(model, Net) else model.num_params(),
        "lr": float(config.get("optim::lr", math.nan)),
        "optimizer": str(config.get("optim::optimizer", "")),
        "weight_decay": float(config.get("optim::wd", math.nan)),
        "batch_size": int(config.get("training::batchsize", -1)),
        "dropout": float(config.get("model::dropout", math.nan)),
        "activation": str(config.get("model::nlin", "")),
        "seed": int(config.get("seed", -1)),
        "epochs": ep,
        "accuracy": float(result.get("test_acc", math.nan)),
        "test_loss": float(result.get("test_loss", math.nan)),
        "split": assign_split(folder.name, 0),
        "input_shape": shape_str(tuple(shape)),
    }


# -- writing -----------------------------------------------------------------------------
def write_zoo(items: Iterable[tuple[Net | TensorSet, Row]], out: str) -> Zoo:
    """Store imported ``(net, row)`` pairs as a zoolens zoo in directory `out`.

    Args:
        items: the output of one of the readers.
        out: the zoo directory (models are added; same ids are replaced).

    Returns:
        The opened `Zoo`. `TensorSet`s are skipped with a warning (a zoo holds `Net`s).
    """
    from zoolens.zoo.worker import existing_rows, model_dir, save_model

    os.makedirs(os.path.dirname(model_dir(out, "x")), exist_ok=True)
    for net, row in items:
        if not isinstance(net, Net):
            log.warning("%s: not a Net (%s); skipped", row["id"], net.meta.get("unsupported"))
            continue
        shutil.rmtree(model_dir(out, row["id"]), ignore_errors=True)
        save_model(net, row, out)
    write_manifest(rows_to_frame(list(existing_rows(out).values())), out)
    return Zoo.open(out)
