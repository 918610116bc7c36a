"""Encoders behind one protocol: ``encoder.encode(items) -> (n, d)`` L2-normalised float32."""

from zoolens.nn.base import Encoder, as_model, encoder_class, register_encoder
from zoolens.nn.baselines import (
    FlatPCA,
    FlatTransformer,
    Metadata,
    NotFittedError,
    Probe,
    RawWeights,
    WeightStats,
)
from zoolens.nn.config import ConfigError, EncoderConfig
from zoolens.nn.heads import Head, HeadConfig
from zoolens.nn.layerwise import LayerwiseConfig, LayerwiseEncoder
from zoolens.nn.load import load_encoder
from zoolens.nn.neural_graph_encoder import NeuralGraphConfig, NeuralGraphEncoder

__all__ = [
    "ConfigError",
    "Encoder",
    "EncoderConfig",
    "FlatPCA",
    "FlatTransformer",
    "Head",
    "HeadConfig",
    "LayerwiseConfig",
    "LayerwiseEncoder",
    "Metadata",
    "NeuralGraphConfig",
    "NeuralGraphEncoder",
    "NotFittedError",
    "Probe",
    "RawWeights",
    "WeightStats",
    "as_model",
    "encoder_class",
    "load_encoder",
    "register_encoder",
]
