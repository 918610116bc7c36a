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
from zoolens.nn.heads import Head, HeadConfig
from zoolens.nn.layerwise import LayerwiseEncoder
from zoolens.nn.load import load_encoder
from zoolens.nn.neural_graph_encoder import NeuralGraphEncoder

__all__ = [
    "Encoder",
    "FlatPCA",
    "FlatTransformer",
    "Head",
    "HeadConfig",
    "LayerwiseEncoder",
    "Metadata",
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
