"""``zoolens quickstart``: the main job of ``make demo``.

1. Generate the ``tiny`` zoo and index it with the default encoder.
2. Show the demonstrations of `zoolens.cli.demo` as tables: (a) symmetry-transformed zoo
   models found at rank 1; (b) the tasks of fresh models' nearest neighbours; (c) their
   accuracy predicted from their embedding beside the true one; (d) nets of four tasks no
   zoo holds, sharing one interface, and how many of their nearest neighbours share the task.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import typer

from zoolens.cli.app import app

if TYPE_CHECKING:
    from zoolens.cli.demo import FreshModel, SymmetryCheck
    from zoolens.cli.demo_unseen import UnseenTasks
    from zoolens.index import ModelIndex


@app.command()
def quickstart(
    workdir: str = typer.Option("zoolens-quickstart", help="where the zoo and index go"),
    encoder: str = typer.Option("default", help="encoder name or directory"),
    seed: int = typer.Option(0, help="zoo seed"),
) -> None:
    """Generate the tiny zoo, index it, and show what weight-space search does."""
    run_quickstart(workdir, encoder, seed)


def run_quickstart(
    workdir: str = "zoolens-quickstart", encoder: str = "default", seed: int = 0
) -> dict[str, object]:
    """Run the four demonstrations and print their tables. Returns their numbers."""
    from rich.console import Console

    from zoolens.zoo import generate_zoo

    console = Console()
    zoo_dir, index_dir = os.path.join(workdir, "zoo"), os.path.join(workdir, "index")
    console.print(f"[bold]1.[/] generating the tiny zoo in {zoo_dir} (resumable)")
    zoo = generate_zoo("tiny", zoo_dir, seed=seed)
    console.print(f"[bold]2.[/] indexing {len(zoo)} models with encoder {encoder!r}")
    index = _open_index(console, index_dir, encoder)
    index.add_zoo(zoo_dir)
    return {
        "symmetry": _show_symmetry(console, index, zoo),
        "fresh": _show_fresh(console, index, zoo),
        "unseen": _show_unseen(console, index),
    }


def _open_index(console: Any, index_dir: str, encoder: str) -> ModelIndex:
    """The quickstart's own index, re-embedded when an earlier run (an older zoolens, or
    another --encoder) built it with a different encoder."""
    from zoolens.errors import EncoderMismatchError
    from zoolens.index import ModelIndex

    try:
        return ModelIndex.open(index_dir, encoder=encoder)
    except EncoderMismatchError:
        console.print(f"   {index_dir} holds another encoder's embeddings: re-embedding")
        index = ModelIndex.open(index_dir, encoder=None)
        index.reembed(encoder)  # the index then uses `encoder`
        return index


def _show_symmetry(console: Any, index: ModelIndex, zoo: Any) -> list[SymmetryCheck]:
    from rich.table import Table

    from zoolens.cli.demo import symmetry_check

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


def _show_fresh(console: Any, index: ModelIndex, zoo: Any) -> list[FreshModel]:
    import numpy as np
    from rich.table import Table
    from scipy.stats import spearmanr

    from zoolens.cli.demo import fresh_tasks, look_up_fresh

    fresh, how = look_up_fresh(index, zoo.manifest, fresh_tasks())
    table = Table(
        title="(b) fresh MLPs, one per classification task, none in the zoo: the tasks of "
        f"their 5 nearest zoo models; (c) their accuracy predicted by {how}"
    )
    for col in ("task", "5 nearest: their tasks", "same task", "true accuracy", "predicted"):
        table.add_column(col)
    for f in fresh:
        table.add_row(
            f.task,
            _tally(f.neighbour_tasks),
            f"{f.same_task}/{f.possible}",
            f"{f.true_accuracy:.3f}",
            f"{f.predicted_accuracy:.3f}",
        )
    console.print(table)
    same, possible = sum(f.same_task for f in fresh), sum(f.possible for f in fresh)
    true = [f.true_accuracy for f in fresh]
    pred = [f.predicted_accuracy for f in fresh]
    rho = float(spearmanr(true, pred).statistic)
    err = float(np.mean(np.abs(np.subtract(true, pred))))
    console.print(
        f"(b) same task among the nearest: {same} of {possible} (at most the zoo's models of "
        f"the task count); (c) predicted vs true accuracy: mean |error| {err:.3f}, "
        f"Spearman {rho:.2f}"
    )
    return fresh


def _show_unseen(console: Any, index: ModelIndex) -> UnseenTasks:
    from rich.table import Table

    from zoolens.cli.demo_unseen import N_CLASSES, N_INPUTS, NET_RECIPES, unseen_tasks

    u = unseen_tasks(index.encoder)
    k, n = u.k, len(NET_RECIPES)
    table = Table(
        title=f"(d) {len(u.tasks)} tasks no zoo holds, one interface ({N_INPUTS} inputs → "
        f"{N_CLASSES} classes), {n} MLPs each: of each net's {k} nearest among these "
        f"{n * len(u.tasks)}, how many share its task"
    )
    for col in ("task", "embedding", "raw weights", "test accuracy of its nets"):
        table.add_column(col)
    for t in u.tasks:
        accs = ", ".join(f"{a:.2f}" for a in u.accuracies[t])
        table.add_row(t, f"{u.embedding_same[t]}/{k * n}", f"{u.raw_same[t]}/{k * n}", accs)
    console.print(table)
    console.print(
        f"(d) unseen tasks, shared interface: {sum(u.embedding_same.values())} of "
        f"{u.possible} nearest neighbours share the task "
        f"(raw weights: {sum(u.raw_same.values())} of {u.possible})"
    )
    return u


def _tally(tasks: list[str]) -> str:
    """'digits-perm ×3, digits ×2': tasks by count, in order of first appearance."""
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t] = counts.get(t, 0) + 1
    return ", ".join(t if n == 1 else f"{t} ×{n}" for t, n in counts.items())
