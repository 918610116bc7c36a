"""Inputs for data-driven steps (activation matching, BatchNorm statistics) and the
activations of every value of a net on them."""

from __future__ import annotations

import numpy as np
import torch

from zoolens.errors import ZoolensError
from zoolens.graph import default_probes
from zoolens.graph.probes import token_probes
from zoolens.graph.seq import token_vocab
from zoolens.ir import Net

#: probe inputs drawn when the caller gives no data
N_PROBES = 256


def as_inputs(net: Net, data: torch.Tensor | np.ndarray | None, n: int = N_PROBES) -> torch.Tensor:
    """`data` as a tensor in `net`'s dtype, checked against its input shape; probe inputs
    (`zoolens.graph.default_probes`, the box [-1, 1]^d, or token ids) when `data` is None.

    Shapes:
        returns ``(B, *net.input_shape)``.
    """
    dtype = next(net.parameters(), torch.zeros((), dtype=torch.float64)).dtype
    if data is None:  # token ids for a net read by embeddings
        probes = default_probes(tuple(net.input_shape), n=n)
        return token_probes(probes, token_vocab(net.consumers(net.input))).to(dtype)
    x = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data)
    if tuple(x.shape[1:]) != tuple(net.input_shape) or x.shape[0] < 2:
        raise ZoolensError(
            f"data of shape {tuple(x.shape)} does not fit the nets: expected (n >= 2, "
            f"{', '.join(map(str, net.input_shape))}) inputs"
        )
    if not torch.is_floating_point(x):
        x = x.to(torch.float64)
    return x.to(dtype)


def activations(net: Net, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every value of `net` on inputs `x`, by name."""
    env = {net.input: x}
    with torch.no_grad():
        for op in net.ops:
            env[op.output] = op.run([env[name] for name in op.inputs])
    return env


def unit_rows(v: torch.Tensor) -> torch.Tensor:
    """Standardised per-unit activations ``(n_units, B * spatial)`` of a value ``(B, n, ...)``."""
    rows = v.transpose(0, 1).reshape(v.shape[1], -1).to(torch.float64)
    rows = rows - rows.mean(dim=1, keepdim=True)
    out: torch.Tensor = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return out
