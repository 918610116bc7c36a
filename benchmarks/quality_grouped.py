"""Accuracy prediction with folds grouped by task (seed 001's zero-shot prediction).

    python benchmarks/quality_grouped.py --zoo ZOO [--encoder default] [--split test]

The classifiers of one split of a zoo are embedded by the encoder; a ridge regressor on the
frozen embeddings predicts each one's test accuracy out of fold, the folds grouped by task
(every prediction is for a task the regressor never saw), and apart shuffled (tasks seen).
Beside it: ridge on the function's output statistics on the probes (confidence, margin,
entropy: `zoolens.nn.fingerprint.output_statistics`), alone and beside the embedding; the
same statistics on the task's own unlabelled inputs (the first `--task-inputs` training
inputs of each task, where `zoolens.zoo.tasks` knows the task: what a user who has sample
inputs of the task but no labels can compute); and the encoder's shipped quality head
(`predict_quality`) on the same models.
Prints R², Spearman and MAE.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from zoolens.errors import ZoolensError
from zoolens.eval.prediction import predict_out_of_fold, regression_metrics
from zoolens.ir import Net
from zoolens.nn import NeuralGraphEncoder, load_encoder
from zoolens.nn.fingerprint import output_statistics, response_statistics
from zoolens.zoo import Zoo
from zoolens.zoo.tasks import load_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--encoder", default="default")
    ap.add_argument("--split", default="test")
    ap.add_argument("--task-inputs", type=int, default=256, help="unlabelled inputs per task")
    args = ap.parse_args()
    torch.set_num_threads(1)
    zoo, enc = Zoo.open(args.zoo), load_encoder(args.encoder)
    m = zoo.manifest
    df = m[(m["split"] == args.split) & m["accuracy"].notna()].reset_index(drop=True)
    nets = [zoo.load(str(i)).to(torch.float32) for i in df["id"]]
    z = enc.encode(nets)
    y = df["accuracy"].to_numpy(np.float64)
    tasks = df["task"].astype(str).to_numpy()
    print(f"{len(df)} classifiers of {df['task'].nunique()} tasks ({args.split} split)")
    print("| predictor | R² | Spearman | MAE |\n|---|---:|---:|---:|")
    rows = {
        "ridge on the embedding, folds grouped by task": predict_out_of_fold(z, y, tasks),
        "ridge on the embedding, shuffled folds": predict_out_of_fold(z, y, None),
    }
    if isinstance(enc, NeuralGraphEncoder) and enc.config.n_probes:
        stats = output_statistics(enc.graphs(nets)).double().numpy()
        both = np.hstack([z, stats])
        rows["ridge on output statistics alone, grouped"] = predict_out_of_fold(stats, y, tasks)
        rows["ridge on embedding + output statistics, grouped"] = predict_out_of_fold(
            both, y, tasks
        )
    on_task = task_input_statistics(nets, tasks, args.task_inputs)
    if on_task is not None:
        rows["ridge on output statistics on the task's unlabelled inputs, grouped"] = (
            predict_out_of_fold(on_task, y, tasks)
        )
    if hasattr(enc, "predict_quality"):
        rows["the encoder's quality head"] = np.asarray(enc.predict_quality(nets), np.float64)
    for name, pred in rows.items():
        r = regression_metrics(y, pred)
        mae = float(np.mean(np.abs(pred - y)))
        print(f"| {name} | {r['R2']:.3f} | {r['spearman']:.3f} | {mae:.3f} |")


def task_input_statistics(nets: list[Net], tasks: np.ndarray, n: int) -> np.ndarray | None:
    """Each net's output statistics on the first `n` training inputs of its task (labels
    unread), or None if some task is not one `zoolens.zoo.tasks` can load."""
    inputs: dict[str, torch.Tensor] = {}
    rows = []
    for net, task in zip(nets, tasks, strict=True):
        if task not in inputs:
            try:
                inputs[task] = load_task(task).x_train[:n]
            except (ZoolensError, KeyError, ValueError):
                return None
        with torch.no_grad():
            rows.append(response_statistics(net(inputs[task].to(torch.float32))))
    return np.asarray(rows, np.float64)


if __name__ == "__main__":
    main()
