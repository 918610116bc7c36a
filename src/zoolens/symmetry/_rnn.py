"""Per-unit sign flips of LSTM/GRU hidden units, and RNNs as readers of scaled units.

Private to `zoolens.symmetry`. Flipping hidden unit j of an LSTM (``h_j → -h_j``) is exact:
negate row j of the cell gate g (its input and recurrent weights and both biases), so
``c_j`` and ``tanh(c_j)`` flip while i, f, o do not; column j of ``weight_hh`` (every gate)
and the readers' weights compensate. For a GRU the candidate gate n plays g's part (its
``b_hn`` sits inside ``r * (W_hn h + b_hn)``, so it flips with the row) and
``h' = (1 - z) n + z h`` flips. Positive rescaling is not exact (sigmoid and tanh saturate).
An RNN reads its input linearly (``weight_ih @ x``), so it absorbs any per-unit scale of it.
"""

from __future__ import annotations

import torch

from zoolens.ir import Op
from zoolens.ir.ops_rnn import gate_count

#: The gate block whose sign follows the hidden state's: LSTM's g (2 of i, f, g, o),
#: GRU's n (2 of r, z, n).
SIGN_GATE = 2


def _block_rows(op: Op, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """`t` (axis 0 in gate blocks) with the sign gate's rows multiplied by `s`."""
    h = op.params["weight_hh"].shape[1]
    out = t.clone()
    rows = slice(SIGN_GATE * h, (SIGN_GATE + 1) * h)
    out[rows] = t[rows] * s.to(t.dtype).reshape(-1, *[1] * (t.dim() - 1))
    return out


def flip_outputs(op: Op, s: torch.Tensor) -> None:
    """In place: hidden units of `op` multiplied by signs `s` (±1, ``(H,)``)."""
    for role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        if role in op.params:
            op.params[role] = _block_rows(op, op.params[role], s)
    w = op.params["weight_hh"]
    op.params["weight_hh"] = w * s.to(w.dtype)[None, :]  # the recurrence reads flipped h


def scale_inputs(op: Op, s: torch.Tensor) -> None:
    """In place: `op` reads an input whose units were multiplied by `s`; compensate."""
    w = op.params["weight_ih"]
    op.params["weight_ih"] = w / s.to(w.dtype)[None, :]


def incoming_rows(op: Op) -> torch.Tensor:
    """Per hidden unit, the weights whose sign flips with it and with nothing else:
    the sign gate's input weights and biases, ``(H, F + 2)``."""
    h = op.params["weight_hh"].shape[1]
    g = gate_count(op)
    w = op.params["weight_ih"].reshape(g, h, -1)[SIGN_GATE]  # (H, F)
    cols = [w]
    for role in ("bias_ih", "bias_hh"):
        if role in op.params:
            cols.append(op.params[role].reshape(g, h)[SIGN_GATE][:, None])
    return torch.cat(cols, dim=1)
