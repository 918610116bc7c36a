"""`Probe`: a network's outputs on fixed probe inputs — a functional fingerprint."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from zoolens.graph import GraphCache
from zoolens.ir import Net, TensorSet
from zoolens.nn.base import Encoder, register_encoder
from zoolens.nn.baselines._common import require_net


@register_encoder("probe")
class Probe(Encoder):
    """Outputs of the Net on ``n_probes`` fixed probe inputs in its own input shape
    (`zoolens.graph.default_probes`; by default the probe design of the shipped
    neural-graph encoder, so the comparison with it is like for like), flattened
    probe-major and zero-padded or truncated to ``dim``.

    Exactly invariant to every weight symmetry (it only sees the function), but only
    meaningful across nets that share an input space *and* an output layout: two nets
    with different input shapes are run on different probes, and their vectors are
    compared slot by slot anyway. Needs the wiring: TensorSets are rejected.

    Args:
        config: ``dim`` (default 4096: every output of a net with up to 16 outputs),
            ``n_probes`` (default 256), ``probes`` (their kind, default "structured"; see
            `zoolens.graph.PROBE_KINDS`), ``seed`` (of the probes).

    Shapes:
        embeddings: ``(n, dim)``; slot ``p · n_out + j`` is output j on probe p.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(
            {"dim": 4096, "n_probes": 256, "probes": "structured", "seed": 0, **(config or {})}
        )
        self.graph_cache = GraphCache(max_architectures=0)  # its probe sets only

    def outputs(self, net: Net) -> torch.Tensor:
        """The net's outputs on the probes, ``(n_probes, *output_shape)``, float64."""
        x = self.graph_cache.probes(
            net.input_shape,
            int(self.config["n_probes"]),
            seed=int(self.config["seed"]),
            kind=str(self.config["probes"]),
        )
        p = next(net.parameters(), None)
        with torch.no_grad():
            y = net(x.to(p.dtype if p is not None else torch.float32))
        return y.to(torch.float64)

    def embed_batch(self, models: list[Net | TensorSet]) -> np.ndarray:
        dim = self.dim
        out = np.zeros((len(models), dim))
        for i, m in enumerate(models):
            y = self.outputs(require_net(m, self.name)).reshape(-1).numpy()
            out[i, : min(dim, y.size)] = y[:dim]
        return out
