"""`NeuralGraphEncoder`: the product — canonical neural graph → equivariant GNN → vector."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from zoolens.errors import LoadError
from zoolens.graph import NeuralGraph, batch_graphs, default_probes, net_to_graph
from zoolens.ir import Net, TensorSet
from zoolens.nn.base import register_encoder
from zoolens.nn.gnn import NeuralGraphNet
from zoolens.nn.torch_encoder import TorchEncoder

DEFAULTS: dict[str, Any] = {
    "dim": 256,
    "hidden": 32,
    "edge_hidden": 16,
    "layers": 3,
    "heads": 4,
    "readout_layers": 2,
    "readout": "transformer",
    "n_probes": 16,
    "seed": 0,
}


@register_encoder("neural-graph")
class NeuralGraphEncoder(TorchEncoder):
    """Exactly invariant to hidden-unit permutations (equivariant layers + invariant
    readout) and to scale/sign symmetries (the graph is built from `canonicalize(net)`).

    Args:
        config: overrides of `DEFAULTS`.
    """

    DEFAULTS = DEFAULTS

    def build_module(self) -> nn.Module:
        return NeuralGraphNet(self.config)

    def graph(self, net: Net) -> NeuralGraph:
        n = int(self.config["n_probes"])
        probes = default_probes(net.input_shape, n) if n else None
        return net_to_graph(net, canonical=True, probes=probes)

    def graphs(self, models: list[Net | TensorSet]) -> list[NeuralGraph]:
        out = []
        for m in models:
            if not isinstance(m, Net):
                src = m.meta.get("source", "a TensorSet")
                raise LoadError(
                    f"{src}: the neural-graph encoder needs the network's wiring; "
                    "embed bare weights with the 'layerwise' encoder"
                )
            out.append(self.graph(m))
        return out

    def forward(self, graphs: list[NeuralGraph]) -> torch.Tensor:
        """Differentiable embeddings ``(len(graphs), dim)`` (unnormalised), for training."""
        z: torch.Tensor = self.module(batch_graphs(graphs))
        return z

    def train_forward(self, models: list[Net | TensorSet]) -> torch.Tensor:
        """Differentiable embeddings of loaded models (the training entry point)."""
        return self.forward(self.graphs(models))

    def embed_batch(self, models: list[Net | TensorSet]) -> np.ndarray:
        self.module.eval()
        with torch.no_grad():
            return self.forward(self.graphs(models)).double().numpy()
