"""What ``zoolens quickstart`` shows, computed: the demonstrations, without the printing.

(a) A zoo model, permuted, rescaled and sign-flipped, is found at rank 1 with cosine
    ≥ 0.9999 while its raw weights barely resemble the original's.
(b) Freshly trained models that are not in the zoo, one per classification task: the
    tasks of their nearest neighbours;
(c) and their accuracy predicted from their embedding beside the true one.
(d) Nets of tasks no zoo holds: `zoolens.cli.demo_unseen`.

`zoolens.cli.quickstart` generates the zoo, indexes it and prints these as tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from zoolens.index import NO_HIT, ModelIndex
from zoolens.ir import Net, TensorSet
from zoolens.nn.torch_encoder import TorchEncoder
from zoolens.progress import progress_bar
from zoolens.symmetry import random_exact_action

FRESH_SEED = 12345  # no zoo model has it


@dataclass
class SymmetryCheck:
    model_id: str
    rank: int
    embedding_cosine: float
    raw_weight_cosine: float
    max_output_diff: float


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    """Cosine of two arrays, flattened, in float64."""
    u, v = np.asarray(u, np.float64).ravel(), np.asarray(v, np.float64).ravel()
    return float(u @ v) / max(float(np.linalg.norm(u) * np.linalg.norm(v)), 1e-300)


def raw_cosine(a: Net, b: Net) -> float:
    """Cosine of the two nets' flattened weights, in op order."""
    flat = [torch.cat([t.flatten() for t in n.parameters()]).double().numpy() for n in (a, b)]
    return cosine(flat[0], flat[1])


def symmetry_check(index: ModelIndex, net: Net, model_id: str, seed: int = 0) -> SymmetryCheck:
    """Transform `net` by a random exact action and look it up in `index`."""
    acted = random_exact_action(net, torch.Generator().manual_seed(seed))
    scores, ids = index.search(acted, k=5)
    hits = list(ids[0])
    # Rank = 1 + models scoring strictly higher than the original (exact ties share rank).
    rank = (
        1 + int((scores[0] > scores[0][hits.index(model_id)] + 1e-6).sum())
        if model_id in hits
        else -1
    )
    x = torch.randn((64, *net.input_shape), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        diff = float((net(x) - acted(x)).abs().max())
    original = index.encoder.encode([net])[0]
    emb_cos = cosine(original, index.encoder.encode([acted])[0])
    return SymmetryCheck(model_id, rank, emb_cos, raw_cosine(net, acted), diff)


def train_fresh_model(task: str = "digits", seed: int = FRESH_SEED) -> tuple[Net, float]:
    """Train an MLP that is not in the zoo (its own seed and width) on classification
    `task`; return it and its test accuracy on the task's test split.
    """
    from zoolens.ir.fx_import import import_module
    from zoolens.zoo.archs import ArchSpec, build_model
    from zoolens.zoo.tasks import load_task

    data = load_task(task)
    spec = ArchSpec(
        "mlp",
        tuple(data.x_train.shape[1:]),
        int(data.y_train.max()) + 1,
        depth=2,
        width=40,
        activation="relu",
    )
    torch.manual_seed(seed)
    model = build_model(spec)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(data.x_train), data.y_train).backward()  # type: ignore[no-untyped-call]
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(data.x_test).argmax(1) == data.y_test).double().mean())
    net = import_module(model, spec.input_shape)
    return net, acc


def fresh_tasks() -> list[str]:
    """The tasks (b) and (c) train a fresh MLP for: every classification task of real-valued
    inputs, but the row-sequence view of digits made for the `archs` zoo's sequence models."""
    from zoolens.zoo.tasks import TASKS

    return [
        name
        for name, spec in TASKS.items()
        if spec.kind == "classification" and not spec.vocab and name != "digits-rows"
    ]


@dataclass
class FreshModel:
    """A freshly trained model looked up in the index: (b) and (c) of the quickstart."""

    task: str
    true_accuracy: float
    predicted_accuracy: float
    neighbour_tasks: list[str]
    possible: int  # same-task models the index could return among the nearest (≤ k)

    @property
    def same_task(self) -> int:
        return sum(t == self.task for t in self.neighbour_tasks)


def look_up_fresh(
    index: ModelIndex, zoo_manifest: Any, tasks: list[str], k: int = 5
) -> tuple[list[FreshModel], str]:
    """Train one fresh MLP per task, find its `k` nearest models in `index` and predict its
    accuracy from what the encoder computes of it. Returns the results and how accuracy was
    predicted."""
    trained = [train_fresh_model(t) for t in progress_bar(tasks, desc="fresh models")]
    nets: list[Net | TensorSet] = [net for net, _ in trained]
    query = index.encoder.encode(nets)
    _, ids = index.search(query, k=k)
    enc = index.encoder
    if isinstance(enc, TorchEncoder) and enc.quality is not None:
        reads = " and output statistics" if enc.quality_extra_dim else ""
        how = f"the encoder's trained quality head (from the embedding{reads})"
        preds = enc.predict_quality(nets)
    else:
        preds, how = predict_accuracy(index, zoo_manifest, query), "ridge over the zoo embeddings"
    counts = zoo_manifest["task"].value_counts()
    out = []
    for i, (task, (_, acc)) in enumerate(zip(tasks, trained, strict=True)):
        found = [str(index.get(str(m))["metadata"].get("task")) for m in ids[i] if m != NO_HIT]
        possible = min(k, int(counts.get(task, 0)))
        out.append(FreshModel(task, acc, float(preds[i]), found, possible))
    return out, how


def predict_accuracy(index: ModelIndex, zoo_manifest: Any, query: np.ndarray) -> np.ndarray:
    """Ridge regression from zoo embeddings to accuracy (classifiers only), applied to
    the rows of `query`, clipped to [0, 1]."""
    from sklearn.linear_model import RidgeCV

    rows = zoo_manifest[np.isfinite(zoo_manifest["accuracy"])]
    z = index.query_vectors(list(rows["id"]))
    model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(z, rows["accuracy"].to_numpy())
    return np.asarray(np.clip(model.predict(query), 0.0, 1.0), dtype=np.float64)
