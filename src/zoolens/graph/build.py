"""`net_to_graph`: turn a (canonicalised) `Net` into a `NeuralGraph`."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from zoolens.errors import UnsupportedOpError
from zoolens.graph import _rnn_conv
from zoolens.graph.cache import ArchParts, GraphCache
from zoolens.graph.coarsen import COARSEN_PARAMS, coarse_edges, worth_coarsening
from zoolens.graph.neural_graph import (
    EDGE_ALIASES,
    EDGE_TYPES,
    KERNEL,
    ROLE_HIDDEN,
    ROLE_INPUT,
    ROLE_OUTPUT,
    NeuralGraph,
)
from zoolens.graph.probes import token_probes
from zoolens.graph.seq import SEQ_GRAPH, binned, token_vocab, vocab_nodes
from zoolens.ir import ACTIVATIONS, Net, Op, ValueInfo
from zoolens.symmetry import canonicalize

# Node feature layout.
F_BIAS, F_BN_A, F_BN_C, F_HAS_BN, F_PRESCALE = 0, 1, 2, 3, 4
F_ACT = 5
F_POOL = F_ACT + len(ACTIVATIONS)  # maxpool, avgpool, gap flags
NODE_FEATURES = F_POOL + 3
_POOL_SLOT = {"maxpool": 0, "avgpool": 1, "gap": 2}


def fit_to_kernel(v: torch.Tensor) -> torch.Tensor:
    """Rows of `v` ``(E, m)`` zero-padded (m ≤ KERNEL) or average-resampled to KERNEL."""
    m = v.shape[1]
    if m <= KERNEL:
        return F.pad(v, (0, KERNEL - m))
    return F.adaptive_avg_pool1d(v[:, None, :], KERNEL)[:, 0, :]


@dataclass
class _Units:
    nodes: torch.Tensor  # node id of each unit (channels of a flattened value: its parent's)
    block: int = 1  # >1 when the value is a flattened conv output
    fresh: bool = False  # written by a dense op, no activation applied yet
    grid: tuple[int, ...] = ()  # spatial shape of the flattened value (when block > 1)


class _Builder:
    """Collects nodes and edges; with ``structure=False`` only their values (node features
    and edge weights), for a net whose architecture's structure is cached."""

    def __init__(
        self,
        structure: bool = True,
        flatten: str = "grid",
        coarse: bool = False,
        zero: torch.Tensor | None = None,
        size: int = 64,
    ) -> None:
        self.structure = structure
        self.flatten = flatten
        self.coarse = coarse  # coarsen the all-pairs connections worth it
        self.coarsened = False  # some all-pairs connection kept only its strongest edges
        # `zero`: a 0 batched like the weights under vmap (`zoolens.graph.stacked`)
        self._zero = zero
        self._x = _zeros((size, NODE_FEATURES), zero)  # grown by doubling
        self._n = 0
        self.role: list[torch.Tensor] = []
        self.position: list[torch.Tensor] = []
        self.layer: list[torch.Tensor] = []
        self.src: list[torch.Tensor] = []
        self.dst: list[torch.Tensor] = []
        self.attr: list[torch.Tensor] = []
        self.etype: list[torch.Tensor] = []
        self.n_layers = 0

    @property
    def x(self) -> torch.Tensor:
        """Node features so far, ``(N, NODE_FEATURES)`` float64 (a view: writable)."""
        return self._x[: self._n]

    def new_layer(self, n: int, role: int, bias: torch.Tensor | None = None) -> torch.Tensor:
        ids = torch.arange(self._n, self._n + n)
        if self._n + n > self._x.shape[0]:  # one copy per doubling, not one per layer
            grown = _zeros((max(2 * self._x.shape[0], self._n + n), NODE_FEATURES), self._zero)
            grown[: self._n] = self._x[: self._n]
            self._x = grown
        feats = self._x[self._n : self._n + n]  # zeros, a view: written in place
        feats[:, F_BN_A] = 1.0
        if bias is not None:
            feats[:, F_BIAS] = bias.to(torch.float64)
        self._n += n
        if self.structure:
            self.role.append(torch.full((n,), role, dtype=torch.long))
            self.position.append(
                torch.arange(n) if role == ROLE_INPUT else torch.zeros(n, dtype=torch.long)
            )
            self.layer.append(torch.full((n,), self.n_layers, dtype=torch.long))
        self.n_layers += 1
        return ids

    def connect(
        self,
        src: torch.Tensor,
        dst: torch.Tensor,
        attr: torch.Tensor,
        kind: str,
        all_pairs: bool = False,
    ) -> None:
        """Edges ``src[i] → dst[i]``, or every src → every dst (target-major) if `all_pairs`;
        of those only the strongest if `coarse` (`zoolens.graph.coarsen`)."""
        if all_pairs and self.coarse and worth_coarsening(src.numel(), dst.numel()):
            src, dst, attr = coarse_edges(src, dst, attr)
            all_pairs, self.coarsened = False, True
        self.attr.append(fit_to_kernel(attr.to(torch.float64)))
        if self.structure:
            if all_pairs:
                src, dst = src.repeat(dst.numel()), dst.repeat_interleave(src.numel())
            self.src.append(src)
            self.dst.append(dst)
            slot = EDGE_TYPES.index(EDGE_ALIASES.get(kind, kind))
            self.etype.append(torch.full((src.numel(),), slot, dtype=torch.long))


def _zeros(shape: tuple[int, ...], zero: torch.Tensor | None) -> torch.Tensor:
    """Float64 zeros of `shape`, batched like `zero` (a 0-d tensor) when it is given."""
    out = torch.zeros(shape, dtype=torch.float64)
    return out if zero is None else out + zero


def _dense(b: _Builder, op: Op, inp: _Units) -> _Units:
    if int(op.attrs.get("groups", 1)) > 1:
        return _rnn_conv.grouped_conv(b, op, inp)
    w = op.params["weight"]
    n_out = w.shape[0]
    out = b.new_layer(n_out, ROLE_HIDDEN, op.params.get("bias"))
    n_in = inp.nodes.numel()
    if op.kind == "linear":
        kernels = _flatten_kernels(b, w.reshape(n_out * n_in, inp.block), inp.grid)
        kind = "flatten" if inp.block > 1 else "dense"
    else:
        kernels = w.reshape(n_out * n_in, -1)  # (out*in, k) or (out*in, kh*kw)
        kind = op.kind
    b.connect(inp.nodes, out, kernels, kind, all_pairs=True)
    return _Units(out, fresh=True)


def _flatten_kernels(b: _Builder, w: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """Weights ``(E, block)`` from the units of a flattened image to a dense unit: with
    ``flatten="grid"``, each row as an (H, W) map average-pooled to 3 x 3, so the 9 edge slots
    keep where in the image a unit looks; else (and for 1-D values) resampled along the
    row as `fit_to_kernel` does."""
    if b.flatten != "grid" or len(grid) != 2 or min(grid) < 3 or w.shape[1] <= KERNEL:
        return w
    side = math.isqrt(KERNEL)
    pooled = F.adaptive_avg_pool2d(w.reshape(-1, 1, *grid).to(torch.float64), side)
    return pooled.reshape(-1, KERNEL)


def _identity_layer(
    b: _Builder, inp: _Units, scale: torch.Tensor, bias: torch.Tensor, kind: str
) -> _Units:
    out = b.new_layer(inp.nodes.numel(), ROLE_HIDDEN, bias)
    b.connect(inp.nodes, out, scale.reshape(-1, 1), kind)
    return _Units(out)


def _batchnorm(b: _Builder, op: Op, inp: _Units) -> _Units:
    p = op.params
    a = p["weight"] / torch.sqrt(p["running_var"] + float(op.attrs["eps"]))
    c = p["bias"] - p["running_mean"] * a
    if inp.fresh and inp.block == 1:  # fold into the nodes that the dense op just wrote
        b.x[inp.nodes, F_BN_A] = a.to(torch.float64)
        b.x[inp.nodes, F_BN_C] = c.to(torch.float64)
        b.x[inp.nodes, F_HAS_BN] = 1.0
        return _Units(inp.nodes, fresh=True)
    return _identity_layer(b, _plain(inp, op), a, c, "batchnorm")


def _plain(u: _Units, op: Op) -> _Units:
    if u.block != 1:
        raise UnsupportedOpError(f"op {op.name!r}: {op.kind} on a flattened conv output")
    return u


def _add(b: _Builder, op: Op, ins: list[_Units]) -> _Units:
    n = ins[0].nodes.numel()
    out = b.new_layer(n, ROLE_HIDDEN)
    for u in ins:
        b.connect(_plain(u, op).nodes, out, torch.ones(n, 1), "residual")
    return _Units(out)


def _walk(
    net: Net,
    structure: bool = True,
    flatten: str = "grid",
    infos: dict[str, ValueInfo] | None = None,
    coarse: bool = False,
    zero: torch.Tensor | None = None,
    size: int = 64,
) -> tuple[_Builder, dict[str, _Units]]:
    b = _Builder(structure, flatten, coarse, zero, size)
    infos = infos or net.value_infos()
    first = _input_reshape(net)  # its output is the input layer
    src = net.input if first is None else first.output
    vocab = token_vocab(net.consumers(net.input))
    n_in = vocab_nodes(vocab) if vocab else infos[src].units  # vocabulary (bins) or units
    units = {src: _Units(b.new_layer(n_in, ROLE_INPUT))}
    for op in net.ops:
        if op is first:
            continue
        if op.kind in ("reshape", "transpose"):
            raise UnsupportedOpError(
                f"op {op.name!r}: {op.kind} of a hidden value (the neural graph reads a "
                "reshape of the network input only)"
            )
        ins = [units[v] for v in op.inputs if v not in net.extra_inputs]  # not a mask
        u = ins[0]
        if op.kind in ("linear", "conv1d", "conv2d"):
            units[op.output] = _dense(b, op, u)
        elif op.kind == "batchnorm":
            units[op.output] = _batchnorm(b, op, u)
        elif op.kind == "layernorm":
            units[op.output] = _identity_layer(
                b, _plain(u, op), op.params["weight"], op.params["bias"], "layernorm"
            )
        elif op.kind == "add":
            units[op.output] = _add(b, op, ins)
        elif op.kind in SEQ_GRAPH:
            nodes = SEQ_GRAPH[op.kind](b, op, [_plain(v, op).nodes for v in ins])
            units[op.output] = _Units(nodes, fresh=op.kind == "embedding")
        elif op.kind in ("lstm", "gru"):
            units[op.output] = _rnn_conv.recurrent(b, op, u)
            b.x[units[op.output].nodes, F_ACT + ACTIVATIONS.index(_rnn_conv.RNN_ACT)] = 1.0
        elif op.kind == "concat":
            units[op.output] = _rnn_conv.concat(op, ins)
        elif op.kind == "split":
            units[op.output] = _rnn_conv.split(op, u)
        elif op.kind == "flatten":
            info = infos[op.inputs[0]]
            grid = info.spatial if u.block == 1 else ()
            units[op.output] = _Units(u.nodes, u.block * info.spatial_size, grid=grid)
        else:
            _mark_unitwise(b, op, u)
            units[op.output] = replace(u, fresh=u.fresh and op.kind == "dropout")
    return b, units


def _input_reshape(net: Net) -> Op | None:
    """The reshape that is the only reader of the network input, if there is one."""
    readers = [op for op in net.ops if net.input in op.inputs]
    return readers[0] if len(readers) == 1 and readers[0].kind in ("reshape", "transpose") else None


def _mark_unitwise(b: _Builder, op: Op, u: _Units) -> None:
    if op.kind == "act":
        b.x[u.nodes, F_ACT:F_POOL] = 0.0
        b.x[u.nodes, F_ACT + ACTIVATIONS.index(op.graph_fn)] = 1.0
    elif op.kind == "scale":
        b.x[u.nodes, F_PRESCALE] += float(torch.tensor(abs(op.attrs["factor"])).log())
    elif op.kind in _POOL_SLOT:
        b.x[u.nodes, F_POOL + _POOL_SLOT[op.kind]] = 1.0


FLATTEN_KINDS = ("grid", "flat")


def net_to_graph(
    net: Net,
    canonical: bool = True,
    probes: torch.Tensor | None = None,
    flatten: str = "grid",
    cache: GraphCache | None = None,
    coarsen_above: int = COARSEN_PARAMS,
) -> NeuralGraph:
    """Build the neural graph of `net`.

    Args:
        net: the network.
        canonical: canonicalise scale and sign first (needed for exact invariance).
        probes: optional probe inputs ``(P, *input_shape)``; each node then carries its
            unit's activations on them (spatially averaged), which permute with the node.
        flatten: how an edge from a flattened image to a dense unit holds its H x W
            weights in its 9 slots: "grid" pools the map to 3 x 3; "flat" resamples the
            flattened row (the encoders saved before "grid" existed). 1-D values: the row.
        cache: the caller's `GraphCache`: the wiring and value shapes of an architecture
            it holds are reused (only weights and node features are filled in), and those
            of a new one are kept. None: built from scratch, the same graph.
        coarsen_above: a net of more parameters gets a coarse graph: its wide all-pairs
            connections keep only their strongest edges (`zoolens.graph.coarsen`; exactly
            invariant). Zoo-sized nets stay below the default; 0 coarsens any net.

    Returns:
        The `NeuralGraph`; float32 features.
    """
    if flatten not in FLATTEN_KINDS:
        raise ValueError(f"flatten {flatten!r}; expected one of {', '.join(FLATTEN_KINDS)}")
    key = net.arch_key() if cache is not None else ""  # canonicalising keeps the key
    coarse = net.trainable_params() > coarsen_above  # depends on the architecture only
    key += "|coarse" if coarse else ""
    parts = cache.parts(key) if cache is not None else None
    infos = parts.infos if parts is not None else net.value_infos()
    net = canonicalize(net, infos) if canonical else net
    b, units = _walk(net, parts is None, flatten, infos, coarse)
    out = units[net.output]
    if out.block != 1:
        raise UnsupportedOpError("the network's output is a flattened conv value")
    if parts is None:
        parts = ArchParts(infos, _structure(b, out.nodes))
        if cache is not None and not b.coarsened:  # a coarse graph's edges follow its weights
            cache.put(key, parts)
    structure = parts.structure
    graph = NeuralGraph(
        x=b.x.float(),
        edge_attr=torch.cat(b.attr).float(),
        **{name: t.clone() if cache is not None else t for name, t in structure.items()},
    )
    if probes is not None:
        probes = token_probes(probes, token_vocab(net.consumers(net.input)))
        graph.probes = probe_features(net, units, probes, graph.num_nodes)
    graph.domain = domain_features(net.input_shape, out.nodes.numel())
    return graph


def domain_features(input_shape: tuple[int, ...], n_outputs: int) -> torch.Tensor:
    """``(DOMAIN_FEATURES,)`` float32: log input size, input rank, log output count."""
    size = math.prod(input_shape)
    return torch.tensor([math.log(size), float(len(input_shape)), math.log(n_outputs)])


def _structure(b: _Builder, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """The `NeuralGraph` fields that depend only on the architecture."""
    role, position = torch.cat(b.role), torch.cat(b.position)
    role[outputs] = ROLE_OUTPUT
    position[outputs] = torch.arange(outputs.numel())
    return {
        "edge_index": torch.stack([torch.cat(b.src), torch.cat(b.dst)]),
        "edge_type": torch.cat(b.etype),
        "role": role,
        "position": position,
        "layer": torch.cat(b.layer),
    }


def _token_frequencies(ids: torch.Tensor, vocab: int) -> torch.Tensor:
    """Each probe's token frequencies ``(P, vocab)`` float64 from its ids ``(P, T)``: the
    mean over positions of the one-hot rows, without the ``(P, T, vocab)`` one-hot tensor."""
    ids = ids.long()
    counts = torch.zeros((ids.shape[0], vocab), dtype=torch.float64)
    counts.scatter_add_(1, ids, torch.ones(ids.shape, dtype=torch.float64))
    return counts / ids.shape[1]


def probe_features(
    net: Net,
    units: dict[str, _Units],
    probes: torch.Tensor,
    n_nodes: int,
    zero: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each node's activation on each probe input (later values overwrite earlier ones).

    Values are reduced to their nodes' features as the forward pass writes them and dropped
    after their last reader, so memory holds the live activations, not all of them.
    `zero`: as in `_Builder` (under vmap)."""
    p = next(net.parameters())
    x = probes.to(p.dtype)
    if x.dim() == 4:  # the same values; pooling is far faster on this layout
        x = x.contiguous(memory_format=torch.channels_last)
    feats = _zeros((n_nodes, probes.shape[0]), zero)
    vocab = token_vocab(net.consumers(net.input))

    def record(value: str, a: torch.Tensor) -> None:
        u = units.get(value)
        if u is None or u.block != 1:
            return
        if value == net.input and vocab is not None:  # token ids → each token's frequency
            a = binned(_token_frequencies(a, vocab))  # (P, bins)
        a = a.mean(dim=tuple(range(2, a.dim()))) if a.dim() > 2 else a  # (P, units)
        feats[u.nodes] = a.T.to(torch.float64)

    last_read = {v: i for i, op in enumerate(net.ops) for v in op.inputs}
    env = net.input_env(x)  # extra inputs (an attention mask) at their default
    record(net.input, x)
    with torch.no_grad():
        for i, op in enumerate(net.ops):
            env[op.output] = op.run([env[v] for v in op.inputs])
            record(op.output, env[op.output])
            for v in op.inputs:
                if last_read[v] == i:
                    env.pop(v, None)
    return feats.float()
