"""`NeuralGraph`: one node per neuron or channel, one edge per connection."""

from __future__ import annotations

from dataclasses import dataclass

import torch

ROLE_INPUT, ROLE_HIDDEN, ROLE_OUTPUT = 0, 1, 2
EDGE_TYPES = ("dense", "conv1d", "conv2d", "flatten", "residual", "layernorm", "batchnorm")
#: Edge kinds that share an existing type's slot (a new type would change the shape of the
#: shipped encoder's type embedding): a recurrent edge is a filter along time, like conv1d.
EDGE_ALIASES = {"recurrent": "conv1d"}
KERNEL = 9  # edge weight slots: a 3x3 kernel; longer vectors are resampled to this
DOMAIN_FEATURES = 3  # per graph: log input size, input rank, log output count


@dataclass
class NeuralGraph:
    """A network as a graph. Hidden nodes of one layer share everything but their weights.

    Shapes:
        x: ``(N, F_node)`` node features; edge_index: ``(2, E)`` (source, target);
        edge_attr: ``(E, KERNEL)`` weights; edge_type: ``(E,)``; role, position, layer:
        ``(N,)`` ints (position is the index of an input/output unit, 0 for hidden);
        probes: ``(N, P)`` or None; domain: ``(DOMAIN_FEATURES,)`` — the shape of the
        function the net computes (log of the input size, the input's rank, log of the
        output count), which no weight symmetry changes.
    """

    x: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    edge_type: torch.Tensor
    role: torch.Tensor
    position: torch.Tensor
    layer: torch.Tensor
    probes: torch.Tensor | None = None
    domain: torch.Tensor | None = None

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def num_layers(self) -> int:
        return int(self.layer.max()) + 1 if self.num_nodes else 0


@dataclass
class GraphBatch:
    """Many graphs as one disjoint union; ``batch[n]`` is node n's graph, and
    ``layer_id[n]`` numbers the (graph, layer) pairs consecutively.
    """

    x: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    edge_type: torch.Tensor
    role: torch.Tensor
    position: torch.Tensor
    layer: torch.Tensor
    batch: torch.Tensor
    layer_id: torch.Tensor
    layers_per_graph: torch.Tensor
    probes: torch.Tensor | None
    num_graphs: int
    domain: torch.Tensor | None = None  # (num_graphs, DOMAIN_FEATURES)


def batch_graphs(graphs: list[NeuralGraph]) -> GraphBatch:
    """Concatenate `graphs` into one `GraphBatch` (edge indices offset per graph)."""
    offsets, layer_offsets, n, nl = [], [], 0, 0
    for g in graphs:
        offsets.append(n)
        layer_offsets.append(nl)
        n += g.num_nodes
        nl += g.num_layers
    cat = torch.cat
    has_probes = all(g.probes is not None for g in graphs) and graphs
    domains = [g.domain for g in graphs if g.domain is not None]
    return GraphBatch(
        x=cat([g.x for g in graphs]),
        edge_index=cat([g.edge_index + o for g, o in zip(graphs, offsets, strict=True)], dim=1),
        edge_attr=cat([g.edge_attr for g in graphs]),
        edge_type=cat([g.edge_type for g in graphs]),
        role=cat([g.role for g in graphs]),
        position=cat([g.position for g in graphs]),
        layer=cat([g.layer for g in graphs]),
        batch=cat([torch.full((g.num_nodes,), i, dtype=torch.long) for i, g in enumerate(graphs)]),
        layer_id=cat([g.layer + lo for g, lo in zip(graphs, layer_offsets, strict=True)]),
        layers_per_graph=torch.tensor([g.num_layers for g in graphs], dtype=torch.long),
        probes=cat([g.probes for g in graphs if g.probes is not None]) if has_probes else None,
        num_graphs=len(graphs),
        domain=torch.stack(domains) if graphs and len(domains) == len(graphs) else None,
    )
