"""Neural graphs: networks as graphs of neurons (nodes) and weights (edges)."""

from zoolens.graph.build import NODE_FEATURES, fit_to_kernel, net_to_graph
from zoolens.graph.cache import GraphCache
from zoolens.graph.layer_graphs import LayerGraph, tensors_to_layer_graphs
from zoolens.graph.neural_graph import (
    DOMAIN_FEATURES,
    EDGE_TYPES,
    KERNEL,
    ROLE_HIDDEN,
    ROLE_INPUT,
    ROLE_OUTPUT,
    GraphBatch,
    NeuralGraph,
    batch_graphs,
)
from zoolens.graph.probes import PROBE_KINDS, default_probes

__all__ = [
    "DOMAIN_FEATURES",
    "EDGE_TYPES",
    "KERNEL",
    "NODE_FEATURES",
    "PROBE_KINDS",
    "ROLE_HIDDEN",
    "ROLE_INPUT",
    "ROLE_OUTPUT",
    "GraphBatch",
    "GraphCache",
    "LayerGraph",
    "NeuralGraph",
    "batch_graphs",
    "default_probes",
    "fit_to_kernel",
    "net_to_graph",
    "tensors_to_layer_graphs",
]
