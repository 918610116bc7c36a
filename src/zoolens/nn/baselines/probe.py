"""`Probe`: a network's outputs on fixed probe inputs — a functional fingerprint."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from zoolens.graph import GraphCache
from zoolens.ir import Net, TensorSet
from zoolens.nn.base import Encoder, register_encoder
from zoolens.nn.baselines._common import require_net
from zoolens.nn.config import ConfigError, EncoderConfig, bounded


@dataclass(frozen=True)
class ProbeConfig(EncoderConfig):
    """Args:
    dim: slots kept (4096: every output of a net with up to 16 outputs).
    n_probes: probe inputs.
    probes: their kind (`zoolens.graph.build.PROBE_KINDS`); "structured" is the
        neural-graph encoder's, so the comparison with it is like for like.
    seed: of the probes.
    """

    dim: int = bounded(4096, 1)
    n_probes: int = bounded(256, 1)
    probes: str = "structured"
    seed: int = 0

    def validate(self) -> None:
        from zoolens.graph import PROBE_KINDS

        if self.probes not in PROBE_KINDS:
            raise ConfigError(
                f"ProbeConfig.probes = {self.probes!r}: expected one of {', '.join(PROBE_KINDS)}"
            )


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
        config: a `ProbeConfig` (or keyword overrides of its defaults).

    Shapes:
        embeddings: ``(n, dim)``; slot ``p · n_out + j`` is output j on probe p.
    """

    config_class: ClassVar[type[EncoderConfig]] = ProbeConfig

    def __init__(self, config: EncoderConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.graph_cache = GraphCache(max_architectures=0)  # its probe sets only

    def outputs(self, net: Net) -> torch.Tensor:
        """The net's outputs on the probes, ``(n_probes, *output_shape)``, float64."""
        x = self.graph_cache.probes(
            net.input_shape,
            int(self.config.n_probes),
            seed=int(self.config.seed),
            kind=str(self.config.probes),
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
