"""Neural graphs of many nets of one architecture at once: one wiring, stacked values.

Nets of one architecture share their graph's wiring (`GraphCache`); only node features,
edge weights and probe values differ. `stack_graphs` computes those for a whole group in
one pass — canonicalisation, the graph walk and the probe forward pass run once, under
`torch.func.vmap` over the nets' stacked weights, so no Python loop runs per net — and
`batch_stacks` lays stacks out as the `GraphBatch` that `batch_graphs` would make of their
graphs, without building each graph. The values equal `net_to_graph`'s (float error).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import vmap

from zoolens.graph.build import _walk, domain_features, net_to_graph, probe_features
from zoolens.graph.cache import GraphCache
from zoolens.graph.coarsen import COARSEN_PARAMS
from zoolens.graph.neural_graph import KERNEL, GraphBatch, NeuralGraph
from zoolens.graph.probes import token_probes
from zoolens.graph.seq import token_vocab
from zoolens.ir import Net, Op, ValueInfo
from zoolens.symmetry import canonicalize

#: Op kinds whose graph values `stack_graphs` computes under vmap (tests compare them
#: with `net_to_graph` on every family); a net with another kind is built on its own.
#: Not convolutions: under vmap each becomes a grouped convolution, slower on CPU than
#: one convolution per net (cnn-50k: 21 against 13 ms per net).
STACKABLE_KINDS = frozenset(
    {
        "linear",
        "act",
        "batchnorm",
        "layernorm",
        "dropout",
        "scale",
        "maxpool",
        "avgpool",
        "gap",
        "add",
        "flatten",
    }
)
#: Probe activations held at once by one vmap chunk (bytes, estimated).
CHUNK_BYTES = 64 << 20


@dataclass
class GraphStack:
    """The graphs of ``B`` nets of one architecture.

    Shapes:
        structure: `NeuralGraph` wiring fields (edge_index ``(2, E)``, edge_type ``(E,)``,
        role, position, layer ``(N,)``), shared by the ``B`` graphs — read, never write;
        x: ``(B, N, F_node)``; edge_attr: ``(B, E, KERNEL)``; probes: ``(B, N, P)`` or
        None; domain: ``(B, DOMAIN_FEATURES)``.
    """

    structure: dict[str, torch.Tensor]
    x: torch.Tensor
    edge_attr: torch.Tensor
    probes: torch.Tensor | None
    domain: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def graph(self, i: int) -> NeuralGraph:
        """Graph `i` (its wiring tensors are the stack's: do not write them)."""
        probes = None if self.probes is None else self.probes[i]
        return NeuralGraph(
            x=self.x[i], edge_attr=self.edge_attr[i], probes=probes, domain=self.domain[i],
            **self.structure,
        )  # fmt: skip

    @staticmethod
    def of(graph: NeuralGraph) -> GraphStack:
        """A stack of the one built `graph`."""
        names = ("edge_index", "edge_type", "role", "position", "layer")
        if graph.domain is None:
            raise ValueError("a graph without domain features cannot be stacked")
        return GraphStack(
            structure={k: getattr(graph, k) for k in names},
            x=graph.x[None],
            edge_attr=graph.edge_attr[None],
            probes=None if graph.probes is None else graph.probes[None],
            domain=graph.domain[None],
        )


def stackable(net: Net, coarsen_above: int = COARSEN_PARAMS) -> bool:
    """Whether `stack_graphs` takes `net`: every op of `STACKABLE_KINDS`, no coarse graph."""
    kinds_ok = all(op.kind in STACKABLE_KINDS for op in net.ops)
    has_params = any(op.params for op in net.ops)
    return kinds_ok and has_params and net.trainable_params() <= coarsen_above


def stack_graphs(
    nets: list[Net],
    canonical: bool = True,
    probes: torch.Tensor | None = None,
    flatten: str = "grid",
    cache: GraphCache | None = None,
    key: str | None = None,
    coarsen_above: int = COARSEN_PARAMS,
) -> GraphStack:
    """The graphs `net_to_graph` builds for `nets`, all of one architecture and
    `stackable`, computed together (other arguments as there).

    Args:
        key: the `Net.arch_key` of every net in `nets`, when the caller has grouped them
            by it and by dtype (`group_by_architecture`); None: computed and checked here.

    Raises:
        ValueError: `nets` is empty, of two architectures or dtypes, or not `stackable`.
    """
    if not nets:
        raise ValueError("stack_graphs: no nets")
    first = nets[0]
    if key is None:
        key, dtypes = first.arch_key(), _dtypes(first)
        if any(n.arch_key() != key or _dtypes(n) != dtypes for n in nets[1:]):
            raise ValueError(
                "stack_graphs: the nets are of more than one architecture or weight dtype"
            )
    if not stackable(first, coarsen_above):
        raise ValueError("stack_graphs: the architecture is not stackable (`stackable`)")
    cache = cache if cache is not None else GraphCache(max_architectures=1)
    parts = cache.parts(key)
    if parts is None:  # the first build of this architecture keeps its parts in `cache`
        net_to_graph(first, canonical, probes, flatten, cache, coarsen_above)
        parts = cache.parts(key)
        assert parts is not None
    structure = parts.structure
    n_nodes = int(structure["role"].numel())
    names = [(i, k) for i, op in enumerate(first.ops) for k in op.params]
    stacked = [torch.stack([n.ops[i].params[k] for n in nets]) for i, k in names]
    if probes is not None:
        probes = token_probes(probes, token_vocab(first.consumers(first.input)))

    def values(*params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ops = [Op(op.name, op.kind, op.inputs, op.output, {}, op.attrs) for op in first.ops]
        for (i, k), t in zip(names, params, strict=True):
            ops[i].params[k] = t
        net = Net(ops, first.input_shape, first.input, first.output, {}, first.extra_inputs)
        net = canonicalize(net, parts.infos) if canonical else net
        zero = torch.zeros_like(params[0].flatten()[0], dtype=torch.float64)  # batched
        b, units = _walk(net, False, flatten, parts.infos, False, zero, n_nodes)
        x, attr = b.x.float(), torch.cat(b.attr).float()
        if probes is None:
            return x, attr
        return x, attr, probe_features(net, units, probes, n_nodes, zero)

    n_edges = int(structure["edge_type"].numel())
    chunk = _chunk_size(parts.infos, 0 if probes is None else probes.shape[0], n_edges)
    out = vmap(values, chunk_size=chunk)(*stacked)
    n_out = int((structure["role"] == 2).sum())
    domain = domain_features(first.input_shape, n_out).expand(len(nets), -1)
    return GraphStack(structure, out[0], out[1], out[2] if probes is not None else None, domain)


def _chunk_size(infos: dict[str, ValueInfo], n_probes: int, n_edges: int) -> int:
    """Nets per vmap chunk so that one chunk's probe activations and edge weights (a few
    float64 copies of each) stay near `CHUNK_BYTES`."""
    largest = max((v.units * v.spatial_size for v in infos.values()), default=1)
    per_net = 8 * 3 * (largest * max(n_probes, 1) + n_edges * KERNEL)
    return max(1, CHUNK_BYTES // per_net)


def batch_stacks(stacks: list[GraphStack]) -> GraphBatch:
    """The `GraphBatch` of every graph of `stacks`, in order: equal to `batch_graphs` of
    ``[s.graph(i) for s in stacks for i in range(len(s))]``."""
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in _FIELDS}
    node0 = graph0 = layer0 = 0
    for s in stacks:
        b, st = len(s), s.structure
        n, e, n_layers = s.x.shape[1], s.edge_attr.shape[1], _layers(st["layer"])
        node_off = node0 + n * torch.arange(b)  # (B,)
        parts["x"].append(s.x.reshape(b * n, -1))
        parts["edge_index"].append(
            (st["edge_index"][:, None, :] + node_off[None, :, None]).reshape(2, b * e)
        )
        parts["edge_attr"].append(s.edge_attr.reshape(b * e, -1))
        for k in ("edge_type", "role", "position", "layer"):
            parts[k].append(st[k].repeat(b))
        parts["batch"].append(torch.arange(graph0, graph0 + b).repeat_interleave(n))
        layer_off = layer0 + n_layers * torch.arange(b)
        parts["layer_id"].append((st["layer"][None, :] + layer_off[:, None]).reshape(-1))
        parts["layers_per_graph"].append(torch.full((b,), n_layers, dtype=torch.long))
        if s.probes is not None:
            parts["probes"].append(s.probes.reshape(b * n, -1))
        parts["domain"].append(s.domain)
        node0, graph0, layer0 = node0 + b * n, graph0 + b, layer0 + b * n_layers
    with_probes = bool(stacks) and len(parts["probes"]) == len(stacks)
    cat = {k: torch.cat(v, dim=1 if k == "edge_index" else 0) for k, v in parts.items() if v}
    return GraphBatch(
        **{k: cat[k] for k in _FIELDS if k not in ("probes", "domain")},
        probes=cat["probes"] if with_probes else None,
        num_graphs=graph0,
        domain=cat.get("domain"),
    )


_FIELDS = (
    "x",
    "edge_index",
    "edge_attr",
    "edge_type",
    "role",
    "position",
    "layer",
    "batch",
    "layer_id",
    "layers_per_graph",
    "probes",
    "domain",
)


def _layers(layer: torch.Tensor) -> int:
    return int(layer.max()) + 1 if layer.numel() else 0


def group_by_architecture(nets: list[Net]) -> list[tuple[str, list[int]]]:
    """The `nets` grouped by architecture and weight dtype: each group's `Net.arch_key`
    and its nets' indices, groups in order of first appearance."""
    groups: dict[tuple[str, tuple[torch.dtype, ...]], list[int]] = {}
    for i, net in enumerate(nets):
        groups.setdefault((net.arch_key(), _dtypes(net)), []).append(i)
    return [(key, ids) for (key, _), ids in groups.items()]


def _dtypes(net: Net) -> tuple[torch.dtype, ...]:
    return tuple(t.dtype for op in net.ops for t in op.params.values())


__all__ = [
    "CHUNK_BYTES",
    "STACKABLE_KINDS",
    "GraphStack",
    "batch_stacks",
    "group_by_architecture",
    "stack_graphs",
    "stackable",
]
