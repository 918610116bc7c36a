"""Reader for the Schürholt et al. model-zoo layout (re-exported by `zoolens.zoo.importers`).

One Ray Tune folder per model: ``params.json`` (``model::type``, ``model::nlin``, ``optim::lr``,
...), ``result.json`` (one JSON line per epoch: ``test_acc``, ``test_loss``) and
``checkpoint_<epoch>/checkpoints`` (a torch state dict with ``module_list.N`` keys).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoolens.errors import LoadError
from zoolens.ir import Net, TensorSet
from zoolens.ir.fx_import import import_module
from zoolens.zoo._import_common import (
    Row,
    SequentialModel,
    activation_module,
    load_state_dict,
    safe_id,
)
from zoolens.zoo.manifest import assign_split, count_params, shape_str

log = logging.getLogger(__name__)


def modelzoo_module(config: dict[str, Any]) -> tuple[nn.Module, tuple[int, ...]] | None:
    """The network a model-zoo ``params.json`` describes, or None if it is not a plain
    MLP / CNN / CNN2 / CNN3 (module order matches the checkpoints' ``module_list.N``)."""
    kind, act = config.get("model::type"), str(config.get("model::nlin", "relu"))
    drop = float(config.get("model::dropout", 0.0))
    if kind == "MLP":
        dims = [int(config["model::i_dim"]), *np.atleast_1d(config["model::h_dim"]).tolist()]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            layers += [
                nn.Linear(a, b, bias=config.get("model::use_bias", True)),
                activation_module(act, "params.json"),
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
        layers.append(activation_module(act, "params.json"))
        layers += [nn.Dropout(drop)] if (drop > 0 or kind == "CNN3") and n < pooled else []
        size = (size - k + 1) // 2 if n < pooled else size - k + 1
        c = c_out
    layers += [nn.Flatten(), nn.Linear(c * size * size, 20), activation_module(act, "params.json")]
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
        state = load_state_dict(ckpts[ep] / "checkpoints")
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
        "id": safe_id(folder.name),
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
