"""The baselines every claim is measured against, behind the one `Encoder` protocol.

Flattened weights (`RawWeights`, `FlatPCA`, `FlatTransformer`), weight statistics
(`WeightStats`), functional probes (`Probe`) and metadata text (`Metadata`). Learned
ones follow scikit-learn: ``fit(items) -> self``, learned state in attributes ending
in ``_``, saved as tensors.
"""

from zoolens.nn.baselines._common import NotFittedError, flatten_weights
from zoolens.nn.baselines.flat import FlatPCA, RawWeights
from zoolens.nn.baselines.flat_transformer import FlatTransformer
from zoolens.nn.baselines.metadata import Metadata, metadata_text
from zoolens.nn.baselines.probe import Probe
from zoolens.nn.baselines.stats import WeightStats, tensor_stats

__all__ = [
    "FlatPCA",
    "FlatTransformer",
    "Metadata",
    "NotFittedError",
    "Probe",
    "RawWeights",
    "WeightStats",
    "flatten_weights",
    "metadata_text",
    "tensor_stats",
]
