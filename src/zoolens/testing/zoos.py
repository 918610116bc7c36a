"""A tiny zoo whose labels the weights carry, for testing heads: two tasks differ by weight
scale, and a model's 'accuracy' rises with its scale; the fast ``weight-stats`` encoder
separates them. Not imported by `zoolens.testing` itself (it writes a zoo: pandas, parquet)."""

from __future__ import annotations

import numpy as np
import torch

from zoolens.ir import Net, load_net
from zoolens.zoo import Zoo
from zoolens.zoo.importers import write_zoo

SPLITS = ("train", "train", "train", "val", "test")
TASK_SCALE = {"quiet": 0.3, "loud": 3.0}


def scaled_mlp(scale: float, seed: int) -> Net:
    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(scale)
    net = load_net(module)
    assert isinstance(net, Net)
    return net


def write_label_zoo(out: str, n: int = 40, seed: int = 0) -> Zoo:
    """`n` models, tasks alternating, split by position (3 train : 1 val : 1 test)."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        task = ("quiet", "loud")[i % 2]
        scale = TASK_SCALE[task] * float(rng.uniform(0.6, 1.6))
        row = {
            "id": f"m{i:03d}",
            "task": task,
            "kind": "classification",
            "family": "mlp",
            "accuracy": 0.5 + 0.1 * float(np.log(scale)),
            "split": SPLITS[(i // 2) % 5],
            "index": i,
        }
        items.append((scaled_mlp(scale, i), row))
    return write_zoo(items, out)
