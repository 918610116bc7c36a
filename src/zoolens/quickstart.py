"""The quickstart: what zoolens does, shown on a zoo it builds in a minute.

1. Generate the ``tiny`` zoo and index it with the default encoder.
2. A zoo model, permuted, rescaled and sign-flipped, is found at rank 1 with cosine
   ≥ 0.9999 while its raw weights barely resemble the original's.
3. A freshly trained model that is not in the zoo: its nearest neighbours, and its
   accuracy predicted from its embedding beside the true one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from zoolens.errors import EncoderMismatchError
from zoolens.index import ModelIndex
from zoolens.ir import Net
from zoolens.nn.torch_encoder import TorchEncoder
from zoolens.symmetry import random_exact_action
from zoolens.testing import cosine


@dataclass
class SymmetryCheck:
    model_id: str
    rank: int
    embedding_cosine: float
    raw_weight_cosine: float
    max_output_diff: float


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


def train_fresh_model(task: str = "digits", seed: int = 12345) -> tuple[Net, float]:
    """Train a model that is not in the zoo (its own seed and width); return it and its
    test accuracy on the task's test split.
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


def predict_accuracy(index: ModelIndex, zoo_manifest: Any, query: np.ndarray) -> float:
    """Ridge regression from zoo embeddings to accuracy (classifiers only), applied to
    `query`."""
    from sklearn.linear_model import RidgeCV

    rows = zoo_manifest[np.isfinite(zoo_manifest["accuracy"])]
    z = index.query_vectors(list(rows["id"]))
    model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(z, rows["accuracy"].to_numpy())
    return float(np.clip(model.predict(query.reshape(1, -1))[0], 0.0, 1.0))


def run_quickstart(
    workdir: str = "zoolens-quickstart", encoder: str = "default", seed: int = 0
) -> dict[str, object]:
    """Run the three demonstrations and print their tables. Returns their numbers."""
    from rich.console import Console

    from zoolens.zoo import generate_zoo

    console = Console()
    zoo_dir, index_dir = os.path.join(workdir, "zoo"), os.path.join(workdir, "index")
    console.print(f"[bold]1.[/] generating the tiny zoo in {zoo_dir} (resumable)")
    zoo = generate_zoo("tiny", zoo_dir, seed=seed)
    console.print(f"[bold]2.[/] indexing {len(zoo)} models with encoder {encoder!r}")
    index = _open_index(console, index_dir, encoder)
    index.add_zoo(zoo_dir)
    out: dict[str, object] = {"symmetry": _show_symmetry(console, index, zoo)}
    out.update(_show_fresh(console, index, zoo))
    return out


def _open_index(console: Any, index_dir: str, encoder: str) -> ModelIndex:
    """The quickstart's own index, re-embedded when an earlier run (an older zoolens, or
    another --encoder) built it with a different encoder."""
    try:
        return ModelIndex.open(index_dir, encoder=encoder)
    except EncoderMismatchError:
        console.print(f"   {index_dir} holds another encoder's embeddings: re-embedding")
        index = ModelIndex.open(index_dir, encoder=None)
        index.reembed(encoder)  # the index then uses `encoder`
        return index


def _show_symmetry(console: Any, index: ModelIndex, zoo: Any) -> list[SymmetryCheck]:
    from rich.table import Table

    table = Table(title="(a) exact symmetries: permuted + rescaled + sign-flipped zoo models")
    for col in (
        "model",
        "rank of original",
        "embedding cosine",
        "raw-weight cosine",
        "max |Δ output|",
    ):
        table.add_column(col)
    test = zoo.manifest[zoo.manifest["split"] == "test"].head(4)
    checks = []
    for i, model_id in enumerate(test["id"]):
        c = symmetry_check(index, zoo.load(str(model_id)), str(model_id), seed=i)
        checks.append(c)
        table.add_row(
            c.model_id,
            str(c.rank),
            f"{c.embedding_cosine:.6f}",
            f"{c.raw_weight_cosine:.3f}",
            f"{c.max_output_diff:.1e}",
        )
    console.print(table)
    return checks


def _show_fresh(console: Any, index: ModelIndex, zoo: Any) -> dict[str, object]:
    from rich.table import Table

    net, acc = train_fresh_model()
    query = index.encoder.encode([net])
    scores, ids = index.search(query, k=5)
    table = Table(title="(b) nearest neighbours of a freshly trained digits MLP (not in the zoo)")
    for col in ("rank", "model", "task", "family", "accuracy", "cosine"):
        table.add_column(col)
    tasks = []
    for r, (s, mid) in enumerate(zip(scores[0], ids[0], strict=True), 1):
        meta = index.get(str(mid))["metadata"]
        tasks.append(meta.get("task"))
        table.add_row(
            str(r),
            str(mid),
            str(meta.get("task")),
            str(meta.get("family")),
            f"{meta.get('accuracy', float('nan')):.3f}",
            f"{s:.3f}",
        )
    console.print(table)
    enc = index.encoder
    if isinstance(enc, TorchEncoder) and enc.quality is not None:
        pred, how = float(enc.predict_quality([net])[0]), "the encoder's trained quality head"
    else:
        pred, how = predict_accuracy(index, zoo.manifest, query[0]), "ridge over the zoo"
    t2 = Table(title=f"(c) accuracy predicted from the embedding ({how})")
    t2.add_column("true test accuracy")
    t2.add_column("predicted")
    t2.add_row(f"{acc:.3f}", f"{pred:.3f}")
    console.print(t2)
    return {"neighbour_tasks": tasks, "true_accuracy": acc, "predicted_accuracy": pred}
