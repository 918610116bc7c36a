"""Fit the function head or the class head of a trained neural-graph encoder, the encoder
frozen.

The fingerprint (a net's outputs on the probes) is exactly invariant and needs no
training, but compares outputs as they come: two digit INRs of the same digit drawn
differently are far apart in it. `fit_function_head` trains a small MLP on the
fingerprints of the zoo's train split with the supervised contrastive loss (same
relevance group = positive), and sets it into the encoder at a given weight: the head's
vector joins the embedding beside the learned part and the fingerprint.
`fit_class_head` trains the same shape of MLP as a classifier over those groups
(cross-entropy); its class probabilities join the embedding instead. `fit_render_head`
trains the render head, a small CNN, as a classifier of the drawings of the coordinate
nets (INRs) among them (`zoolens.nn.render`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from zoolens.eval import retrieval_metrics
from zoolens.ir import Net, TensorSet
from zoolens.nn import NeuralGraphEncoder
from zoolens.nn.neural_graph_encoder import EmbeddingParts
from zoolens.nn.render import renders
from zoolens.train.data import load_split
from zoolens.train.losses import supcon_loss
from zoolens.zoo import Zoo

log = logging.getLogger(__name__)


@dataclass
class FunctionFit:
    """A fitted function head.

    Args:
        encoder: the encoder with the head set in (same learned module and quality head).
        n_train: models it was fit on (train split, minus the excluded tasks and families;
            for the render head, the coordinate nets among them).
        val_map_before, val_map_after: validation retrieval mAP of the encoder given and of
            the returned one (every validation model queries all the others).
    """

    encoder: NeuralGraphEncoder
    n_train: int
    val_map_before: float
    val_map_after: float


def fit_function_head(
    encoder: NeuralGraphEncoder,
    zoo_dir: str,
    weight: float,
    fingerprint: float | None = None,
    exclude_tasks: Sequence[str] = (),
    exclude_families: Sequence[str] = (),
    steps: int = 1500,
    tau: float = 0.05,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    batch_size: int = 1024,
    seed: int = 0,
) -> FunctionFit:
    """Fit a new function head on the frozen `encoder` (a copy; the argument is untouched).

    AdamW on the supervised contrastive loss of the head's normalised outputs, each step
    on `batch_size` train models drawn at random (all of them when fewer).

    Args:
        encoder: a trained neural-graph encoder with probes.
        zoo_dir: the zoo it was trained on (its ``train`` and ``val`` splits are read).
        weight: the head's weight in the embedding's cosine (> 0).
        fingerprint: the fingerprint's weight; None keeps the encoder's.
        exclude_tasks, exclude_families: kept out of the fit (those the encoder was trained
            without, to measure it on them).
        steps, tau, lr, weight_decay, batch_size, seed: the optimisation.

    Raises:
        ValueError: a weight out of range, no probes, or fewer than 2 train models.
    """

    def loss(head: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return supcon_loss(torch.nn.functional.normalize(head(x), dim=1), y, tau)

    return _fit_head(
        encoder,
        zoo_dir,
        "function_head",
        weight,
        fingerprint,
        loss,
        _Optimisation(exclude_tasks, exclude_families, steps, lr, weight_decay, batch_size, seed),
        _fingerprints,
    )


def fit_class_head(
    encoder: NeuralGraphEncoder,
    zoo_dir: str,
    weight: float,
    fingerprint: float | None = None,
    exclude_tasks: Sequence[str] = (),
    exclude_families: Sequence[str] = (),
    steps: int = 1500,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    batch_size: int = 1024,
    seed: int = 0,
) -> FunctionFit:
    """Fit a new class head on the frozen `encoder` (a copy; the argument is untouched): a
    classifier of the fingerprint over the train split's relevance groups (cross-entropy;
    otherwise as `fit_function_head`). Its class probabilities (softmax of the logits over
    the encoder's ``class_temperature``) join the embedding at `weight`: two models the
    head puts in the same class are near, whatever else differs in their outputs."""

    return _fit_head(
        encoder,
        zoo_dir,
        "class_head",
        weight,
        fingerprint,
        _cross_entropy,
        _Optimisation(exclude_tasks, exclude_families, steps, lr, weight_decay, batch_size, seed),
        _fingerprints,
    )


def fit_render_head(
    encoder: NeuralGraphEncoder,
    zoo_dir: str,
    weight: float,
    exclude_tasks: Sequence[str] = (),
    exclude_families: Sequence[str] = (),
    steps: int = 1500,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    batch_size: int = 128,
    seed: int = 0,
) -> FunctionFit:
    """Fit a new render head on the frozen `encoder` (a copy; the argument is untouched):
    a CNN classifier of the drawings of the train split's coordinate nets (INRs) over
    their relevance groups (cross-entropy; otherwise as `fit_function_head`). Its class
    probabilities join the embedding at `weight` for every drawn net (the others share one
    vector orthogonal to them). Needs two groups of coordinate nets in the train split."""
    return _fit_head(
        encoder,
        zoo_dir,
        "render_head",
        weight,
        None,
        _cross_entropy,
        _Optimisation(exclude_tasks, exclude_families, steps, lr, weight_decay, batch_size, seed),
        _drawings,
    )


def _cross_entropy(head: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(head(x), y)


@dataclass
class _Optimisation:
    exclude_tasks: Sequence[str]
    exclude_families: Sequence[str]
    steps: int
    lr: float
    weight_decay: float
    batch_size: int
    seed: int


def _fit_head(
    encoder: NeuralGraphEncoder,
    zoo_dir: str,
    key: str,
    weight: float,
    fingerprint: float | None,
    loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    opt: _Optimisation,
    inputs: Callable[[NeuralGraphEncoder, list[Net]], tuple[np.ndarray, np.ndarray]],
) -> FunctionFit:
    """Fit the head of config `key` ("function_head", "class_head" or "render_head") on
    what `inputs` reads of the train split's nets (the rows it keeps) against their group
    labels; the encoder's other parts and heads are copied unchanged."""
    kind = key.split("_")[0]
    if weight <= 0:
        raise ValueError(f"{kind} head weight {weight}: expected > 0")
    zoo = Zoo.open(zoo_dir)
    train = load_split(zoo, "train", opt.exclude_tasks, opt.exclude_families)
    if len(train.nets) < 2:
        raise ValueError(f"{zoo_dir}: fewer than 2 train models to fit the {kind} head on")
    x_np, rows = inputs(encoder, train.nets)
    names, labels_np = np.unique(train.groups[rows], return_inverse=True)
    count = {"class_head": "class_count", "render_head": "render_count"}.get(key)
    if len(x_np) < 2 or (count and len(names) < 2):  # a classifier needs two classes
        what = "models" if rows.all() else "coordinate nets (INRs)"
        raise ValueError(
            f"{zoo_dir}: too few train {what} to fit the {kind} head on "
            f"({len(x_np)}, in {len(names)} groups)"
        )
    changes: dict[str, object] = {key: float(weight)}
    if count:
        changes[count] = len(names)
    if fingerprint is not None:
        changes["fingerprint"] = float(fingerprint)
    enc = NeuralGraphEncoder({**encoder.config, **changes})
    x = torch.from_numpy(x_np)
    labels = torch.from_numpy(labels_np)
    enc.adopt(encoder, keep=f"{key}.")  # the encoder's other parts; this head is refit
    head = enc.heads()[f"{key}."]
    new_head = {
        "function_head": enc.new_function_head,
        "class_head": enc.new_class_head,
        "render_head": enc.new_render_head,
    }[key]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opt.seed)
        head.load_state_dict(new_head().state_dict())
        head.train()
        adam = torch.optim.AdamW(head.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
        for step in range(opt.steps):
            idx = torch.randperm(len(x))[: opt.batch_size]
            value = loss(head, x[idx], labels[idx])
            adam.zero_grad()
            value.backward()  # type: ignore[no-untyped-call]
            adam.step()
            if step % 500 == 0 or step == opt.steps - 1:
                log.info("%s head, step %d: loss %.4f", kind, step, value.item())
    head.eval()
    val = load_split(zoo, "val")
    before, after = _val_maps((encoder, enc), val.nets, val.groups)
    return FunctionFit(enc, len(x_np), before, after)


def _fingerprints(
    enc: NeuralGraphEncoder, nets: list[Net], batch: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """The fingerprints the function and class heads read, built batch by batch (graphs
    are dropped after), and the rows kept: all."""
    parts = []
    for s in range(0, len(nets), batch):
        models: list[Net | TensorSet] = list(nets[s : s + batch])
        parts.append(enc.fingerprints(enc.graphs(models)))
    return np.vstack(parts), np.ones(len(nets), dtype=bool)


def _drawings(enc: NeuralGraphEncoder, nets: list[Net]) -> tuple[np.ndarray, np.ndarray]:
    """The drawings the render head reads and the rows kept: the coordinate nets."""
    drawing, drawn = renders(nets, int(enc.config["render_side"]))
    return drawing[drawn], drawn


def _val_maps(
    encs: tuple[NeuralGraphEncoder, ...], nets: list[Net], groups: np.ndarray, batch: int = 256
) -> list[float]:
    """Validation mAP of each of `encs` — encoders that differ only in their weights and
    heads, so the learned rows, fingerprints and interfaces are computed once for all."""
    if len(nets) < 2:
        return [float("nan")] * len(encs)
    chunks = []
    for s in range(0, len(nets), batch):
        models: list[Net | TensorSet] = list(nets[s : s + batch])
        chunks.append(encs[-1].parts(models))
    parts = EmbeddingParts(*(np.concatenate(p) for p in zip(*chunks, strict=True)))
    return [float(retrieval_metrics(e.compose(parts), groups)["mAP"]) for e in encs]
