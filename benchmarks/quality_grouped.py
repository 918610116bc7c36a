"""Accuracy prediction with folds grouped by task (seed 001's zero-shot prediction).

    python benchmarks/quality_grouped.py --zoo ZOO [--encoder default] [--split test]

The classifiers of one split of a zoo are embedded by the encoder; a ridge regressor on the
frozen embeddings predicts each one's test accuracy out of fold, the folds grouped by task
(every prediction is for a task the regressor never saw), and apart shuffled (tasks seen).
Beside it: ridge on the function's output statistics on the probes (confidence, margin,
entropy: `zoolens.nn.fingerprint.output_statistics`), alone and beside the embedding, and
the encoder's shipped quality head (`predict_quality`) on the same models.
Prints R², Spearman and MAE.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from zoolens.eval.prediction import predict_out_of_fold, regression_metrics
from zoolens.nn import NeuralGraphEncoder, load_encoder
from zoolens.nn.fingerprint import output_statistics
from zoolens.zoo import Zoo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--encoder", default="default")
    ap.add_argument("--split", default="test")
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
    if hasattr(enc, "predict_quality"):
        rows["the encoder's quality head"] = np.asarray(enc.predict_quality(nets), np.float64)
    for name, pred in rows.items():
        r = regression_metrics(y, pred)
        mae = float(np.mean(np.abs(pred - y)))
        print(f"| {name} | {r['R2']:.3f} | {r['spearman']:.3f} | {mae:.3f} |")


if __name__ == "__main__":
    main()
