"""Benchmark results: mean ± std over seeds, JSON-safe values, and the Markdown report.

Also holds the seed paper's published numbers (seed 000, Tables 3–6), copied as
numbers with their labels; they were measured on that paper's own zoo of 94 public
models, not on the zoo a benchmark runs on, and the report says so wherever it shows them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from zoolens.jsonable import jsonable

#: Seed 000's Tables 3–6, numbers only. Its encoders map to ours as in `PUBLISHED_PEERS`.
PUBLISHED: dict[str, Any] = {
    "source": "seed paper 000, Tables 3–6; measured on its own zoo of 94 public models",
    "retrieval": {  # Table 3
        "EquivariantGNN": {"P@1": 0.7279, "P@5": 0.5322, "P@10": 0.4010, "mAP": 0.6987},
        "Transformer": {"P@1": 0.6079, "P@5": 0.4322, "P@10": 0.3210, "mAP": 0.5987},
        "PCA": {"P@1": 0.5279, "P@5": 0.3722, "P@10": 0.2810, "mAP": 0.4987},
    },
    "transfer_proxy_improvement": {  # Table 4 (a proxy score, not fine-tuning)
        "EquivariantGNN": {"budget 10": 0.1126, "budget 50": 0.1805, "budget 100": 0.2370},
        "Transformer": {"budget 10": 0.0526, "budget 50": 0.0905, "budget 100": 0.1170},
        "PCA": {"budget 10": 0.0126, "budget 50": 0.0305, "budget 100": 0.0370},
    },
    "robustness": {  # Table 5
        "EquivariantGNN": {
            "cos_mean": 0.7437,
            "cos_min": 0.5956,
            "l2_mean": 0.2053,
            "l2_max": 0.4083,
        },
        "Transformer": {"cos_mean": 0.6037, "cos_min": 0.4756, "l2_mean": 0.2653, "l2_max": 0.4683},
        "PCA": {"cos_mean": 0.5437, "cos_min": 0.4356, "l2_mean": 0.3053, "l2_max": 0.4883},
    },
    "clustering": {  # Table 6
        "EquivariantGNN": {"silhouette": 0.5800, "davies_bouldin": 0.4590},
        "Transformer": {"silhouette": 0.4900, "davies_bouldin": 0.5490},
        "PCA": {"silhouette": 0.4300, "davies_bouldin": 0.6090},
    },
}
#: Our encoder → the seed paper's closest encoder.
PUBLISHED_PEERS = {
    "neural-graph": "EquivariantGNN",
    "flat-transformer": "Transformer",
    "flat-pca": "PCA",
}


# -- aggregation ------------------------------------------------------------------------------
def _stat(values: Sequence[Any]) -> dict[str, float]:
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return {"mean": math.nan, "std": math.nan}
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std}


def aggregate(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over seeds of every numeric leaf of nested dicts.

    Args:
        runs: one nested dict per seed, numbers at the leaves; a key missing from some
            runs is aggregated over the runs that have it.

    Returns:
        The same nesting with each leaf replaced by ``{"mean", "std"}``: NaN and
        infinite values are ignored; std is the sample std (ddof 1), 0 for one value,
        and both are NaN when no finite value exists.
    """
    keys = list(dict.fromkeys(k for run in runs for k in run))
    out: dict[str, Any] = {}
    for key in keys:
        values = [run[key] for run in runs if key in run]
        if all(isinstance(v, Mapping) for v in values):
            out[key] = aggregate(values)
        else:
            out[key] = _stat(values)
    return out


#: NaN / infinite floats → None, numpy scalars → Python ones (kept under this name here).
json_safe = jsonable


# -- formatting -------------------------------------------------------------------------------
def get(results: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    """The ``{"mean", "std"}`` leaf at a dotted `path`, or None."""
    node: Any = results
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, Mapping) and "mean" in node else None


def fmt(stat: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``mean ± std`` with `digits` decimals, or an em dash. The std is left out when it
    rounds to 0 (one seed, a deterministic encoder)."""
    if stat is None or stat.get("mean") is None or not math.isfinite(stat["mean"]):
        return "—"
    mean, std = float(stat["mean"]), stat.get("std")
    if std is None or not math.isfinite(std) or abs(std) < 0.5 * 10.0**-digits:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


#: Leaves that count things: printed without decimals.
COUNTS = frozenset({"n_queries", "n_test", "dim", "bytes_per_model", "encoder_bytes"})


def metric_table(
    encoders: Mapping[str, Any], columns: Sequence[tuple[str, str]], digits: int = 3
) -> str:
    """One row per encoder, one column per ``(header, dotted path)``; counts get no decimals."""
    places = [0 if path.rsplit(".", 1)[-1] in COUNTS else digits for _, path in columns]
    rows = [
        [
            f"`{name}`",
            *(fmt(get(res, path), d) for (_, path), d in zip(columns, places, strict=True)),
        ]
        for name, res in encoders.items()
    ]
    return table(["encoder", *(h for h, _ in columns)], rows)


HEADLINE = [
    ("mAP (task)", "retrieval.mAP"),
    ("P@1", "retrieval.P@1"),
    ("P@10", "retrieval.P@10"),
    ("MRR", "retrieval.MRR"),
    ("exact-action cos", "robustness.exact.cos_mean"),
    ("silhouette", "clustering.silhouette"),
    ("acc. R² (ridge)", "accuracy_prediction.ridge.R2"),
    ("Kendall τ (ridge)", "accuracy_prediction.ridge.kendall_tau"),
    ("acc. R² seen tasks (ridge)", "accuracy_prediction.ridge_seen.R2"),
    ("transfer gain vs random @100", "transfer.gain_vs_random@100"),
    ("INR acc.", "inr.logistic_acc"),
    ("mAP unseen tasks", "generalisation.tasks.unseen.mAP"),
    ("mAP unseen families", "generalisation.families.unseen.mAP"),
]


def published_tables(encoders: Mapping[str, Any]) -> str:
    """Our numbers beside seed 000's Tables 3, 5 and 6 (its Table 4 is a proxy, shown apart)."""
    sections = []
    specs = [
        ("retrieval", "retrieval", ["P@1", "P@5", "P@10", "mAP"], "Table 3 — retrieval"),
        (
            "robustness",
            "robustness.exact",
            ["cos_mean", "cos_min", "l2_mean", "l2_max"],
            "Table 5 — symmetry robustness (ours: exact actions)",
        ),
        ("clustering", "clustering", ["silhouette", "davies_bouldin"], "Table 6 — clustering"),
    ]
    for key, prefix, cols, title in specs:
        rows = []
        for ours, theirs in PUBLISHED_PEERS.items():
            if ours in encoders:
                rows.append(
                    [
                        f"`{ours}` (ours, this zoo)",
                        *(fmt(get(encoders[ours], f"{prefix}.{c}")) for c in cols),
                    ]
                )
            rows.append(
                [
                    f"{theirs} (seed 000, its zoo)",
                    *(f"{PUBLISHED[key][theirs][c]:.4f}" for c in cols),
                ]
            )
        sections.append(f"**{title}**\n\n" + table(["model", *cols], rows))
    proxy = PUBLISHED["transfer_proxy_improvement"]
    rows = [[name, *(f"{v:.4f}" for v in vals.values())] for name, vals in proxy.items()]
    sections.append(
        "**Table 4 — transfer (seed 000: a proxy score from ground-truth task similarity, "
        "not fine-tuning; not comparable with our measured gains)**\n\n"
        + table(["model", "budget 10", "budget 50", "budget 100"], rows)
    )
    return "\n\n".join(sections)


# -- the report ---------------------------------------------------------------------------------
def _cols(prefix: str, names: Sequence[str]) -> list[tuple[str, str]]:
    return [(n, f"{prefix}.{n}") for n in names]


def _transfer_section(encoders: Mapping[str, Any], budgets: Sequence[int]) -> str:
    cols = [(f"acc@{b}", f"transfer.acc@{b}") for b in budgets]
    cols += [(f"gain vs random @{b}", f"transfer.gain_vs_random@{b}") for b in budgets]
    cols += [(f"gain vs scratch @{b}", f"transfer.gain_vs_scratch@{b}") for b in budgets]
    cols += [("source acc. of picks", "transfer.pick_quality")]
    ref = next((r for r in encoders.values() if get(r, f"transfer.random_acc@{budgets[-1]}")), None)
    if ref is None:
        return "No transfer task in this zoo (needs held-out classifiers and 3+ candidates)."
    refs = table(
        ["reference", *(f"acc@{b}" for b in budgets), "source acc. of picks"],
        [
            [
                "k random candidates",
                *(fmt(get(ref, f"transfer.random_acc@{b}")) for b in budgets),
                fmt(get(ref, "transfer.random_pick_quality")),
            ],
            ["from scratch", *(fmt(get(ref, f"transfer.scratch_acc@{b}")) for b in budgets), "—"],
        ],
    )
    return metric_table(encoders, cols) + "\n\n" + refs


def _learned_section(encoders: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Accuracy prediction from the learned columns of encoders that append unlearned
    features (none in the report when no encoder does)."""
    hybrid = {n: r for n, r in encoders.items() if get(r, "accuracy_prediction.ridge_learned.R2")}
    if not hybrid:
        return []
    cols = [
        (f"{m} {how} {h}", f"accuracy_prediction.{m}_learned{key}.{c}")
        for key, how in (("", "grouped"), ("_seen", "seen"))
        for m in ("ridge", "mlp")
        for h, c in (("R²", "R2"), ("τ", "kendall_tau"))
    ]
    title = "Accuracy prediction — the learned columns alone (embedding without its fingerprint)"
    return [(title, metric_table(hybrid, cols))]


def _sections(encoders: Mapping[str, Any], budgets: Sequence[int]) -> list[tuple[str, str]]:
    same_shape = (
        "Retrieval — relevance: same task, among models of the same input and output "
        "shape (what metadata cannot tell apart)",
        metric_table(
            encoders, _cols("retrieval_same_shape", ["P@1", "P@5", "mAP", "MRR", "n_queries"])
        ),
    )
    full = [
        "P@1",
        "P@5",
        "P@10",
        "R@1",
        "R@5",
        "R@10",
        "F1@1",
        "F1@5",
        "F1@10",
        "mAP",
        "MRR",
        "n_queries",
    ]
    short = ["P@1", "P@5", "R@5", "mAP", "MRR", "n_queries"]
    robust = ["cos_mean", "cos_min", "l2_mean", "l2_max"]
    regress = ["R2", "MSE", "spearman", "kendall_tau"]
    return [
        ("Retrieval — relevance: same task", metric_table(encoders, _cols("retrieval", full))),
        same_shape,
        (
            "Retrieval — relevance: same family",
            metric_table(encoders, _cols("retrieval_family", short)),
        ),
        (
            "Retrieval — relevance: same lineage (parent / fine-tuned child)",
            metric_table(encoders, _cols("retrieval_lineage", short)),
        ),
        *[
            (
                f"Symmetry robustness — {title}",
                metric_table(encoders, _cols(f"robustness.{view}", robust), 4),
            )
            for view, title in (
                ("exact", "exact actions (permutations, scalings, signs)"),
                ("dropconnect", "DropConnect 5% (inexact)"),
                ("noise", "weight noise 5% of each tensor's std (inexact)"),
            )
        ],
        (
            "Clustering by task",
            metric_table(encoders, _cols("clustering", ["silhouette", "davies_bouldin"])),
        ),
        *[
            (
                f"Accuracy prediction — {m}, {how} (held-out classifiers)",
                metric_table(encoders, _cols(f"accuracy_prediction.{m}{key}", regress)),
            )
            for key, how in (("", "grouped CV by task"), ("_seen", "shuffled CV, tasks seen"))
            for m in ("ridge", "mlp")
        ],
        *_learned_section(encoders),
        (
            "Transfer by fine-tuning (test accuracy on the query task)",
            _transfer_section(encoders, budgets),
        ),
        (
            "INR classification (digit from embedding; fit on train-split INRs)",
            metric_table(encoders, _cols("inr", ["logistic_acc", "knn_acc", "n_test"])),
        ),
        *[
            (
                f"Generalisation — retrieval on {what} held out of encoder training",
                metric_table(
                    encoders,
                    [
                        *_cols(f"generalisation.{what}.unseen", ["P@1", "mAP", "MRR"]),
                        ("seen P@1", f"generalisation.{what}.seen.P@1"),
                        ("seen mAP", f"generalisation.{what}.seen.mAP"),
                        ("queries", f"generalisation.{what}.unseen.n_queries"),
                    ],
                ),
            )
            for what in ("tasks", "families")
        ],
        (
            "Cost",
            metric_table(
                encoders,
                _cols(
                    "cost",
                    [
                        "train_seconds",
                        "train_epochs",
                        "embed_models_per_s",
                        "dim",
                        "bytes_per_model",
                        "encoder_bytes",
                    ],
                ),
                1,
            ),
        ),
    ]


def render_report(results: Mapping[str, Any], figures: Sequence[tuple[str, str]]) -> str:
    """The Markdown report of a benchmark run.

    Args:
        results: the ``results.json`` content (aggregated, before `json_safe`).
        figures: ``(caption, file name)`` of each figure, relative to the report.

    Returns:
        The report text.
    """
    enc, proto, zoo = results["encoders"], results["protocol"], results["zoo"]
    lines = [
        "# zoolens benchmark",
        "",
        f"```\n{results['command']}\n```",
        "",
        f"Zoo `{zoo['path']}` (preset `{zoo.get('preset') or '—'}`): {zoo['n_models']} models, "
        f"{proto['n_test_models']} held-out (test split) measured. Seeds {results['seeds']}; "
        f"every number is mean ± std over seeds. Wall time {results['seconds'] / 60:.1f} min.",
        "",
        "## Headline",
        "",
        metric_table(enc, HEADLINE),
    ]
    for title, body in _sections(enc, proto["transfer_budgets"]):
        lines += ["", f"## {title}", "", body]
    lines += [
        "",
        "## Seed paper's published numbers (its own zoo — not this one)",
        "",
        published_tables(enc),
    ]
    lines += ["", "## Figures", ""] + [f"![{cap}]({name})\n" for cap, name in figures]
    lines += ["## Protocol", "", *[f"- {note}" for note in results["notes"]]]
    if results.get("failures"):
        lines += ["", "## Failures", ""]
        lines += [f"- `{name}`: {msg}" for name, msg in results["failures"].items()]
    return "\n".join(lines) + "\n"
