"""Procedurally drawn tasks: an unbounded supply of tasks, each new, from a seed.

A task is drawn from one of five input kinds — tabular features, small images, multichannel
signals, token sequences, 2-D coordinates (INRs) — with a random interface (input size,
class or target count) and a random data-generating process: teacher networks, Gaussian
mixtures, quantiles of random functions, sign partitions, class prototypes under shifts,
frequency signatures, token-count rules, and for INRs a random *shape type* (a star-shaped
curve with random harmonics, or a windowed grating of a random frequency) drawn at random
position, size, rotation and contrast. Nothing here reads a data set: the tasks carry no
label set that any evaluation zoo shares.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from zoolens.zoo.tasks import TaskData, TaskSpec, image_coordinates

#: Input kinds and how often a task is of each.
KIND_WEIGHTS: dict[str, float] = {
    "tabular": 0.5,
    "image": 0.1,
    "sequence": 0.1,
    "tokens": 0.05,
    "inr": 0.25,
}
N_TRAIN, N_TEST = 1024, 512
PHASES = (0.0, 1.0, 2.0)  # of a star shape's three harmonics


@dataclass(frozen=True)
class ShapeTask:
    """An INR task: a shape type; each model fits one drawn instance of it.

    Args:
        spec: the task (input (2,), one output).
        render: draws the image ``(size, size)`` in [0, 1] of one instance from a generator.
        size: image side in pixels.
    """

    spec: TaskSpec
    render: Callable[[np.random.Generator], np.ndarray]
    size: int


def draw_task(rng: np.random.Generator, name: str) -> TaskData | ShapeTask:
    """A new task called `name`, of an input kind drawn by `KIND_WEIGHTS`."""
    kinds = list(KIND_WEIGHTS)
    p = np.array(list(KIND_WEIGHTS.values()))
    kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
    if kind == "inr":
        return _shape_task(rng, name)
    x, y, spec = {"tabular": _tabular, "image": _image, "sequence": _sequence, "tokens": _tokens}[
        kind
    ](rng, name)
    xt = torch.as_tensor(x, dtype=torch.int64 if spec.vocab else torch.float32)
    dtype = torch.int64 if spec.kind == "classification" else torch.float32
    yt = torch.as_tensor(y, dtype=dtype)
    return TaskData(spec, xt[:N_TRAIN], yt[:N_TRAIN], xt[N_TRAIN:], yt[N_TRAIN:])


# -- tabular -------------------------------------------------------------------------------
def _features(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    style = rng.integers(3)
    if style == 0:
        return rng.standard_normal((n, d))
    if style == 1:
        return rng.uniform(-1.7, 1.7, (n, d))
    a = rng.standard_normal((d, d)) / math.sqrt(d)
    return np.asarray(rng.standard_normal((n, d)) @ (a + np.eye(d)))


def _teacher(rng: np.random.Generator, d: int, k: int) -> Callable[[np.ndarray], np.ndarray]:
    widths = [d, *rng.integers(8, 48, rng.integers(1, 3)).tolist(), k]
    mats = [
        rng.standard_normal((i, o)) * rng.uniform(1, 3) / math.sqrt(i)
        for i, o in itertools.pairwise(widths)
    ]
    acts: list[Callable[[np.ndarray], np.ndarray]] = [
        np.tanh,
        np.sin,
        lambda v: np.maximum(v, 0),
        lambda v: v / (1 + np.exp(-1.7 * v)),
    ]
    act = acts[int(rng.integers(4))]

    def f(x: np.ndarray) -> np.ndarray:
        for m in mats[:-1]:
            x = act(x @ m)
        return np.asarray(x @ mats[-1])

    return f


def _scalar_function(rng: np.random.Generator, d: int) -> Callable[[np.ndarray], np.ndarray]:
    w, v = rng.standard_normal(d), rng.standard_normal(d)
    q = rng.standard_normal((d, d)) / math.sqrt(d)
    c = rng.standard_normal(d) * 0.5
    rng_freq = rng.uniform(1, 4)
    table: list[Callable[[np.ndarray], np.ndarray]] = [
        lambda x: np.einsum("ni,ij,nj->n", x, q, x),
        lambda x: (x @ w) * (x @ v),
        lambda x: np.sin(rng_freq * (x @ w) / math.sqrt(d)) + 0.3 * (x @ v) / math.sqrt(d),
        lambda x: np.linalg.norm(x - c, axis=1),
        lambda x: np.max(x[:, : max(2, d // 2)], axis=1) - np.min(x[:, : max(2, d // 2)], axis=1),
    ]
    return table[int(rng.integers(len(table)))]


def _tabular(rng: np.random.Generator, name: str) -> tuple[np.ndarray, np.ndarray, TaskSpec]:
    d = int(rng.integers(2, 25))
    n = N_TRAIN + N_TEST
    regression = rng.random() < 0.2
    k = int(rng.integers(1, 4)) if regression else int(rng.integers(2, 9))
    gen = int(rng.integers(4)) if not regression else int(rng.choice([0, 2]))
    if gen == 1:  # Gaussian mixture: each class one to three components
        comps = [
            (c, rng.standard_normal(d) * rng.uniform(0.8, 2.5))
            for c in range(k)
            for _ in range(rng.integers(1, 4))
        ]
        pick = rng.integers(len(comps), size=n)
        scale = [rng.standard_normal((d, d)) / math.sqrt(d) + np.eye(d) * 0.5 for _ in comps]
        x = np.stack([comps[i][1] + rng.standard_normal(d) @ scale[i] for i in pick])
        y = np.array([comps[i][0] for i in pick])
    else:
        x = _features(rng, n, d)
        if gen == 0:
            out = _teacher(rng, d, k)(x)
            y = out if regression else out.argmax(1)
        elif gen == 2:
            f = np.stack([_scalar_function(rng, d)(x) for _ in range(k)], 1) if regression else None
            if f is not None:
                y = f
            else:
                s = _scalar_function(rng, d)(x)
                y = np.searchsorted(np.quantile(s, np.linspace(0, 1, k + 1)[1:-1]), s)
        else:  # sign partition of a few random projections, cells mapped onto classes
            m = max(1, math.ceil(math.log2(k)) + int(rng.integers(0, 2)))
            bits = (x @ rng.standard_normal((d, m)) + rng.standard_normal(m) * 0.3 > 0).astype(int)
            cell = bits @ (2 ** np.arange(m))
            y = (
                np.concatenate([np.arange(k), rng.integers(k, size=2**m)])[rng.permutation(2**m)][
                    cell
                ]
                % k
            )
    x = (x - x[:N_TRAIN].mean(0)) / (x[:N_TRAIN].std(0) + 1e-8)
    if regression:
        y = (y - y[:N_TRAIN].mean(0)) / (y[:N_TRAIN].std(0) + 1e-8)
        spec = TaskSpec(name, "procedural:tabular", "regression", (d,), k)
    else:
        spec = TaskSpec(name, "procedural:tabular", "classification", (d,), k)
    return x, y, spec


# -- images, signals, tokens ---------------------------------------------------------------
def _smooth(rng: np.random.Generator, h: int, w: int, grid: int) -> np.ndarray:
    coarse = torch.as_tensor(rng.standard_normal((1, 1, grid, grid)))
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[
        0, 0
    ].numpy()


def _image(rng: np.random.Generator, name: str) -> tuple[np.ndarray, np.ndarray, TaskSpec]:
    h = int(rng.choice([8, 10, 12]))
    k = int(rng.integers(2, 7))
    protos = [_smooth(rng, h + 2, h + 2, int(rng.integers(2, 5))) for _ in range(k)]
    n = N_TRAIN + N_TEST
    y = rng.integers(k, size=n)
    dy, dx = rng.integers(0, 3, n), rng.integers(0, 3, n)
    noise = rng.uniform(0.2, 0.8)
    x = np.stack([protos[c][a : a + h, b : b + h] for c, a, b in zip(y, dy, dx, strict=True)])
    x = x * rng.uniform(0.6, 1.4, (n, 1, 1)) + noise * rng.standard_normal((n, h, h))
    return x[:, None], y, TaskSpec(name, "procedural:image", "classification", (1, h, h), k)


def _sequence(rng: np.random.Generator, name: str) -> tuple[np.ndarray, np.ndarray, TaskSpec]:
    c, t = int(rng.integers(1, 3)), int(rng.choice([16, 24, 32]))
    k = int(rng.integers(2, 6))
    n = N_TRAIN + N_TEST
    y = rng.integers(k, size=n)
    freqs = rng.uniform(0.5, t / 4, (k, c, 2))
    amps = rng.uniform(0.2, 1.0, (k, c, 2))
    time = np.arange(t) / t * 2 * np.pi
    phase = rng.uniform(0, 2 * np.pi, (n, c, 2, 1))
    waves = amps[y][..., None] * np.sin(freqs[y][..., None] * time + phase)  # (n, c, 2, t)
    x = waves.sum(2) + rng.uniform(0.2, 0.7) * rng.standard_normal((n, c, t))
    return x, y, TaskSpec(name, "procedural:sequence", "classification", (c, t), k)


def _tokens(rng: np.random.Generator, name: str) -> tuple[np.ndarray, np.ndarray, TaskSpec]:
    v, t = int(rng.choice([8, 16, 24])), int(rng.choice([8, 12, 16]))
    k = int(rng.integers(2, 5))
    n = N_TRAIN + N_TEST
    x = rng.integers(v, size=(n, t))
    if rng.random() < 0.5:  # which of k token sets occurs most often
        sets = rng.permutation(v)[: k * max(1, v // (2 * k))].reshape(k, -1)
        counts = np.stack([np.isin(x, s).sum(1) for s in sets], 1) + rng.random((n, k)) * 0.5
        y = counts.argmax(1)
    else:  # the token at a random position, mapped onto the classes
        pos = int(rng.integers(t))
        y = rng.integers(k, size=v)[x[:, pos]]
    return x, y, TaskSpec(name, "procedural:tokens", "classification", (t,), k, vocab=v)


# -- INR shape types -----------------------------------------------------------------------
def _shape_task(rng: np.random.Generator, name: str) -> ShapeTask:
    size = int(rng.choice([16, 20, 28]))
    coords = image_coordinates(size, size).numpy()
    star = rng.random() < 0.6
    harmonics = rng.integers(2, 8, 3)
    amps = rng.uniform(0.05, 0.35, 3) * (rng.random(3) < 0.8)
    freq, soft = rng.uniform(2.5, 7.0), rng.uniform(0.02, 0.12)

    def render(g: np.random.Generator) -> np.ndarray:
        ang, s = g.uniform(0, 2 * np.pi), g.uniform(0.35, 0.75)
        shift = g.uniform(-0.3, 0.3, 2)
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        p = (coords - shift) @ rot / s
        r, theta = np.linalg.norm(p, axis=1), np.arctan2(p[:, 1], p[:, 0])
        if star:
            edge = 1 + sum(
                a * np.cos(m * theta + ph) for a, m, ph in zip(amps, harmonics, PHASES, strict=True)
            )
            img = 1 / (1 + np.exp((r - edge) / soft))
        else:
            img = np.exp(-(r**2) * 1.5) * (0.5 + 0.5 * np.cos(freq * p[:, 0]))
        lo = g.uniform(0, 0.3)
        return np.asarray((lo + (g.uniform(0.6, 1.0) - lo) * img).reshape(size, size))

    return ShapeTask(TaskSpec(name, "procedural:shape", "inr", (2,), 1), render, size)
