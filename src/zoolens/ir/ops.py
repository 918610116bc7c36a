"""Op kinds of the IR: what each computes and which axes of its parameters index units.

Every value flowing between ops has layout ``(B, C, *spatial)``: axis 1 indexes the
units (neurons or channels) that the symmetry and graph packages act on. The sequence
(transformer) ops run in `zoolens.ir.ops_seq`: a token sequence is ``(B, D, T)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from zoolens.errors import UnsupportedOpError
from zoolens.ir import ops_rnn
from zoolens.ir.ops_seq import (
    SEQ_KINDS,
    SEQ_RUNNERS,
    check_seq_op,
    run_layernorm,
    run_linear,
    seq_param_roles,
)

Role = Literal["out", "in", "unit", "gates"]

#: Op kinds whose weight maps input units to new output units (they create hidden layers).
DENSE_KINDS = frozenset({"linear", "conv1d", "conv2d"})
#: Op kinds applied unit by unit: output unit i depends only on input unit i.
UNITWISE_KINDS = frozenset(
    {"act", "batchnorm", "dropout", "scale", "pad", "maxpool", "avgpool", "gap"}
)
ACTIVATIONS = (
    "identity",
    "relu",
    "leaky_relu",
    "prelu",
    "gelu",
    "silu",
    "tanh",
    "sigmoid",
    "softplus",
    "sin",
)
#: Activations the IR runs beyond `ACTIVATIONS`, each with the `ACTIVATIONS` slot its neural-graph
#: nodes are marked with (the graph's node features have one slot per `ACTIVATIONS` entry).
EXTRA_ACTIVATIONS = {"relu6": "relu", "hardswish": "silu", "hardsigmoid": "sigmoid"}
#: ``reshape`` keeps the batch axis: ``(B, *s) → (B, *attrs["shape"])``. Its input and
#: output units are never permuted or rescaled (`zoolens.symmetry.build_spaces` fixes both).
KINDS = frozenset(
    DENSE_KINDS | UNITWISE_KINDS | {"layernorm", "add", "flatten", "reshape"} | SEQ_KINDS
)
KINDS = KINDS | ops_rnn.KINDS  # lstm, gru, concat, split, last, transpose


@dataclass
class Op:
    """One node of a `Net`: ``output = kind(inputs; params, attrs)``.

    Args:
        name: unique name inside the net (also the prefix of its tensors on disk).
        kind: one of `KINDS`.
        inputs: names of the values the op reads, in order.
        output: name of the value it writes.
        params: tensors by role (``weight``, ``bias``, ``running_mean``, ``running_var``).
        attrs: JSON-serialisable settings (``stride``, ``eps``, ``fn`` for activations, ...).
    """

    name: str
    kind: str
    inputs: tuple[str, ...]
    output: str
    params: dict[str, torch.Tensor] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UnsupportedOpError(f"op {self.name!r}: unknown kind {self.kind!r}")
        if self.kind == "act" and self.attrs.get("fn") not in (*ACTIVATIONS, *EXTRA_ACTIVATIONS):
            raise UnsupportedOpError(
                f"op {self.name!r}: unsupported activation {self.attrs.get('fn')!r}"
            )
        if self.kind in SEQ_KINDS:
            check_seq_op(self)

    def param_roles(self, role: str) -> tuple[Role, ...]:
        """Meaning of each axis of parameter `role`: ``out``/``in`` units, or ``unit``.

        Axes beyond the returned tuple (conv kernel axes) index no units.
        """
        if self.kind in ops_rnn.RNN_KINDS:
            return ops_rnn.rnn_roles(self, role)  # type: ignore[return-value]
        if ops_rnn.is_depthwise(self):  # output channel i reads input channel i
            return ("unit",)
        if self.kind in DENSE_KINDS:
            return ("out", "in") if role == "weight" else ("out",)
        if self.kind in ("batchnorm", "layernorm"):
            return ("unit",)
        if self.kind == "act" and role == "weight":  # PReLU slopes: one per unit, or shared
            return ("unit",) if self.params[role].numel() > 1 else ()
        if self.kind in SEQ_KINDS:
            return seq_param_roles(self.kind)  # type: ignore[return-value]
        return ()

    @property
    def graph_fn(self) -> str:
        """The `ACTIVATIONS` entry whose node-feature slot marks this op's units."""
        return EXTRA_ACTIVATIONS.get(self.fn, self.fn)

    @property
    def fn(self) -> str:
        """Activation name for ``act`` ops, otherwise the kind."""
        return str(self.attrs.get("fn", self.kind))

    def run(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Apply the op to its input values."""
        runner: Callable[[Op, list[torch.Tensor]], torch.Tensor] = _RUNNERS[self.kind]
        return runner(self, xs)


def _run_dense(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    w, b = op.params["weight"], op.params.get("bias")
    if op.kind == "linear":
        return run_linear(op, xs)
    conv = F.conv1d if op.kind == "conv1d" else F.conv2d
    a = op.attrs
    return conv(xs[0], w, b, a["stride"], a["padding"], a["dilation"], int(a.get("groups", 1)))


def _run_act(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    x, fn = xs[0], op.fn
    if fn == "identity":
        return x
    if fn == "leaky_relu":
        return F.leaky_relu(x, float(op.attrs["negative_slope"]))
    if fn == "prelu":
        return F.prelu(x, op.params["weight"])
    if fn == "gelu":
        return F.gelu(x, approximate=str(op.attrs.get("approximate", "none")))
    if fn == "softplus":
        return F.softplus(
            x, float(op.attrs.get("beta", 1.0)), float(op.attrs.get("threshold", 20.0))
        )
    return {
        "relu": torch.relu,
        "silu": F.silu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "sin": torch.sin,
        "relu6": F.relu6,
        "hardswish": F.hardswish,
        "hardsigmoid": F.hardsigmoid,
    }[fn](x)


def _run_batchnorm(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    p = op.params
    return F.batch_norm(
        xs[0],
        p["running_mean"],
        p["running_var"],
        p["weight"],
        p["bias"],
        training=False,
        eps=float(op.attrs["eps"]),
    )


def _run_pool(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    x, a = xs[0], op.attrs
    dims = x.dim() - 2
    if op.kind == "maxpool":
        f = F.max_pool1d if dims == 1 else F.max_pool2d
        return f(x, a["kernel_size"], a["stride"], a["padding"])
    g = F.avg_pool1d if dims == 1 else F.avg_pool2d
    return g(x, a["kernel_size"], a["stride"], a["padding"])


def _run_gap(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    y = x.mean(dim=tuple(range(2, x.dim())), keepdim=bool(op.attrs.get("keepdim", False)))
    return y


def _run_add(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


_RUNNERS = {
    "linear": _run_dense,
    "conv1d": _run_dense,
    "conv2d": _run_dense,
    "act": _run_act,
    "batchnorm": _run_batchnorm,
    "layernorm": run_layernorm,
    "dropout": lambda op, xs: xs[0],
    "scale": lambda op, xs: xs[0] * float(op.attrs["factor"]),
    "maxpool": _run_pool,
    "avgpool": _run_pool,
    "gap": _run_gap,
    "add": _run_add,
    "flatten": lambda op, xs: xs[0].flatten(1),
    "reshape": lambda op, xs: xs[0].reshape(xs[0].shape[0], *op.attrs["shape"]),
    # zero padding of the spatial axes; ``pads`` in F.pad order (last axis first)
    "pad": lambda op, xs: F.pad(xs[0], [int(p) for p in op.attrs["pads"]]),
    **SEQ_RUNNERS,
    **ops_rnn.RUNNERS,
}
