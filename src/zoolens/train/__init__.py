"""Contrastive training of encoders on model zoos."""

from zoolens.train.config import TrainConfig
from zoolens.train.losses import accuracy_loss, supcon_loss
from zoolens.train.trainer import Trainer, TrainResult, train_encoder

__all__ = ["TrainConfig", "TrainResult", "Trainer", "accuracy_loss", "supcon_loss", "train_encoder"]
