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
from zoolens.zoo._import_common import (
    Row,
    SequentialModel,
    activation_module,
    load_state_dict,
    safe_id,
)
from zoolens.zoo._model_zoo import modelzoo_module, read_model_zoo
from zoolens.zoo.manifest import (
    assign_split,
    count_params,
    rows_to_frame,
    shape_str,
    write_manifest,
)
from zoolens.zoo.worker import existing_rows, model_dir, save_model
from zoolens.zoo.zoo import MODELS_DIR, Zoo

__all__ = [
    "SequentialModel",
    "inr_net",
    "modelzoo_module",
    "read_inr_zoo",
    "read_model_zoo",
    "read_small_cnn_zoo",
    "small_cnn",
    "write_zoo",
]

log = logging.getLogger(__name__)


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
        conv = nn.Conv2d(w.shape[1], w.shape[0], (w.shape[2], w.shape[3]), stride, padding)
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(b)  # type: ignore[union-attr]
        layers += [conv, activation_module(activation, "small CNN zoo")]
    w, b = tensors[-1]
    dense = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        dense.weight.copy_(w)
        dense.bias.copy_(b)
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
        net = inr_net(load_state_dict(f), w0, output_offset, str(f))
        widths = [op.params["weight"].shape[0] for op in net.ops if op.kind == "linear"]
        split = "test" if "test" in rel else assign_split(rel, 0)
        yield (
            net,
            {
                "id": safe_id(rel),
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


# -- writing -----------------------------------------------------------------------------
def write_zoo(items: Iterable[tuple[Net | TensorSet, Row]], out: str) -> Zoo:
    """Store imported ``(net, row)`` pairs as a zoolens zoo in directory `out`.

    Args:
        items: the output of one of the readers.
        out: the zoo directory (models are added; same ids are replaced).

    Returns:
        The opened `Zoo`. `TensorSet`s are skipped with a warning (a zoo holds `Net`s).
    """
    os.makedirs(os.path.join(out, MODELS_DIR), exist_ok=True)
    for net, row in items:
        if not isinstance(net, Net):
            log.warning("%s: not a Net (%s); skipped", row["id"], net.meta.get("unsupported"))
            continue
        shutil.rmtree(model_dir(out, row["id"]), ignore_errors=True)
        save_model(net, row, out)
    write_manifest(rows_to_frame(list(existing_rows(out).values())), out)
    return Zoo.open(out)
