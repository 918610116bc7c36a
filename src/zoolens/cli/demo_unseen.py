"""(d) of ``zoolens quickstart``, computed: nets of tasks that no zoo of the project holds.

Four classification tasks, each from another generator (a random teacher MLP, a Gaussian
mixture, scikit-learn's ``make_classification``, a rule on signs), all with ONE interface
(10 inputs → 3 classes; no zoo task has it), so shapes cannot give a task away. Four small
MLPs per task (own seed, width and activation) are embedded, and each net's nearest
neighbours among these 16 are checked for sharing its task, beside raw-weight cosine.

`zoolens.cli.quickstart` prints the result.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from zoolens.errors import ZoolensError
from zoolens.ir import Net, TensorSet
from zoolens.nn.base import Encoder

UNSEEN_TASKS = ("teacher-mlp", "gaussian-mixture", "make-classification", "sign-rule")
N_INPUTS, N_CLASSES = 10, 3
#: (seed, width, activation) of the four nets trained per task.
NET_RECIPES = ((0, 32, "relu"), (1, 48, "tanh"), (2, 24, "gelu"), (3, 40, "relu"))
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


@dataclass
class UnseenTasks:
    """Same-task counts among each net's `k` nearest neighbours, summed per task.

    Args:
        tasks: the tasks, in order.
        embedding_same: task → same-task neighbours of its nets, by the embedding.
        raw_same: the same by raw-weight cosine (flattened, zero-padded weights).
        accuracies: task → test accuracy of each of its nets.
        k: neighbours per net; a task's count is at most ``k`` × its nets.
    """

    tasks: list[str]
    embedding_same: dict[str, int]
    raw_same: dict[str, int]
    accuracies: dict[str, list[float]]
    k: int

    @property
    def possible(self) -> int:
        return self.k * sum(len(a) for a in self.accuracies.values())


def unseen_task_data(task: str, n: int = 800) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(n, 10)`` float32 (standardised) and labels ``(n,)`` int64 in {0, 1, 2}."""
    if task not in UNSEEN_TASKS:
        raise ZoolensError(f"unknown unseen task {task!r}; known: {', '.join(UNSEEN_TASKS)}")
    g = torch.Generator().manual_seed(101 + UNSEEN_TASKS.index(task))
    if task == "teacher-mlp":  # argmax of a random tanh MLP
        x = torch.randn(n, N_INPUTS, generator=g)
        w1 = torch.randn(N_INPUTS, 16, generator=g)
        w2 = torch.randn(16, N_CLASSES, generator=g)
        y = (torch.tanh(x @ w1 / N_INPUTS**0.5) @ w2).argmax(1)
    elif task == "gaussian-mixture":  # two Gaussian components per class
        means = 1.5 * torch.randn(N_CLASSES * 2, N_INPUTS, generator=g)
        comp = torch.randint(0, N_CLASSES * 2, (n,), generator=g)
        x, y = means[comp] + torch.randn(n, N_INPUTS, generator=g), comp % N_CLASSES
    elif task == "make-classification":
        from sklearn.datasets import make_classification

        xs, ys = make_classification(
            n, N_INPUTS, n_informative=6, n_redundant=2, n_classes=N_CLASSES, random_state=7
        )
        x, y = torch.from_numpy(xs).float(), torch.from_numpy(ys)
    else:  # sign-rule: 0, 1 or 2 of two sign conditions hold
        x = torch.randn(n, N_INPUTS, generator=g)
        y = (x[:, 0] * x[:, 1] > 0).long() + (x[:, 2] + x[:, 3] - x[:, 4] > 0).long()
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    return x.float(), y.long()


def train_unseen_net(
    x: torch.Tensor, y: torch.Tensor, seed: int, width: int, activation: str, steps: int = 120
) -> tuple[Net, float]:
    """A 2-hidden-layer MLP trained full-batch on the first 3/4 of ``(x, y)``; returns it and
    its accuracy on the last quarter. Initialised from its own generator (no global seed)."""
    from zoolens.ir.fx_import import import_module

    g = torch.Generator().manual_seed(seed)
    sizes = [N_INPUTS, width, width, N_CLASSES]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        lin = nn.Linear(a, b, device="meta").to_empty(device="cpu")
        with torch.no_grad():
            lin.weight.uniform_(-(a**-0.5), a**-0.5, generator=g)
            lin.bias.uniform_(-(a**-0.5), a**-0.5, generator=g)
        layers += [lin] if i == len(sizes) - 2 else [lin, _ACTIVATIONS[activation]()]
    model = nn.Sequential(*layers)
    cut = 3 * len(x) // 4
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:cut]), y[:cut]).backward()  # type: ignore[no-untyped-call]
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(x[cut:]).argmax(1) == y[cut:]).double().mean())
    return import_module(model, (N_INPUTS,)), acc


def train_unseen_nets() -> tuple[list[Net], list[str], list[float]]:
    """The 16 nets (4 per task, task-major), their tasks and their test accuracies."""
    nets, labels, accs = [], [], []
    for task in UNSEEN_TASKS:
        x, y = unseen_task_data(task)
        for seed, width, act in NET_RECIPES:
            net, acc = train_unseen_net(x, y, seed, width, act)
            nets.append(net)
            labels.append(task)
            accs.append(acc)
    return nets, labels, accs


def same_task_neighbours(vectors: np.ndarray, labels: list[str], k: int = 3) -> np.ndarray:
    """For each row of `vectors` ``(n, d)``: how many of its `k` nearest other rows (by
    cosine) share its label. Returns ``(n,)`` int."""
    v = np.asarray(vectors, np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)
    sim = v @ v.T  # (n, n)
    np.fill_diagonal(sim, -np.inf)
    nearest = np.argsort(-sim, axis=1, kind="stable")[:, :k]  # (n, k)
    lab = np.asarray(labels)
    return np.asarray((lab[nearest] == lab[:, None]).sum(1), dtype=np.int64)


def flat_weights(nets: list[Net]) -> np.ndarray:
    """Each net's parameters flattened in op order, zero-padded to the longest: ``(n, P)``."""
    flat = [torch.cat([t.flatten() for t in n.parameters()]).double().numpy() for n in nets]
    out = np.zeros((len(flat), max(len(f) for f in flat)))
    for i, f in enumerate(flat):
        out[i, : len(f)] = f
    return out


def unseen_tasks(encoder: Encoder, k: int = 3) -> UnseenTasks:
    """Train the 16 nets, embed them with `encoder`, and count same-task neighbours."""
    nets, labels, accs = train_unseen_nets()
    query: list[Net | TensorSet] = list(nets)
    emb = same_task_neighbours(encoder.encode(query), labels, k)
    raw = same_task_neighbours(flat_weights(nets), labels, k)
    lab = np.asarray(labels)

    def per_task(counts: np.ndarray) -> dict[str, int]:
        return {t: int(counts[lab == t].sum()) for t in UNSEEN_TASKS}

    acc = {t: [a for a, lt in zip(accs, labels, strict=True) if lt == t] for t in UNSEEN_TASKS}
    return UnseenTasks(list(UNSEEN_TASKS), per_task(emb), per_task(raw), acc, k)
