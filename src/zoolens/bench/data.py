"""What the benchmark measures on: held-out models, INRs, transfer queries and candidate pools.

Everything here is a pure function of the zoo's manifest (plus fixed sampling seeds), so
every encoder and every seed of one benchmark run sees the same models.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from zoolens.zoo import Zoo

#: Seed of every sub-sample the plan takes (fixed so that all benchmark seeds share it).
PLAN_SEED = 0


@dataclass(frozen=True)
class PlanSettings:
    """Sizes of the benchmark's model sets.

    Args:
        max_eval_models: cap on held-out (test-split) models measured; None for all.
        max_inrs: cap on INRs (train + test split) for INR classification.
        n_heldout_tasks: tasks removed from encoder training for the generalisation test.
        n_heldout_families: architecture families removed from it as well.
        n_transfer_tasks: classification tasks used for transfer by fine-tuning.
        n_queries: held-out query models per transfer task.
        max_pool: cap on candidate models per transfer task.
    """

    max_eval_models: int | None = None
    max_inrs: int = 1000
    n_heldout_tasks: int = 3
    n_heldout_families: int = 1
    n_transfer_tasks: int = 2
    n_queries: int = 2
    max_pool: int = 200


@dataclass(frozen=True)
class BenchPlan:
    """The model ids each measurement uses.

    Args:
        test_ids: held-out models all held-out metrics are measured on.
        inr_ids: INRs of the train and test splits (INR classification).
        heldout_tasks: tasks removed from training for the generalisation test.
        transfer_queries: transfer task → held-out query models of that task.
        transfer_pool: transfer task → candidates (other tasks, same input shape).
        heldout_families: architecture families removed from training as well.
    """

    test_ids: list[str]
    inr_ids: list[str]
    heldout_tasks: list[str]
    transfer_queries: dict[str, list[str]] = field(default_factory=dict)
    transfer_pool: dict[str, list[str]] = field(default_factory=dict)
    heldout_families: list[str] = field(default_factory=list)

    @property
    def embed_ids(self) -> list[str]:
        """Every model some measurement embeds, held-out models first, without repeats."""
        ids = [*self.test_ids, *self.inr_ids]
        for task in self.transfer_queries:
            ids += self.transfer_queries[task] + self.transfer_pool[task]
        return list(dict.fromkeys(ids))

    def to_dict(self) -> dict[str, object]:
        return {
            "n_test_models": len(self.test_ids),
            "n_inrs": len(self.inr_ids),
            "heldout_tasks": self.heldout_tasks,
            "heldout_families": self.heldout_families,
            "transfer_tasks": list(self.transfer_queries),
            "transfer_queries": self.transfer_queries,
            "transfer_pool_sizes": {t: len(p) for t, p in self.transfer_pool.items()},
        }


def lineage_roots(manifest: pd.DataFrame) -> np.ndarray:
    """Id of each model's lineage root: follow ``parent`` links up to a model without one.

    A parent missing from the manifest is itself taken as the root, so its children still
    share a lineage.

    Returns:
        (n,) array of root ids (str).
    """
    parent = dict(zip(manifest["id"].astype(str), manifest["parent"].astype(str), strict=True))
    roots = []
    for model_id in manifest["id"].astype(str):
        node, seen = model_id, {model_id}
        while parent.get(node, ""):
            node = parent[node]
            if node in seen:  # a cycle: stop where it closes
                break
            seen.add(node)
        roots.append(node)
    return np.asarray(roots, dtype=str)


def _sample(ids: list[str], cap: int | None, seed: int = PLAN_SEED) -> list[str]:
    """At most `cap` of `ids`, a seeded sample kept in the original order."""
    if cap is None or len(ids) <= cap:
        return list(ids)
    keep = np.sort(np.random.default_rng(seed).choice(len(ids), cap, replace=False))
    return [ids[i] for i in keep]


def pick_heldout(manifest: pd.DataFrame, column: str, n: int) -> list[str]:
    """Up to `n` values of `column` ("task" or "family") among non-INR models with at least
    2 test models each (so retrieval can score them), most test models first, ties by name;
    never every non-INR value of the zoo.
    """
    models = manifest[manifest["kind"] != "inr"]
    counts = models[models["split"] == "test"].groupby(column).size()
    counts = counts[counts >= 2]
    ranked = sorted(counts.index, key=lambda t: (-int(counts[t]), str(t)))
    return [str(t) for t in ranked[: max(0, min(n, models[column].nunique() - 1))]]


def _pool(manifest: pd.DataFrame, task: str) -> list[str]:
    """Non-INR models of other tasks whose input shape is the one of `task`'s models."""
    shapes = set(manifest.loc[manifest["task"] == task, "input_shape"])
    other = manifest[
        (manifest["task"] != task)
        & (manifest["kind"] != "inr")
        & manifest["input_shape"].isin(shapes)
    ]
    return [str(i) for i in other["id"]]


def pick_transfer(
    manifest: pd.DataFrame, n_tasks: int, n_queries: int, max_pool: int
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Transfer tasks (classification, with test models and >= 3 candidates), their best
    held-out query models, and their candidate pools. Largest pools first, ties by name.

    Returns:
        ``(queries, pool)``: task → query ids, task → candidate ids.
    """
    test = manifest[(manifest["split"] == "test") & (manifest["kind"] == "classification")]
    pools = {str(t): _pool(manifest, str(t)) for t in sorted(set(test["task"]))}
    ranked = sorted((t for t in pools if len(pools[t]) >= 3), key=lambda t: (-len(pools[t]), t))
    queries, pool = {}, {}
    for task in ranked[:n_tasks]:
        rows = test[test["task"] == task].sort_values(["accuracy", "id"], ascending=[False, True])
        queries[task] = [str(i) for i in rows["id"].head(n_queries)]
        pool[task] = _sample(pools[task], max_pool)
    return queries, pool


def make_plan(manifest: pd.DataFrame, settings: PlanSettings) -> BenchPlan:
    """The benchmark's model sets for a zoo `manifest` (see `BenchPlan`).

    Raises:
        ValueError: the zoo has fewer than 2 test-split models.
    """
    test_ids = [str(i) for i in manifest.loc[manifest["split"] == "test", "id"]]
    test_ids = _sample(test_ids, settings.max_eval_models)
    if len(test_ids) < 2:
        raise ValueError(f"the zoo has {len(test_ids)} test-split models; the benchmark needs 2+")
    inr = manifest[(manifest["kind"] == "inr") & manifest["split"].isin(["train", "test"])]
    inr_ids = _sample([str(i) for i in inr["id"]], settings.max_inrs)
    queries, pool = pick_transfer(
        manifest, settings.n_transfer_tasks, settings.n_queries, settings.max_pool
    )
    tasks = pick_heldout(manifest, "task", settings.n_heldout_tasks)
    families = pick_heldout(manifest, "family", settings.n_heldout_families)
    return BenchPlan(test_ids, inr_ids, tasks, queries, pool, families)


def write_subzoo(zoo: Zoo, keep: np.ndarray | pd.Series, out: str) -> str:
    """A zoo directory holding the rows of `zoo` where `keep` is True; ``models/`` is a
    symlink to the original models, so nothing is copied.

    Args:
        zoo: the source zoo.
        keep: (n,) bool mask over ``zoo.manifest`` rows.
        out: directory to write (created; an existing manifest there is replaced).

    Returns:
        `out`.
    """
    from zoolens.zoo.manifest import write_manifest

    os.makedirs(out, exist_ok=True)
    df = zoo.manifest[np.asarray(keep, dtype=bool)].reset_index(drop=True)
    write_manifest(df, out)
    link = os.path.join(out, "models")
    if not os.path.lexists(link):
        os.symlink(os.path.abspath(os.path.join(zoo.path, "models")), link)
    src_info = os.path.join(zoo.path, "zoo.json")
    if os.path.exists(src_info):
        shutil.copyfile(src_info, os.path.join(out, "zoo.json"))
    with open(os.path.join(out, "subset.json"), "w") as f:
        json.dump({"source": os.path.abspath(zoo.path), "n_models": len(df)}, f, indent=1)
    return out


def capped_training_mask(manifest: pd.DataFrame, max_train: int | None) -> np.ndarray:
    """Rows to keep for a reduced training zoo: at most `max_train` train-split models and
    a quarter as many validation models (seeded samples); test rows are dropped.
    """
    keep = np.zeros(len(manifest), dtype=bool)
    caps = {"train": max_train, "val": None if max_train is None else max(4, max_train // 4)}
    for split, cap in caps.items():
        ids = _sample([str(i) for i in manifest.loc[manifest["split"] == split, "id"]], cap)
        keep |= manifest["id"].astype(str).isin(ids).to_numpy()
    return keep
