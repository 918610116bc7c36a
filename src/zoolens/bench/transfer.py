"""Transfer by real fine-tuning: are the models an encoder retrieves good starting points?

For a held-out query model of a classification task, each encoder ranks candidate models
of the *other* tasks with the same input shape by cosine similarity; its top k are
fine-tuned on the query task's training data (a new head when the output size differs)
and their test accuracy is read after each step budget. Two references share the
protocol: k candidates drawn at random, and the same random candidates' architectures
re-initialised (training from scratch). Fine-tunes are cached per (model, task, init),
so encoders that retrieve the same model share its run.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoolens.bench.data import BenchPlan
from zoolens.ir import DENSE_KINDS, Net, Op
from zoolens.nn.base import torch_threads
from zoolens.zoo.tasks import TaskData, load_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransferSettings:
    """Args:
    k: retrieved models fine-tuned per query.
    budgets: optimiser steps after which test accuracy is read (ascending).
    lr: Adam learning rate.
    batch_size: training mini-batch size.
    """

    k: int = 3
    budgets: tuple[int, ...] = (10, 50, 100)
    lr: float = 1e-3
    batch_size: int = 64


class NetModule(nn.Module):
    """A `Net` as a trainable torch module: a copy whose weights are leaf `nn.Parameter`s.

    BatchNorm running statistics stay plain tensors (the IR runs norms in inference mode).

    Args:
        net: the network (copied, cast to float32; the original is untouched).

    Shapes:
        x: ``(B, *net.input_shape)`` → ``(B, n_out)``.
    """

    def __init__(self, net: Net) -> None:
        super().__init__()
        self.net = net.to(torch.float32)
        self.weights = nn.ParameterList()
        for op in self.net.ops:
            for role, tensor in op.params.items():
                if not role.startswith("running_"):
                    param = nn.Parameter(tensor.detach().clone())
                    op.params[role] = param
                    self.weights.append(param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


def output_op(net: Net) -> Op:
    """The op writing the net's output; a ValueError unless it is a Linear head."""
    op = net.producer(net.output)
    if op is None or op.kind != "linear":
        kind = "the input" if op is None else op.kind
        raise ValueError(f"output of the net comes from {kind}, not a Linear head")
    return op


def _uniform(shape: tuple[int, ...], bound: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


def reset_op(op: Op, gen: torch.Generator) -> None:
    """Re-initialise `op`'s tensors as torch does for a fresh module (dense ops: uniform
    ±1/sqrt(fan_in); norms: weight 1, bias 0, running mean 0 / var 1; PReLU: 0.25).
    """
    params = op.params
    if op.kind in DENSE_KINDS:
        w = params["weight"]
        bound = 1.0 / math.sqrt(max(1, w[0].numel()))
        params["weight"] = _uniform(tuple(w.shape), bound, gen)
        if "bias" in params:
            params["bias"] = _uniform(tuple(params["bias"].shape), bound, gen)
        return
    fills = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}
    if op.kind == "act":
        fills = {"weight": 0.25}
    for role, t in params.items():
        if role in fills:
            params[role] = torch.full_like(t, fills[role])


def prepare_for_task(net: Net, n_classes: int, gen: torch.Generator, scratch: bool) -> Net:
    """A copy of `net` ready to train on a task: a new head when its output size differs
    from `n_classes`, every tensor re-initialised when `scratch`.
    """
    net = net.to(torch.float32)
    head = output_op(net)
    if scratch:
        for op in net.ops:
            reset_op(op, gen)
    if head.params["weight"].shape[0] != n_classes:
        n_in = int(head.params["weight"].shape[1])
        bound = 1.0 / math.sqrt(n_in)
        head.params["weight"] = _uniform((n_classes, n_in), bound, gen)
        head.params["bias"] = _uniform((n_classes,), bound, gen)
    return net


def task_accuracy(module: nn.Module, data: TaskData) -> float:
    """Accuracy of `module` on the task's test split."""
    with torch.no_grad():
        pred = module(data.x_test).argmax(dim=1)  # (N,)
    return float((pred == data.y_test).float().mean())


def finetune(
    net: Net, data: TaskData, settings: TransferSettings, gen: torch.Generator
) -> dict[int, float]:
    """Train `net` (already prepared for the task) with Adam and cross-entropy.

    Returns:
        budget → test accuracy after that many steps.
    """
    with torch_threads(1):  # zoo models are tiny: threads only contend
        return _finetune(net, data, settings, gen)


def _finetune(
    net: Net, data: TaskData, settings: TransferSettings, gen: torch.Generator
) -> dict[int, float]:
    module = NetModule(net)
    opt = torch.optim.Adam(module.parameters(), lr=settings.lr)
    n = len(data.y_train)
    out: dict[int, float] = {}
    for step in range(1, max(settings.budgets) + 1):
        idx = torch.randint(0, n, (min(settings.batch_size, n),), generator=gen)  # (b,)
        loss = F.cross_entropy(module(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        if step in settings.budgets:
            out[step] = task_accuracy(module, data)
    return out


class TransferRunner:
    """The transfer experiment of one benchmark seed, shared by every encoder.

    Args:
        plan: transfer queries and candidate pools.
        load: model id → its `Net`.
        seed: seeds the random picks, head initialisation and mini-batches.
        settings: k, budgets and optimiser settings.
        quality: model id → its recorded quality on its own task (the benchmark: accuracy),
            to report how good the picked models were where they came from.
    """

    def __init__(
        self,
        plan: BenchPlan,
        load: Callable[[str], Net],
        seed: int,
        settings: TransferSettings | None = None,
        quality: Mapping[str, float] | None = None,
    ) -> None:
        self.plan, self.load, self.seed = plan, load, seed
        self.quality = quality or {}
        self.settings = settings or TransferSettings()
        self._cache: dict[tuple[str, str, bool], dict[int, float]] = {}
        rng = np.random.default_rng([seed, 7])
        self.random_picks = {
            (task, q): [str(i) for i in rng.permutation(pool)[: self.settings.k]]
            for task, pool in plan.transfer_pool.items()
            for q in plan.transfer_queries[task]
        }

    def accuracies(self, model_id: str, task: str, scratch: bool) -> dict[int, float]:
        """Test accuracy by budget of `model_id` fine-tuned (or trained from scratch) on `task`.

        A model that cannot be fine-tuned (no Linear head) gives NaN, with a warning.
        """
        key = (model_id, task, scratch)
        if key not in self._cache:
            data = load_task(task)
            entropy = [self.seed, zlib.crc32(f"{model_id}:{task}".encode()), int(scratch)]
            state = np.random.SeedSequence(entropy).generate_state(1)  # (1,) uint32
            gen = torch.Generator().manual_seed(int(state[0]))
            try:
                net = prepare_for_task(self.load(model_id), data.spec.n_outputs, gen, scratch)
                self._cache[key] = finetune(net, data, self.settings, gen)
            except ValueError as e:
                log.warning("transfer: %s cannot be fine-tuned (%s)", model_id, e)
                self._cache[key] = dict.fromkeys(self.settings.budgets, float("nan"))
        return self._cache[key]

    def _mean(self, picks: dict[tuple[str, str], list[str]], scratch: bool) -> dict[int, float]:
        runs = [self.accuracies(i, task, scratch) for (task, _), ids in picks.items() for i in ids]
        return {b: float(np.nanmean([r[b] for r in runs])) for b in self.settings.budgets}

    def _source_quality(self, picks: dict[tuple[str, str], list[str]]) -> float:
        values = [self.quality.get(i, math.nan) for ids in picks.values() for i in ids]
        return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan

    def retrieved(self, embeddings: dict[str, np.ndarray]) -> dict[tuple[str, str], list[str]]:
        """Top-k candidates of every (task, query) by cosine of the given embeddings."""
        picks = {}
        for task, pool in self.plan.transfer_pool.items():
            gallery = np.stack([embeddings[i] for i in pool])  # (m, d)
            for q in self.plan.transfer_queries[task]:
                sim = gallery @ embeddings[q]  # (m,) rows are unit-norm
                top = np.argsort(-sim, kind="stable")[: self.settings.k]
                picks[(task, q)] = [pool[i] for i in top]
        return picks

    def measure(self, embeddings: dict[str, np.ndarray]) -> dict[str, float]:
        """Transfer metrics of one encoder, given its embedding of every plan model.

        Returns:
            For each budget b: ``acc@b`` (retrieved models), ``random_acc@b``,
            ``scratch_acc@b``, ``gain_vs_random@b`` and ``gain_vs_scratch@b``; with
            `quality`, ``pick_quality`` and ``random_pick_quality`` (mean recorded quality
            of the retrieved and random picks on their own tasks). Empty when the plan has
            no transfer task.
        """
        if not self.random_picks:
            return {}
        retrieved = self.retrieved(embeddings)
        ours = self._mean(retrieved, scratch=False)
        rand = self._mean(self.random_picks, scratch=False)
        scratch = self._mean(self.random_picks, scratch=True)
        out: dict[str, float] = {}
        for b in self.settings.budgets:
            out[f"acc@{b}"] = ours[b]
            out[f"random_acc@{b}"] = rand[b]
            out[f"scratch_acc@{b}"] = scratch[b]
            out[f"gain_vs_random@{b}"] = ours[b] - rand[b]
            out[f"gain_vs_scratch@{b}"] = ours[b] - scratch[b]
        if self.quality:
            out["pick_quality"] = self._source_quality(retrieved)
            out["random_pick_quality"] = self._source_quality(self.random_picks)
        return out
