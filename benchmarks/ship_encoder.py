"""Evaluate a trained encoder against every baseline on held-out models and ship it.

    python benchmarks/ship_encoder.py --zoo ZOO --run RUN_DIR [--heldout-run RUN2]
        [--heldout-tasks a,b,c] [--heldout-families f] [--name neural-graph]
        [--fingerprint W [--fingerprint-norm none|centre|zscore]] [--function-head V]
        [--interface K] [--class-head U] [--render-head R] [--quality-stats] [--command "..."]

Writes ``src/zoolens/weights/<name>/`` (config.json, model.safetensors, MODEL_CARD.md,
metrics.csv) and prints the card's table. Every number in the card comes from this run.
``--fingerprint W`` ships (and measures, with its counterpart) the neural-graph encoder with
its function fingerprint at weight W (choose W with `benchmarks/fingerprint_weight.py`).
``--function-head V`` fits a function head on each of the two encoders (`zoolens
fit-function`; the counterpart's without its held-out tasks and families) and weighs it V.
``--interface K`` weighs both encoders' interface part (input shape, output count) K.
``--class-head U`` fits a class head on each (`zoolens fit-function --head class`, the
counterpart's without its held-out tasks and families) and weighs it U.
``--render-head R`` fits a render head on each (`zoolens fit-function --head render`: a
classifier of the INRs' drawings) and weighs it R.
``--quality-stats`` refits the trained encoder's quality head on the zoo, reading its
function's output statistics too (`zoolens fit-quality`), before measuring it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time

import numpy as np
import torch

from zoolens.bench.measure import subset_retrieval
from zoolens.eval import retrieval_metrics
from zoolens.nn import Encoder, NeuralGraphEncoder, encoder_class, load_encoder
from zoolens.nn.torch_encoder import TorchEncoder
from zoolens.train.data import group_labels, quality_targets
from zoolens.train.function import (
    FunctionFit,
    fit_class_head,
    fit_function_head,
    fit_render_head,
)
from zoolens.train.quality import QualityFit, fit_quality_head
from zoolens.zoo import Zoo

BASELINES = ("raw-weights", "flat-pca", "weight-stats", "probe", "metadata", "layerwise")


def _nets(zoo: Zoo, df) -> list:
    return [zoo.load(str(i)).to(torch.float32) for i in df["id"]]


def _score(enc: Encoder, nets: list, labels: np.ndarray, subsets: dict[str, np.ndarray]) -> dict:
    """Leave-one-out retrieval over all test models, and scored on the queries of each
    subset only (their gallery is still every test model)."""
    t = time.time()
    z = enc.encode(nets, batch_size=64)
    speed = len(nets) / (time.time() - t)
    m = retrieval_metrics(z, labels)
    out = {"all": {k: m[k] for k in ("mAP", "P@1", "P@5", "MRR")} | {"models/s": speed}}
    for name, queries in subsets.items():
        if queries.any():
            out[name] = subset_retrieval(z, labels, queries)
    return out


def _quality(enc: Encoder, nets: list, target: np.ndarray) -> dict[str, float]:
    """Quality predicted by the encoder's head vs the recorded one, on test models."""
    from scipy.stats import kendalltau, spearmanr

    ok = np.isfinite(target)
    pred = enc.predict_quality([n for n, k in zip(nets, ok, strict=True) if k])  # type: ignore[attr-defined]
    t = target[ok]
    return {
        "n": int(ok.sum()),
        "spearman": float(spearmanr(pred, t).statistic),
        "kendall": float(kendalltau(pred, t).statistic),
        "mae": float(np.abs(pred - t).mean()),
        "r2": float(1 - ((pred - t) ** 2).sum() / ((t - t.mean()) ** 2).sum()),
    }


def subsets(test, heldout_tasks: list[str], heldout_families: list[str]) -> dict[str, np.ndarray]:
    """Query subsets of the card's columns: INRs, the other models, held-out tasks, family."""
    inr = test["kind"].eq("inr").to_numpy()
    return {
        "INRs": inr,
        "non-INR": ~inr,
        "held-out tasks": test["task"].isin(heldout_tasks).to_numpy(),
        "held-out families": test["family"].isin(heldout_families).to_numpy(),
    }


HELD = ("held-out tasks", "held-out families")


def load_trained(path: str, fingerprint: float | None, norm: str | None = None) -> Encoder:
    """The encoder saved at `path`, with its fingerprint weight (and normalisation) set if
    one is given."""
    enc = load_encoder(path)
    if fingerprint is None:
        return enc
    if not isinstance(enc, NeuralGraphEncoder):
        raise SystemExit(f"{path}: --fingerprint applies to neural-graph encoders only")
    return enc.with_fingerprint(fingerprint, norm)


def with_interface(enc: Encoder, weight: float) -> Encoder:
    """`enc` with its interface part at `weight` (neural-graph encoders only)."""
    if not isinstance(enc, NeuralGraphEncoder):
        raise SystemExit("--interface applies to neural-graph encoders only")
    return enc.with_fingerprint(float(enc.config["fingerprint"]), interface=weight)


def evaluate_all(
    zoo: Zoo,
    trained: tuple[str, Encoder],
    heldout: Encoder | None,
    heldout_tasks: list[str],
    heldout_families: list[str],
) -> dict:
    """The trained encoder (name, encoder) and every baseline on the test split. The
    trained encoder's held-out columns come from its counterpart `heldout`, trained
    without those tasks and families (without one, the columns are left out)."""
    m = zoo.manifest
    test, train = m[m["split"] == "test"], m[m["split"] == "train"]
    test_nets = _nets(zoo, test)
    labels = group_labels(test.reset_index(drop=True))
    queries = subsets(test, heldout_tasks, heldout_families)
    own = {k: v for k, v in queries.items() if k not in HELD}
    name, enc = trained
    rows: dict = {name: _score(enc, test_nets, labels, own)}
    rows[name]["quality"] = _quality(enc, test_nets, quality_targets(test))
    if heldout is not None:
        held = {k: queries[k] for k in HELD}
        unseen = _score(heldout, test_nets, labels, held)
        rows[name] |= {k: v for k, v in unseen.items() if k != "all"}
    train_nets = _nets(zoo, train)
    others = {"neural-graph (untrained)": encoder_class("neural-graph")()}
    for name in BASELINES:
        enc = encoder_class(name)()
        if hasattr(enc, "fit"):
            enc.fit(train_nets)
        others[f"{name} (untrained)" if isinstance(enc, TorchEncoder) else name] = enc
    for name, enc in others.items():
        rows[name] = _score(enc, test_nets, labels, queries)
    return rows


def card(
    rows: dict,
    args: argparse.Namespace,
    zoo: Zoo,
    train_cfg: dict,
    fit: QualityFit | None,
    heads: dict[str, FunctionFit],
) -> str:
    lines = [
        f"# zoolens encoder `{args.name}`",
        "",
        f"Trained with: `{args.command}`",
        "",
        f"Zoo: `{zoo.path}` ({len(zoo)} models; "
        f"{zoo.manifest['task'].nunique()} tasks; split counts "
        f"{zoo.manifest['split'].value_counts().to_dict()}).",
        f"Training config: `{json.dumps(train_cfg)}`",
        "",
        *(
            [
                f"Function fingerprint at weight {args.fingerprint:g}"
                + (f", output norm {args.fingerprint_norm}" if args.fingerprint_norm else "")
                + " (`zoolens.nn.fingerprint`: "
                "the outputs on the probe inputs, randomly projected; not trained, set after "
                "training, chosen on the validation split by `python "
                "benchmarks/fingerprint_weight.py` with the same runs).",
                "",
            ]
            if args.fingerprint is not None
            else []
        ),
        *(
            [
                f"Function head at weight {args.function_head:g} (`zoolens fit-function`: an "
                "MLP of the fingerprint, fit with the supervised contrastive loss on the "
                "train split, the encoder frozen)"
                + (
                    f"; class head at weight {args.class_head:g} (`zoolens fit-function --head "
                    "class`: an MLP classifier of the fingerprint over the train split's "
                    "relevance groups, cross-entropy; its class probabilities join the "
                    "embedding)"
                    if args.class_head
                    else ""
                )
                + (
                    f"; render head at weight {args.render_head:g} (`zoolens fit-function "
                    "--head render`: a small CNN classifying the drawings of the coordinate "
                    "nets (INRs) on a "
                    f"{heads['render head, trained'].encoder.config['render_side']}-pixel-side "
                    "grid over the train "
                    "split's INR groups, cross-entropy; its class probabilities join the "
                    "embedding of every INR, one shared orthogonal vector that of every "
                    "other net)"
                    if args.render_head
                    else ""
                )
                + "; the learned part weighs the rest. "
                + " ".join(
                    f"{key}: fit on {h.n_train} models, validation mAP "
                    f"{h.val_map_before:.3f} → {h.val_map_after:.3f}."
                    for key, h in heads.items()
                ),
                "",
            ]
            if heads
            else []
        ),
        *(
            [
                f"Interface part at weight {args.interface:g} (`zoolens.nn.interface`: a fixed "
                "random unit vector per input shape and output count; not trained).",
                "",
            ]
            if args.interface
            else []
        ),
        "Held-out retrieval on the zoo's **test split** (models never seen in training), "
        "leave-one-out, relevant = same task (INRs: same task and digit). The INR and "
        "non-INR columns score the queries of each kind (gallery: every other test model). "
        f"'held-out tasks' = queries from the test models of tasks "
        f"{args.heldout_tasks or '—'}, 'held-out family' = those of the family "
        f"{args.heldout_families or '—'} (same gallery), embedded for the trained encoder "
        f"by `{args.heldout_run or '—'}`, which never saw those tasks or that family; the "
        "baselines' figure is the same subset of their own ranking (fitted ones were fit on "
        "everything).",
        "",
        "| encoder | mAP | P@1 | P@5 | MRR | mAP INRs | mAP non-INR | mAP held-out tasks "
        "| mAP held-out family | models/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        a = r["all"]
        sub = " | ".join(
            f"{r.get(k, {}).get('mAP', float('nan')):.3f}" for k in ("INRs", "non-INR", *HELD)
        )
        lines.append(
            f"| {name} | {a['mAP']:.3f} | {a['P@1']:.3f} | {a['P@5']:.3f} | "
            f"{a['MRR']:.3f} | {sub} | {a['models/s']:.0f} |"
        )
    if fit is not None:
        tried = ", ".join(f"{wd:g}: {r2:.3f}" for wd, r2 in fit.val_r2.items())
        lines += [
            "",
            "Quality head refit after training, the encoder frozen (`zoolens fit-quality "
            "--stats`: `zoolens.train.quality.fit_quality_head`), from the learned embedding "
            "and the function's output statistics on the probes, on the "
            f"{fit.n_train} train-split classifiers and regressors; weight decay "
            f"{fit.weight_decay:g} chosen by validation R² ({fit.n_val} models; {tried}).",
        ]
    for name, r in rows.items():
        if "quality" in r:
            q = r["quality"]
            lines += [
                "",
                f"Quality predicted by {name}'s head (`predict_quality`) on the {q['n']} "
                "test classifiers and regressors (accuracy; R² clipped to [0, 1]): "
                f"Spearman {q['spearman']:.3f}, Kendall τ {q['kendall']:.3f}, "
                f"MAE {q['mae']:.3f}, R² {q['r2']:.3f}.",
            ]
    lines += [
        "",
        f"Measured on {platform.machine()} with {torch.get_num_threads()} threads, "
        f"{time.strftime('%Y-%m-%d')}. Re-run: `python benchmarks/ship_encoder.py "
        f"--zoo {args.zoo} --run {args.run}"
        + (
            f" --heldout-run {args.heldout_run} --heldout-tasks {args.heldout_tasks}"
            f" --heldout-families {args.heldout_families}"
            if args.heldout_run
            else ""
        )
        + (f" --fingerprint {args.fingerprint:g}" if args.fingerprint is not None else "")
        + (f" --fingerprint-norm {args.fingerprint_norm}" if args.fingerprint_norm else "")
        + (f" --function-head {args.function_head:g}" if args.function_head else "")
        + (f" --interface {args.interface:g}" if args.interface else "")
        + (f" --class-head {args.class_head:g}" if args.class_head else "")
        + (f" --render-head {args.render_head:g}" if args.render_head else "")
        + (" --quality-stats" if args.quality_stats else "")
        + "`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--heldout-run", default="")
    ap.add_argument("--heldout-tasks", default="")
    ap.add_argument("--heldout-families", default="")
    ap.add_argument("--name", default="neural-graph")
    ap.add_argument("--command", default="")
    ap.add_argument("--fingerprint", type=float, default=None)
    ap.add_argument("--fingerprint-norm", default=None)
    ap.add_argument("--function-head", type=float, default=0.0)
    ap.add_argument("--interface", type=float, default=0.0)
    ap.add_argument("--class-head", type=float, default=0.0)
    ap.add_argument("--render-head", type=float, default=0.0)
    ap.add_argument("--quality-stats", action="store_true")
    ap.add_argument("--dest", default=os.path.join("src", "zoolens", "weights"))
    args = ap.parse_args()
    if args.fingerprint_norm is not None and args.fingerprint is None:
        ap.error("--fingerprint-norm needs --fingerprint W (the weight it applies to)")
    zoo = Zoo.open(args.zoo)
    tasks, families = (
        [t for t in v.split(",") if t] for v in (args.heldout_tasks, args.heldout_families)
    )
    enc = load_trained(os.path.join(args.run, "best"), args.fingerprint, args.fingerprint_norm)
    heldout = (
        load_trained(
            os.path.join(args.heldout_run, "best"), args.fingerprint, args.fingerprint_norm
        )
        if args.heldout_run
        else None
    )
    heads: dict[str, FunctionFit] = {}
    for flag, weight, fit_head in (
        ("function head", args.function_head, fit_function_head),
        ("class head", args.class_head, fit_class_head),
        ("render head", args.render_head, fit_render_head),
    ):
        if not weight:
            continue
        if not isinstance(enc, NeuralGraphEncoder):
            raise SystemExit(f"{args.run}: --{flag.replace(' ', '-')} needs a neural-graph encoder")
        heads[f"{flag}, trained"] = fit_head(enc, args.zoo, weight)
        enc = heads[f"{flag}, trained"].encoder
        if isinstance(heldout, NeuralGraphEncoder):
            heads[f"{flag}, counterpart"] = fit_head(
                heldout, args.zoo, weight, exclude_tasks=tasks, exclude_families=families
            )
            heldout = heads[f"{flag}, counterpart"].encoder
    if args.interface:
        enc = with_interface(enc, args.interface)
        heldout = with_interface(heldout, args.interface) if heldout is not None else None
    fit = None
    if args.quality_stats:
        if not isinstance(enc, TorchEncoder):
            raise SystemExit(f"{args.run}: --quality-stats needs a trained torch encoder")
        fit = fit_quality_head(enc, args.zoo, stats=True)
        enc = fit.encoder
    rows = evaluate_all(zoo, (f"{args.name} (trained)", enc), heldout, tasks, families)
    with open(os.path.join(args.run, "train_config.json")) as f:
        train_cfg = json.load(f)
    out = os.path.join(args.dest, args.name)
    os.makedirs(out, exist_ok=True)
    enc.save(out)
    shutil.copy(os.path.join(args.run, "metrics.csv"), os.path.join(out, "metrics.csv"))
    text = card(rows, args, zoo, train_cfg, fit, heads)
    with open(os.path.join(out, "MODEL_CARD.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
