"""Zoo presets: what a generated zoo holds, as data.

A preset is a frozen `ZooPreset`. To add one, build it from an existing preset and register
it (or pass it straight to `generate_zoo`)::

    from dataclasses import replace
    from zoolens.zoo import generate_zoo, register_preset
    from zoolens.zoo.presets import TINY

    VISION = replace(TINY, name="vision", tasks=("digits", "digits-perm", "mnist14"),
                     families=("cnn2d", "cnn2d-bn"), n_models=200, n_inrs=0)
    register_preset(VISION)          # now `zoolens zoo generate --preset vision` works
    generate_zoo(VISION, "zoos/vision", seed=0)

Every field is recorded in the zoo's ``zoo.json``; resuming a zoo with a different preset
or seed is refused. Base model ``i`` draws its task, family and hyper-parameters from
``(seed, i)`` alone, so two presets that differ only in ``n_models`` share their first
base models bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from zoolens.errors import ZoolensError


@dataclass(frozen=True)
class ZooPreset:
    """The recipe of a generated zoo.

    Args:
        name: preset name (``zoolens zoo generate --preset NAME``).
        tasks: classification / regression tasks (see ``zoolens.zoo.tasks.TASKS``).
        families: architecture families (see ``zoolens.zoo.archs.FAMILIES``); a family
            only trains on tasks whose input rank it accepts.
        n_models: models trained from scratch.
        n_finetunes: models fine-tuned from one of them (new head on another task of the
            same input shape, or continued training on the parent's task).
        lr: log-uniform learning-rate range (Adam, AdamW).
        sgd_lr_factor: SGD (momentum 0.9) learning rates are ``lr`` times this.
        optimizers, weight_decays, epochs, batch_sizes, dropouts, label_noises,
            train_fractions, activations, widths: choices drawn uniformly per model.
        init_scale: log-uniform range of the factor on the default initialisation.
        depths: inclusive range of depths (CNNs use at most 3 conv layers).
        max_steps: cap on optimiser steps per model (bounds the generation time).
        inr_tasks: image sets the INRs fit (``inr-digits``, ``inr-mnist``).
        n_inrs: number of INRs, one per image.
        inr_batch: INRs of one architecture fitted together as one batched program.
        inr_activations: ``relu`` and/or ``sine`` (SIREN, ``sin(30 x)`` layers).
        inr_depths, inr_widths, inr_steps: choices per INR batch.
        inr_lr: log-uniform Adam learning-rate range for INRs.
        rotate: ``task`` (tasks in turn, families rotating within each) or ``family``
            (families in turn: every architecture class gets its share of models).
    """

    name: str
    tasks: tuple[str, ...]
    families: tuple[str, ...]
    n_models: int
    n_finetunes: int = 0
    lr: tuple[float, float] = (3e-4, 1e-2)
    sgd_lr_factor: float = 10.0
    optimizers: tuple[str, ...] = ("sgd", "adam", "adamw")
    weight_decays: tuple[float, ...] = (0.0, 0.0, 1e-4, 1e-3, 1e-2)
    epochs: tuple[int, ...] = (2, 10, 30, 100, 300, 1000)
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256)
    dropouts: tuple[float, ...] = (0.0, 0.0, 0.1, 0.3)
    init_scale: tuple[float, float] = (0.5, 2.0)
    label_noises: tuple[float, ...] = (0.0, 0.0, 0.0, 0.1, 0.3)
    train_fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 1.0)
    activations: tuple[str, ...] = ("relu", "leaky_relu", "gelu", "tanh", "sigmoid", "sine")
    depths: tuple[int, int] = (1, 4)
    widths: tuple[int, ...] = (16, 32, 64, 128)
    max_steps: int = 600
    inr_tasks: tuple[str, ...] = ("inr-digits", "inr-mnist")
    n_inrs: int = 0
    inr_batch: int = 64
    inr_activations: tuple[str, ...] = ("relu", "sine")
    inr_depths: tuple[int, ...] = (1, 2, 3)
    inr_widths: tuple[int, ...] = (16, 32)
    inr_steps: tuple[int, ...] = (200, 500, 1000)
    inr_lr: tuple[float, float] = (3e-4, 3e-3)
    rotate: str = "task"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples become lists); ``rotate`` only when not ``task``, so
        zoos written before it existed still resume."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if d["rotate"] == "task":
            del d["rotate"]
        return d

    @property
    def total(self) -> int:
        """Number of models the preset generates."""
        return self.n_models + self.n_finetunes + self.n_inrs


ALL_TASKS = (
    "digits",
    "digits-perm",
    "digits-parity",
    "iris",
    "wine",
    "breast-cancer",
    "mnist1d",
    "mnist14",
    "synth-a",
    "synth-b",
    "synth-c",
    "blobs",
    "moons",
    "circles",
    "diabetes",
    "friedman1",
    "synth-reg",
)
ALL_FAMILIES = ("mlp", "resmlp", "cnn1d", "cnn2d", "cnn2d-bn")

#: ≥ 80 models over every task and family in about a minute on one core (tests, quickstart).
TINY = ZooPreset(
    name="tiny",
    tasks=ALL_TASKS,
    families=ALL_FAMILIES,
    n_models=80,
    n_finetunes=12,
    widths=(16, 32, 64),
    max_steps=200,
    n_inrs=16,
    inr_batch=8,
    inr_depths=(1, 2),
    inr_steps=(200, 500),
)

#: ≥ 2,000 classifiers / regressors and ≥ 2,000 INRs within an hour on two cores.
BENCH = ZooPreset(
    name="bench",
    tasks=ALL_TASKS,
    families=ALL_FAMILIES,
    n_models=1800,
    n_finetunes=300,
    max_steps=800,
    n_inrs=2048,
    inr_batch=64,
    inr_steps=(300, 1000, 2000),
)

#: ≥ 20 architecture classes (MLPs by activation, residual MLPs, CNNs with BatchNorm,
#: residuals, depthwise convs and ConvNeXt blocks, ViTs, RNNs, transformer encoders and
#: decoders, Llama-style decoders, SIREN INRs), 8 models each, on offline digits / mnist1d /
#: make_classification data: architecture identification (benchmarks/arch_identification.py).
ARCHS = ZooPreset(
    name="archs",
    tasks=("digits", "mnist1d", "digits-rows", "digits-tokens", "synth-a"),
    families=(
        "mlp-relu",
        "mlp-tanh",
        "mlp-gelu",
        "mlp-sine",
        "resmlp",
        "cnn1d",
        "dwsep1d",
        "cnn2d",
        "cnn2d-bn",
        "resnet",
        "mobilenet",
        "convnext",
        "vit",
        "lstm",
        "gru",
        "bilstm",
        "bigru",
        "signal-transformer",
        "tf-encoder",
        "tf-decoder",
        "llama",
    ),
    n_models=21 * 8,
    optimizers=("adam", "adamw"),
    epochs=(2, 5, 10),
    batch_sizes=(64, 128),
    dropouts=(0.0,),
    label_noises=(0.0,),
    train_fractions=(0.5, 1.0),
    activations=("relu", "tanh", "gelu"),
    depths=(1, 3),
    widths=(16, 32),
    max_steps=100,
    inr_tasks=("inr-digits",),
    n_inrs=8,
    inr_batch=4,
    inr_activations=("sine",),
    inr_depths=(1, 2),
    inr_widths=(16, 32),
    inr_steps=(200,),
    rotate="family",
)

PRESETS: dict[str, ZooPreset] = {p.name: p for p in (TINY, BENCH, ARCHS)}


def register_preset(preset: ZooPreset) -> None:
    """Make `preset` available by name to `generate_zoo` and the CLI."""
    PRESETS[preset.name] = preset


def get_preset(preset: str | ZooPreset) -> ZooPreset:
    """The preset called `preset` (or `preset` itself)."""
    if isinstance(preset, ZooPreset):
        return preset
    if preset not in PRESETS:
        raise ZoolensError(
            f"unknown zoo preset {preset!r}; known: {', '.join(PRESETS)} "
            "(or register one with zoolens.zoo.register_preset)"
        )
    return PRESETS[preset]


def preset_from_dict(d: dict[str, Any]) -> ZooPreset:
    """Inverse of `ZooPreset.to_dict`."""
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return ZooPreset(**fields)
