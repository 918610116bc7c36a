"""Neural-graph pieces of recurrent cells, grouped convolutions and concat/split.

Private to `zoolens.graph.build` (which owns the builder and the unit records).

An ``lstm``/``gru`` op becomes one layer of H hidden nodes: an edge from every input unit
to every hidden unit whose features are that pair's gate weights (4 or 3 slots), and a
recurrent edge between every pair of hidden units (self-loops included) with the
hidden-to-hidden gate weights; the self-loop also carries the unit's gate biases
(LSTM: ``bias_ih + bias_hh`` per gate; GRU: r and z summed, then ``b_in`` and ``b_hn``,
which ``r`` separates) and, for a cell that reads time backwards, a 1 in the last slot.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from zoolens.errors import UnsupportedOpError
from zoolens.graph.neural_graph import KERNEL, ROLE_HIDDEN
from zoolens.ir import Op
from zoolens.ir.ops_rnn import gate_count

if TYPE_CHECKING:
    from zoolens.graph.build import _Builder, _Units

#: Activation flag of a recurrent layer's nodes (its output is ``o * tanh(c)`` or a
#: convex mix of tanh values).
RNN_ACT = "tanh"


def _flat_nodes(u: _Units, op: Op) -> torch.Tensor:
    if u.block != 1:
        raise UnsupportedOpError(f"op {op.name!r}: {op.kind} of a flattened conv output")
    return u.nodes


def gate_biases(op: Op) -> torch.Tensor:
    """Per hidden unit, the gate biases that act on it, ``(H, 4)``."""
    g, h = gate_count(op), op.params["weight_hh"].shape[1]
    zeros = torch.zeros(g * h, dtype=op.params["weight_hh"].dtype)
    b_ih = op.params.get("bias_ih", zeros).reshape(g, h)
    b_hh = op.params.get("bias_hh", zeros).reshape(g, h)
    if op.kind == "lstm":
        return (b_ih + b_hh).T  # (H, 4): i, f, g, o
    return torch.stack([b_ih[0] + b_hh[0], b_ih[1] + b_hh[1], b_ih[2], b_hh[2]], dim=1)


def recurrent(b: _Builder, op: Op, inp: _Units) -> _Units:
    """One hidden layer for an ``lstm``/``gru`` op; returns its units."""
    src = _flat_nodes(inp, op)
    g = gate_count(op)
    w_ih, w_hh = op.params["weight_ih"], op.params["weight_hh"]
    h, f = w_hh.shape[1], w_ih.shape[1]
    biases = gate_biases(op)  # (H, 4)
    out = b.new_layer(h, ROLE_HIDDEN, biases[:, 2])  # the cell / candidate gate's bias
    into = w_ih.reshape(g, h, f).permute(1, 2, 0).reshape(h * f, g)  # (H*F, G) target-major
    b.connect(src, out, into, "dense", all_pairs=True)
    rec = w_hh.reshape(g, h, h).permute(1, 2, 0).reshape(h * h, g)  # (H*H, G)
    attr = rec.new_zeros((h * h, KERNEL))  # gates, then biases (self-loops), reverse flag
    attr[:, :g] = rec
    diag = torch.arange(h) * (h + 1)
    attr[diag, g : g + 4] = biases.to(attr.dtype)
    if op.attrs.get("reverse", False):  # the backward cell of a bidirectional RNN
        attr[diag, KERNEL - 1] = 1.0
    b.connect(out, out, attr, "recurrent", all_pairs=True)
    return replace(inp, nodes=out, block=1, fresh=False, grid=())


def grouped_conv(b: _Builder, op: Op, inp: _Units) -> _Units:
    """A conv with ``groups > 1``: output channel o reads the input channels of its group."""
    src = _flat_nodes(inp, op)
    w = op.params["weight"]  # (out, in / groups, *k)
    n_out, per_in = w.shape[0], w.shape[1]
    per_out = n_out // int(op.attrs["groups"])
    out = b.new_layer(n_out, ROLE_HIDDEN, op.params.get("bias"))
    first = (torch.arange(n_out) // per_out) * per_in  # first input channel of o's group
    idx = (first[:, None] + torch.arange(per_in)[None, :]).reshape(-1)  # (out * per_in,)
    dst = out.repeat_interleave(per_in)
    b.connect(src[idx], dst, w.reshape(n_out * per_in, -1), op.kind)
    return replace(inp, nodes=out, block=1, fresh=True, grid=())


def concat(op: Op, ins: list[_Units]) -> _Units:
    """The units of a concat are its inputs' units, in order (no new nodes)."""
    nodes = torch.cat([_flat_nodes(u, op) for u in ins])
    return replace(ins[0], nodes=nodes, fresh=False)


def split(op: Op, inp: _Units) -> _Units:
    """Units ``start:stop`` of the input (no new nodes)."""
    nodes = _flat_nodes(inp, op)[int(op.attrs["start"]) : int(op.attrs["stop"])]
    return replace(inp, nodes=nodes, fresh=False)
