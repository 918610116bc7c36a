"""How well can INR digits be retrieved at all from what the INRs compute?

    python benchmarks/inr_ceiling.py --zoo ZOO

A supervised reference, not an encoder: each INR of the zoo is rendered at fixed points of
its coordinate domain; a classifier (scikit-learn MLP, one hidden layer) is fitted on the
train split's renderings with their group labels (task and digit), and its class
probabilities on the test split are the embeddings scored by leave-one-out mAP — the same
relevance as the encoders' INR column. Point sets: the encoders' Sobol probes, regular
grids, the "structured" probes (an 8 x 8 lattice, then Sobol points) and, per task, the
pixel grid the INRs were fitted on. Per task the same classifier is also fitted on the
ground-truth images the INRs were fitted to, which bounds what any rendering can give.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from zoolens.eval import retrieval_metrics
from zoolens.graph import default_probes
from zoolens.train.data import group_labels
from zoolens.zoo import Zoo
from zoolens.zoo.tasks import image_coordinates, load_inr_images


def grid(side: int) -> torch.Tensor:
    """The ``side x side`` pixel centres in [-1, 1]^2, float64 ``(side**2, 2)``."""
    return image_coordinates(side, side).double()


def score(x: np.ndarray, labels: np.ndarray, train: np.ndarray, seed: int) -> tuple[float, float]:
    """``(test accuracy, test mAP of the class probabilities)`` of a classifier fit on train."""
    clf = MLPClassifier((256,), max_iter=500, random_state=seed).fit(x[train], labels[train])
    test = ~train
    proba = clf.predict_proba(x[test])
    return float(clf.score(x[test], labels[test])), retrieval_metrics(proba, labels[test])["mAP"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    zoo = Zoo.open(args.zoo)
    m = zoo.manifest
    inr = m[m["kind"].eq("inr") & m["split"].isin(["train", "test"])].reset_index(drop=True)
    nets = [zoo.load(str(i)).to(torch.float64) for i in inr["id"]]
    labels, train = group_labels(inr), inr["split"].eq("train").to_numpy()

    def render(points: torch.Tensor, rows: np.ndarray | None = None) -> np.ndarray:
        chosen = range(len(nets)) if rows is None else np.nonzero(rows)[0]
        with torch.no_grad():
            return np.stack([nets[i](points).reshape(-1).numpy() for i in chosen])

    sobol = "sobol 256 (the encoders' probes)"
    sets = {
        sobol: default_probes((2,), 256),
        "sobol 1024": default_probes((2,), 1024),
        "grid 16 x 16": grid(16),
        "structured 256 (8 x 8 lattice + sobol)": default_probes((2,), 256, kind="structured"),
    }
    n_test = int((~train).sum())
    print(f"{len(inr)} INRs ({n_test} test); classifier on renderings, fit on train")
    print(f"{'points':42s} {'tasks':>22s} {'accuracy':>9s} {'mAP':>6s}")
    rendered = {name: render(points) for name, points in sets.items()}
    for name, x in rendered.items():
        acc, ap_ = score(x, labels, train, args.seed)
        print(f"{name:42s} {'all':>22s} {acc:9.3f} {ap_:6.3f}")
    for task in sorted(inr["task"].unique()):
        rows = inr["task"].eq(task).to_numpy()
        images = load_inr_images(task)[0].numpy()
        side = images.shape[1]
        truth = images[inr.loc[rows, "image_index"].astype(int).to_numpy()]
        cases = {
            "sobol 256": rendered[sobol][rows],
            f"own pixel grid {side} x {side}": render(grid(side), rows),
            "ground-truth images (no INR)": truth.reshape(int(rows.sum()), -1),
        }
        for name, x in cases.items():
            acc, ap_ = score(x, labels[rows], train[rows], args.seed)
            print(f"{name:42s} {task:>22s} {acc:9.3f} {ap_:6.3f}")


if __name__ == "__main__":
    main()
