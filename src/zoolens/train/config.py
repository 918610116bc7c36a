"""`TrainConfig`: every hyper-parameter of contrastive encoder training, in one frozen place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class TrainConfig:
    """Args:
    encoder: encoder class name ("neural-graph", "layerwise", "flat-transformer").
    encoder_config: overrides of that encoder's defaults.
    positives: "augment" (two inexact views of one model, NT-Xent) or "task" (also
        same-task siblings, supervised contrastive).
    lam: weight of the contrastive loss; 1 - lam weighs the accuracy MSE.
    tau: softmax temperature.
    drop_connect, noise: inexact augmentation strengths for the views.
    per_group: models drawn per task in each batch (so a batch holds positives).
    patience: epochs without validation-mAP gain before early stopping.
    functional: weight of the functional-similarity term: for two models of one
        interface (input shape and output count) in a batch, the squared gap between
        their embeddings' cosine and their functions' (`functional_similarity`). 0 = off.
    tensorboard: also log each epoch's metrics.csv row as TensorBoard scalars under
        ``<out>/tb`` (needs ``zoolens[train]``).
    init: an encoder (name or saved directory) to start from — fine-tuning: its class,
        architecture and weights are kept (`encoder` and `encoder_config` are then
        ignored), its fingerprint weight set to 0 (the fingerprint is not trained; its
        weight is chosen afterwards on validation). "" = a fresh encoder.
    """

    encoder: str = "neural-graph"
    encoder_config: dict[str, Any] = field(default_factory=dict)
    positives: Literal["augment", "task"] = "task"
    lam: float = 0.8
    tau: float = 0.1
    epochs: int = 20
    batch_size: int = 64
    per_group: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    drop_connect: float = 0.05
    noise: float = 0.05
    seed: int = 0
    patience: int = 5
    max_minutes: float = 30.0
    exclude_tasks: tuple[str, ...] = ()
    exclude_families: tuple[str, ...] = ()
    functional: float = 0.0
    tensorboard: bool = False
    init: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
