"""Train and save the example networks shipped in ``zoolens/examples``.

Run by hand when an example must change: ``python -m zoolens.examples.make_examples``.
Uses scikit-learn's bundled digits data set (8×8 images, 10 classes): no download.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from zoolens.ir.fx_import import import_module
from zoolens.ir.net import Net


def load_digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits scaled to [0, 1]: ``(x_train, y_train, x_test, y_test)``, a 75/25 split.

    Returns:
        Float32 images of shape ``(n, 64)`` and int64 labels.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        (x / 16.0).astype(np.float32),
        y.astype(np.int64),
        test_size=0.25,
        random_state=seed,
        stratify=y,
    )
    return x_tr, y_tr, x_te, y_te


def make_mlp_digits(out_dir: str, seed: int = 0, epochs: int = 40) -> Net:
    """Train a 64-32-10 ReLU MLP on digits for a few seconds and save it as a zoolens net.

    Args:
        out_dir: directory to write (``arch.json`` + ``model.safetensors``).
        seed: seed of the split, the initialisation and the batch order.
        epochs: passes over the training set.

    Returns:
        The saved net; ``meta`` records the data set and the test accuracy.
    """
    x_tr, y_tr, x_te, y_te = load_digits_split(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    for _ in range(epochs):
        for idx in torch.split(torch.randperm(len(xt), generator=gen), 64):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            torch.autograd.backward(loss)
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean())
    net = import_module(model)
    net.meta.update(
        {
            "name": "mlp_digits",
            "task": "classification",
            "dataset": "sklearn digits (8x8 images scaled to [0, 1], 10 classes)",
            "split": f"train_test_split(test_size=0.25, stratify=y, random_state={seed})",
            "test_accuracy": round(acc, 4),
            "epochs": epochs,
            "seed": seed,
            "made_by": "python -m zoolens.examples.make_examples",
        }
    )
    net.save(out_dir)
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        default=str(Path(__file__).parent),
        help="directory that receives one sub-directory per example",
    )
    args = parser.parse_args()
    net = make_mlp_digits(str(Path(args.out) / "mlp_digits"))
    print(f"mlp_digits: test accuracy {net.meta['test_accuracy']:.3f}")


if __name__ == "__main__":
    main()
