"""`net_to_graph`: turn a (canonicalised) `Net` into a `NeuralGraph`."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from zoolens.errors import UnsupportedOpError
from zoolens.graph.neural_graph import (
    EDGE_TYPES,
    KERNEL,
    ROLE_HIDDEN,
    ROLE_INPUT,
    ROLE_OUTPUT,
    NeuralGraph,
)
from zoolens.ir import ACTIVATIONS, Net, Op
from zoolens.symmetry import canonicalize

# Node feature layout.
F_BIAS, F_BN_A, F_BN_C, F_HAS_BN, F_PRESCALE = 0, 1, 2, 3, 4
F_ACT = 5
F_POOL = F_ACT + len(ACTIVATIONS)  # maxpool, avgpool, gap flags
NODE_FEATURES = F_POOL + 3
_POOL_SLOT = {"maxpool": 0, "avgpool": 1, "gap": 2}
#: `Net.arch_key` → the graph fields that depend only on the architecture, least recently
#: used first; building a graph then only fills in weights and node features.
_STRUCTURES: dict[str, dict[str, torch.Tensor]] = {}
_MAX_STRUCTURES = 64


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

    def __init__(self, structure: bool = True, flatten: str = "grid") -> None:
        self.structure = structure
        self.flatten = flatten
        self.x = torch.zeros((0, NODE_FEATURES), dtype=torch.float64)
        self.role: list[torch.Tensor] = []
        self.position: list[torch.Tensor] = []
        self.layer: list[torch.Tensor] = []
        self.src: list[torch.Tensor] = []
        self.dst: list[torch.Tensor] = []
        self.attr: list[torch.Tensor] = []
        self.etype: list[torch.Tensor] = []
        self.n_layers = 0

    def new_layer(self, n: int, role: int, bias: torch.Tensor | None = None) -> torch.Tensor:
        feats = torch.zeros((n, NODE_FEATURES), dtype=torch.float64)
        feats[:, F_BN_A] = 1.0
        if bias is not None:
            feats[:, F_BIAS] = bias.to(torch.float64)
        ids = torch.arange(self.x.shape[0], self.x.shape[0] + n)
        self.x = torch.cat([self.x, feats])
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
        """Edges ``src[i] → dst[i]``, or every src → every dst (target-major) if `all_pairs`."""
        self.attr.append(fit_to_kernel(attr.to(torch.float64)))
        if self.structure:
            if all_pairs:
                src, dst = src.repeat(dst.numel()), dst.repeat_interleave(src.numel())
            self.src.append(src)
            self.dst.append(dst)
            self.etype.append(torch.full((src.numel(),), EDGE_TYPES.index(kind), dtype=torch.long))


def _dense(b: _Builder, op: Op, inp: _Units) -> _Units:
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
    net: Net, structure: bool = True, flatten: str = "grid"
) -> tuple[_Builder, dict[str, _Units]]:
    b = _Builder(structure, flatten)
    infos = net.value_infos()
    first = _input_reshape(net)  # its output is the input layer
    src = net.input if first is None else first.output
    units = {src: _Units(b.new_layer(infos[src].units, ROLE_INPUT))}
    for op in net.ops:
        if op is first:
            continue
        if op.kind == "reshape":
            raise UnsupportedOpError(
                f"op {op.name!r}: reshape of a hidden value (the neural graph reads a "
                "reshape of the network input only)"
            )
        ins = [units[v] for v in op.inputs]
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
    return readers[0] if len(readers) == 1 and readers[0].kind == "reshape" else None


def _mark_unitwise(b: _Builder, op: Op, u: _Units) -> None:
    if op.kind == "act":
        b.x[u.nodes, F_ACT:F_POOL] = 0.0
        b.x[u.nodes, F_ACT + ACTIVATIONS.index(op.fn)] = 1.0
    elif op.kind == "scale":
        b.x[u.nodes, F_PRESCALE] += float(torch.tensor(abs(op.attrs["factor"])).log())
    elif op.kind in _POOL_SLOT:
        b.x[u.nodes, F_POOL + _POOL_SLOT[op.kind]] = 1.0


FLATTEN_KINDS = ("grid", "flat")


def net_to_graph(
    net: Net, canonical: bool = True, probes: torch.Tensor | None = None, flatten: str = "grid"
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

    Returns:
        The `NeuralGraph`; float32 features.
    """
    if flatten not in FLATTEN_KINDS:
        raise ValueError(f"flatten {flatten!r}; expected one of {', '.join(FLATTEN_KINDS)}")
    net = canonicalize(net) if canonical else net
    key = net.arch_key()
    structure = _STRUCTURES.pop(key, None)  # put back below, as the most recently used
    b, units = _walk(net, structure is None, flatten)
    out = units[net.output]
    if out.block != 1:
        raise UnsupportedOpError("the network's output is a flattened conv value")
    if structure is None:
        structure = _structure(b, out.nodes)
        if len(_STRUCTURES) >= _MAX_STRUCTURES:
            _STRUCTURES.pop(next(iter(_STRUCTURES)))
    _STRUCTURES[key] = structure
    graph = NeuralGraph(
        x=b.x.float(),
        edge_attr=torch.cat(b.attr).float(),
        **{name: t.clone() for name, t in structure.items()},
    )
    if probes is not None:
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


def probe_features(
    net: Net, units: dict[str, _Units], probes: torch.Tensor, n_nodes: int
) -> torch.Tensor:
    """Each node's activation on each probe input (later values overwrite earlier ones)."""
    p = next(net.parameters())
    x = probes.to(p.dtype)
    if x.dim() == 4:  # the same values; pooling is far faster on this layout
        x = x.contiguous(memory_format=torch.channels_last)
    env = {net.input: x}
    with torch.no_grad():
        for op in net.ops:
            env[op.output] = op.run([env[v] for v in op.inputs])
    feats = torch.zeros((n_nodes, probes.shape[0]), dtype=torch.float64)
    for value, u in units.items():
        if u.block != 1:
            continue
        a = env[value]
        a = a.mean(dim=tuple(range(2, a.dim()))) if a.dim() > 2 else a  # (P, units)
        feats[u.nodes] = a.T.to(torch.float64)
    return feats.float()


PROBE_KINDS = ("sobol", "smooth", "normal", "structured")
LATTICE_MAX_DIM = 3  # "structured" probes: inputs of at most this many coordinates
SMOOTH_GRID = 3  # "smooth" image probes: Sobol values on this grid per channel, upsampled


def default_probes(
    input_shape: tuple[int, ...], n: int = 16, seed: int = 0, kind: str = "sobol"
) -> torch.Tensor:
    """Probe inputs ``(n, *input_shape)``, float64, the same for every net with this input
    shape.

    ``kind="sobol"`` spreads them evenly over the box [-1, 1]^d (scrambled Sobol points; plain
    uniform ones past torch's 21,201 Sobol dimensions): it covers the coordinate domain of an
    INR, where a handful of Gaussian points would mostly land off the image, and the
    standardised range of tabular inputs. ``kind="smooth"``: the same for inputs that are not
    images; for image-shaped ones ``(C, H, W)``, Sobol values on a 3 x 3 grid per channel,
    bilinearly upsampled — spatially smooth probes, to which a net trained on natural
    images answers differently from one trained on pixel-shuffled ones.
    ``kind="normal"``: standard-normal draws (the encoders saved before the option existed).
    ``kind="structured"``: images as "smooth"; for coordinate inputs ``(d,)``, d ≤ 3, the
    first points are the regular lattice ``linspace(-1, 1, k)^d`` with the largest k for
    which it takes at most a quarter of the n points, the rest Sobol points; other inputs as
    "sobol". An INR is pinned down only on the pixel grid it was fitted to — a sine INR can
    take any value between pixel centres — and ``linspace(-1, 1, k)`` is the usual grid of
    a k-pixel side.
    """
    if kind not in PROBE_KINDS:
        raise ValueError(f"probe kind {kind!r}; expected one of {', '.join(PROBE_KINDS)}")
    return _probes(tuple(input_shape), n, seed, kind).clone()


@functools.lru_cache(maxsize=16)
def _probes(input_shape: tuple[int, ...], n: int, seed: int, kind: str) -> torch.Tensor:
    image = len(input_shape) == 3 and min(input_shape[1:]) > SMOOTH_GRID
    if kind in ("smooth", "structured") and image:
        c, h, w = input_shape
        grid = _probes((c, SMOOTH_GRID, SMOOTH_GRID), n, seed, "sobol")
        return F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=True)
    d = math.prod(input_shape)
    if kind == "structured" and len(input_shape) == 1 and d <= LATTICE_MAX_DIM:
        k = math.floor((n / 4) ** (1 / d) + 1e-9)
        if k >= 2:
            axis = torch.linspace(-1, 1, k, dtype=torch.float64)
            grid = torch.cartesian_prod(*[axis] * d).reshape(-1, d)
            return torch.cat([grid, _probes(input_shape, n - grid.shape[0], seed, "sobol")])
    if kind == "normal":
        g = torch.Generator().manual_seed(seed)
        return torch.randn((n, *input_shape), generator=g, dtype=torch.float64)
    if d <= torch.quasirandom.SobolEngine.MAXDIM:
        engine = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed)  # type: ignore[no-untyped-call]
        unit = engine.draw(n, dtype=torch.float64)
    else:
        unit = torch.rand(
            (n, d), generator=torch.Generator().manual_seed(seed), dtype=torch.float64
        )
    return (2 * unit - 1).reshape(n, *input_shape)
