"""Recurrent, grouped-conv and unit-bookkeeping ops of the IR: LSTM, GRU, concat, split and
transposes (a sequence's last step is `select` with index -1, `zoolens.ir.ops_seq`).

A sequence value has layout ``(B, F, T)``: units on axis 1, time on the last axis.
``lstm`` and ``gru`` are single-layer, unidirectional cells with zero initial state and
PyTorch's parameter layout and gate order (``nn.LSTM``: i, f, g, o; ``nn.GRU``: r, z, n);
they map ``(B, F, T)`` to every hidden state ``(B, H, T)``. With attr ``reverse`` true
the cell reads the sequence from its last step to its first (the backward half of a
bidirectional RNN; its states are returned in time order).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from zoolens.errors import UnsupportedOpError

if TYPE_CHECKING:
    from zoolens.ir.ops import Op

#: Gate blocks along axis 0 of an RNN's ``weight_ih``, ``weight_hh`` and biases.
GATES = {"lstm": 4, "gru": 3}
RNN_KINDS = frozenset(GATES)
RNN_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
#: Kinds that move units around without computing (their spaces are fixed for now).
LAYOUT_KINDS = frozenset({"concat", "split", "transpose"})
KINDS = RNN_KINDS | LAYOUT_KINDS


def gate_count(op: Op) -> int:
    """Number of gate blocks of an ``lstm``/``gru`` op."""
    return GATES[op.kind]


def is_depthwise(op: Op) -> bool:
    """A conv whose output channel i reads input channel i only (groups == in == out)."""
    w = op.params.get("weight")
    g = int(op.attrs.get("groups", 1))
    return (
        op.kind in ("conv1d", "conv2d")
        and w is not None
        and g > 1
        and g == w.shape[0]
        and (w.shape[1] == 1)
    )


def is_grouped(op: Op) -> bool:
    """A grouped conv that is not depthwise (its units are tied across groups)."""
    return int(op.attrs.get("groups", 1)) > 1 and not is_depthwise(op)


def rnn_roles(op: Op, role: str) -> tuple[str, ...]:
    """Axis meaning of an RNN parameter: axis 0 is ``gates`` (hidden units, in blocks)."""
    if role == "weight_ih":
        return ("gates", "in")
    if role == "weight_hh":
        return ("gates", "out")
    return ("gates",)


def expand_gates(p: torch.Tensor, blocks: int) -> torch.Tensor:
    """A permutation of H hidden units as one of the ``blocks * H`` gate rows."""
    h = p.numel()
    return torch.cat([p + k * h for k in range(blocks)])  # (blocks * H,)


def _rnn_params(op: Op, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    p = op.params
    w_ih, w_hh = p["weight_ih"], p["weight_hh"]
    if x.dim() != 3 or x.shape[1] != w_ih.shape[1]:
        raise UnsupportedOpError(
            f"op {op.name!r}: {op.kind} reads (B, {w_ih.shape[1]}, T) sequences, "
            f"got {tuple(x.shape)}"
        )
    zeros = torch.zeros(w_ih.shape[0], dtype=w_ih.dtype, device=w_ih.device)
    return w_ih, w_hh, p.get("bias_ih", zeros), p.get("bias_hh", zeros)


def _directed(
    run: Callable[[Op, list[torch.Tensor]], torch.Tensor],
) -> Callable[[Op, list[torch.Tensor]], torch.Tensor]:
    """`run` over the reversed sequence when ``attrs["reverse"]``, states in time order."""

    def wrapped(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
        if not op.attrs.get("reverse", False):
            return run(op, xs)
        return run(op, [xs[0].flip(-1)]).flip(-1)

    return wrapped


def run_lstm(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    """``(B, F, T) → (B, H, T)``, as ``nn.LSTM`` (gates i, f, g, o; zero initial state)."""
    w_ih, w_hh, b_ih, b_hh = _rnn_params(op, xs[0])
    n_hidden = w_hh.shape[1]
    gx = torch.einsum("gf,bft->btg", w_ih, xs[0]) + (b_ih + b_hh)  # (B, T, 4H)
    h = gx.new_zeros((gx.shape[0], n_hidden))
    c = torch.zeros_like(h)
    hs = []
    for t in range(gx.shape[1]):
        i, f, g, o = (gx[:, t] + h @ w_hh.T).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        hs.append(h)
    return torch.stack(hs, dim=2)  # (B, H, T)


def run_gru(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    """``(B, F, T) → (B, H, T)``, as ``nn.GRU`` (gates r, z, n; zero initial state)."""
    w_ih, w_hh, b_ih, b_hh = _rnn_params(op, xs[0])
    n_hidden = w_hh.shape[1]
    gx = torch.einsum("gf,bft->btg", w_ih, xs[0]) + b_ih  # (B, T, 3H)
    h = gx.new_zeros((gx.shape[0], n_hidden))
    hs = []
    for t in range(gx.shape[1]):
        xr, xz, xn = gx[:, t].chunk(3, dim=1)
        hr, hz, hn = (h @ w_hh.T + b_hh).chunk(3, dim=1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        hs.append(h)
    return torch.stack(hs, dim=2)  # (B, H, T)


def run_concat(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    """Inputs joined along axis 1 (units)."""
    return torch.cat(xs, dim=1)


def run_split(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    """Units ``start:stop`` of the input (axis 1)."""
    return xs[0][:, int(op.attrs["start"]) : int(op.attrs["stop"])]


def run_transpose(op: Op, xs: list[torch.Tensor]) -> torch.Tensor:
    """Axes of each example permuted: ``attrs["perm"]`` over the non-batch axes."""
    perm = [int(a) + 1 for a in op.attrs["perm"]]
    return xs[0].permute(0, *perm).contiguous()


RUNNERS = {
    "lstm": _directed(run_lstm),
    "gru": _directed(run_gru),
    "concat": run_concat,
    "split": run_split,
    "transpose": run_transpose,
}
