"""Elementwise ONNX subgraphs → IR activations, recognised by what they compute.

Exporters spell one activation many ways: SiLU as ``x * Sigmoid(x)``, GELU as ``Gelu`` or as
``Div → Erf → Add → Mul → Mul`` in two operand orders, Softplus as ``Softplus`` or as
``Where(Greater(βx, t), x, Softplus(βx) / β)``. Instead of one pattern per spelling, a
*region* (values computed from one root value by elementwise ops with scalar constants) is
evaluated in float64 on a dense probe of the real line and compared with each IR activation.
A match must hold at every probe point to 1e-6 relative, from -1e5 to 1e5.

Private to `zoolens.ir.onnx_import`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zoolens.ir._onnx_graph import Node, OnnxGraph, is_float

Evaluator = Callable[[Node, list[torch.Tensor]], torch.Tensor]


def _gelu(node: Node, x: list[torch.Tensor]) -> torch.Tensor:
    return F.gelu(x[0], approximate=str(node.attr("approximate", "none")))


def _softplus(node: Node, x: list[torch.Tensor]) -> torch.Tensor:
    return torch.logaddexp(x[0], torch.zeros((), dtype=x[0].dtype))


def _cast(node: Node, x: list[torch.Tensor]) -> torch.Tensor:
    from onnx.helper import tensor_dtype_to_np_dtype

    dtype = np.dtype(tensor_dtype_to_np_dtype(int(node.attr("to"))))
    if dtype.kind == "f":
        return x[0].to(torch.float64)
    return x[0].to(torch.bool) if dtype.kind == "b" else x[0].to(torch.int64)


_EVAL: dict[str, Evaluator] = {
    "Add": lambda n, x: x[0] + x[1],
    "Sub": lambda n, x: x[0] - x[1],
    "Mul": lambda n, x: x[0] * x[1],
    "Div": lambda n, x: x[0] / x[1],
    "Pow": lambda n, x: torch.pow(x[0], x[1]),
    "Max": lambda n, x: torch.maximum(x[0], x[1]),
    "Min": lambda n, x: torch.minimum(x[0], x[1]),
    "Sqrt": lambda n, x: torch.sqrt(x[0]),
    "Exp": lambda n, x: torch.exp(x[0]),
    "Log": lambda n, x: torch.log(x[0]),
    "Neg": lambda n, x: -x[0],
    "Abs": lambda n, x: x[0].abs(),
    "Reciprocal": lambda n, x: 1.0 / x[0],
    "Erf": lambda n, x: torch.erf(x[0]),
    "Tanh": lambda n, x: torch.tanh(x[0]),
    "Sigmoid": lambda n, x: torch.sigmoid(x[0]),
    "Relu": lambda n, x: torch.relu(x[0]),
    "LeakyRelu": lambda n, x: F.leaky_relu(x[0], float(n.attr("alpha", 0.01))),
    "Softplus": _softplus,
    "Gelu": _gelu,
    "Sin": lambda n, x: torch.sin(x[0]),
    "Cos": lambda n, x: torch.cos(x[0]),
    "Identity": lambda n, x: x[0],
    "Cast": _cast,
    "Greater": lambda n, x: x[0] > x[1],
    "Less": lambda n, x: x[0] < x[1],
    "GreaterOrEqual": lambda n, x: x[0] >= x[1],
    "LessOrEqual": lambda n, x: x[0] <= x[1],
    "Where": lambda n, x: torch.where(x[0].to(torch.bool), x[1], x[2]),
}
#: ONNX ops computed value by value (with numpy broadcasting of constants).
ELEMENTWISE = frozenset(_EVAL)


def evaluate(node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    """Apply elementwise `node` to its (non-empty) inputs."""
    return _EVAL[node.op_type](node, xs)


def _probe() -> torch.Tensor:
    big = torch.logspace(1, 5, 41, dtype=torch.float64)
    dense = torch.linspace(-12, 12, 2401, dtype=torch.float64)
    return torch.cat([torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64), dense, big, -big])


PROBE = _probe()
_TOL = 1e-6
_FIXED: list[tuple[dict[str, Any], Callable[[torch.Tensor], torch.Tensor]]] = [
    ({"fn": "relu"}, torch.relu),
    ({"fn": "sigmoid"}, torch.sigmoid),
    ({"fn": "tanh"}, torch.tanh),
    ({"fn": "sin"}, torch.sin),
    ({"fn": "silu"}, F.silu),
    ({"fn": "gelu", "approximate": "none"}, F.gelu),
    ({"fn": "gelu", "approximate": "tanh"}, lambda x: F.gelu(x, approximate="tanh")),
]


def f32(x: float) -> float:
    """`x` rounded to float32 and back to the shortest decimal (0.10000000149 → 0.1)."""
    return float(str(np.float32(x)))


def _close(f: torch.Tensor, y: torch.Tensor) -> bool:
    if f.shape != y.shape or f.dtype != y.dtype:
        return False
    ok = (f - y).abs() <= _TOL * (1 + y.abs())
    ok |= (f == y) | (f.isnan() & y.isnan())
    return bool(ok.all())


def match_activation(f: torch.Tensor, consts: list[float]) -> tuple[str, dict[str, Any]] | None:
    """The IR op computing `f` (the region evaluated on `PROBE`), as ``(kind, attrs)``.

    Args:
        f: values of the region at `PROBE`, float64.
        consts: scalar constants of the region (candidate Softplus thresholds).
    """
    x = PROBE
    if _close(f, x):
        return "act", {"fn": "identity"}
    for attrs, fn in _FIXED:
        if _close(f, fn(x)):
            return "act", dict(attrs)
    c = float(f[1])
    if _close(f, c * x):
        return "scale", {"factor": f32(c)}
    slope = -float(f[2])
    if _close(f, F.leaky_relu(x, slope)):
        return "act", {"fn": "leaky_relu", "negative_slope": f32(slope)}
    return _match_softplus(f, consts)


def _match_softplus(f: torch.Tensor, consts: list[float]) -> tuple[str, dict[str, Any]] | None:
    f0 = float(f[0])
    if not f0 > 0:
        return None
    beta = f32(math.log(2.0) / f0)
    for threshold in [*consts, 20.0]:
        if _close(f, F.softplus(PROBE, beta, threshold)):
            return "act", {"fn": "softplus", "beta": beta, "threshold": f32(threshold)}
    return None


class _NotDominated(Exception):
    pass


class Regions:
    """Which values are computed from a single root value by elementwise ops.

    A node is *absorbed* into its root's region when it is elementwise, its only
    non-constant inputs share one root, and its constants are scalars.

    Args:
        graph: the graph, after pattern rewriting.
    """

    def __init__(self, graph: OnnxGraph) -> None:
        self.graph = graph
        self.root: dict[str, str] = {}
        self.producer: dict[str, Node] = {}
        self.order: dict[str, int] = {}
        for i, node in enumerate(graph.nodes):
            r = self._common_root(node)
            if r is not None:
                self.root[node.outputs[0]] = r
                self.producer[node.outputs[0]] = node
                self.order[node.outputs[0]] = i

    def _common_root(self, node: Node) -> str | None:
        if node.op_type not in ELEMENTWISE or node.domain or len(node.outputs) != 1:
            return None
        consts = [v for v in node.inputs if v in self.graph.consts]
        if any(self.graph.consts[v].size != 1 for v in consts):
            return None
        roots = {self.root.get(v, v) for v in node.inputs if v and v not in self.graph.consts}
        return roots.pop() if len(roots) == 1 else None

    def is_absorbed(self, node: Node) -> bool:
        return bool(node.outputs) and self.producer.get(node.outputs[0]) is node

    def ancestors(self, v: str) -> list[str]:
        """Region values `v` is computed from (excluding the root), in graph order."""
        seen: set[str] = set()
        stack = [v]
        while stack:
            node = self.producer.get(stack.pop())
            for i in node.inputs if node else []:
                if i in self.producer and i not in seen:
                    seen.add(i)
                    stack.append(i)
        return sorted(seen, key=self.order.__getitem__)

    def function(self, v: str, u: str) -> torch.Tensor | None:
        """`v` evaluated on `PROBE` with ``u := PROBE``; None if `v` depends on the root
        other than through `u`."""
        memo: dict[str, torch.Tensor] = {u: PROBE}

        def ev(name: str) -> torch.Tensor:
            if name in memo:
                return memo[name]
            if name in self.graph.consts:
                return _scalar_tensor(self.graph.consts[name])
            node = self.producer.get(name)
            if node is None:
                raise _NotDominated
            memo[name] = evaluate(node, [ev(i) for i in node.inputs if i])
            return memo[name]

        try:
            out = ev(v)
        except _NotDominated:
            return None
        return out.to(torch.float64) if out.shape == PROBE.shape else None

    def scalars(self, v: str) -> list[float]:
        out: list[float] = []
        for a in [v, *self.ancestors(v)]:
            node = self.producer[a]
            out += [s for i in node.inputs if (s := self.graph.scalar(i)) is not None]
        return out

    def op_types(self, v: str) -> list[str]:
        return sorted({self.producer[a].op_type for a in [v, *self.ancestors(v)]})


def _scalar_tensor(a: np.ndarray) -> torch.Tensor:
    value = a.reshape(-1)[0].item()
    if is_float(a):
        return torch.tensor(float(value), dtype=torch.float64)
    return torch.tensor(value)
