"""The function fingerprint: a net's outputs on the probe inputs, randomly projected.

A neural graph built with probes already holds, on its output nodes, the function's values
on those inputs; this reads them, so it costs no forward pass. It depends on the function
alone — exactly invariant to every weight symmetry — and nothing in it is learned, so it is
as informative on tasks an encoder never saw as on the ones it was trained on. Output
``j``'s value on probe ``p`` fills slot ``p * MAX_OUTPUTS + j`` for every net, so nets with
different output counts still compare output by output; later outputs are dropped.
Each output's values are first standardised over the probes (a constant offset, such as
a regressor's mean, does not dominate; an output's scale does not either).
`output_statistics` summarises the same values in a few numbers for the quality head.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from zoolens.graph import ROLE_OUTPUT, NeuralGraph
from zoolens.nn.base import l2_normalise

MAX_OUTPUTS = 16
CONSTANT_TOL = 1e-5  # relative spread below which an output counts as constant (float32)


def output_responses(graph: NeuralGraph) -> torch.Tensor:
    """``(P, n_outputs)`` float64: output unit j's value on probe p."""
    if graph.probes is None:
        raise ValueError("the fingerprint reads probe values; the graph has none")
    outs = torch.nonzero(graph.role == ROLE_OUTPUT)[:, 0]
    outs = outs[torch.argsort(graph.position[outs])]
    return graph.probes[outs].T.double()


#: How a fingerprint lays out and projects the responses (`Fingerprinter`).
LAYOUTS = ("gaussian", "isometric")


class Fingerprinter:
    """Makes fingerprints ``(n, dim)`` of built graphs; owns its random projections (one
    per probe count, made on first use).

    Args:
        dim: columns of a fingerprint.
        seed: seed of the projection.
        layout: ``"gaussian"``: output j's value on probe p in slot ``p * MAX_OUTPUTS + j``,
            times a Gaussian matrix (every cosine approximate, error about
            ``1 / sqrt(dim)``). ``"isometric"``: in slot ``j * P + p`` (outputs one after
            the other), times a matrix whose first `dim` rows are orthonormal: the
            fingerprints of nets of at most ``dim / P`` outputs keep their cosines exactly;
            the values of later outputs are projected by Gaussian rows.
        probes: read the outputs on the first `probes` probe inputs only (then P =
            `probes`); 0 = on all of them.
    """

    def __init__(self, dim: int, seed: int = 0, layout: str = "gaussian", probes: int = 0) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"fingerprint layout {layout!r}; expected one of {LAYOUTS}")
        self.dim, self.seed, self.layout, self.probes = dim, seed, layout, probes
        self._projections: dict[int, torch.Tensor] = {}

    def __call__(self, graphs: list[NeuralGraph]) -> np.ndarray:
        """``(len(graphs), dim)`` float32 unit rows: each graph's standardised output
        responses in their slots (zero-padded), times a fixed Gaussian matrix. Dot
        products of the rows approximate those of the unprojected, normalised vectors
        (Johnson–Lindenstrauss: error about ``1 / sqrt(dim)``)."""
        if not graphs:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = []
        for g in graphs:
            y = output_responses(g)[: self.probes or None, :MAX_OUTPUTS]
            y = normalise_columns(y, scale=True)
            slots = y.new_zeros((y.shape[0], MAX_OUTPUTS))
            slots[:, : y.shape[1]] = y
            rows.append(slots.T.flatten() if self.layout == "isometric" else slots.flatten())
        if len({r.numel() for r in rows}) > 1:
            raise ValueError("the graphs were built with different numbers of probes")
        x = torch.stack(rows)  # (n, P * MAX_OUTPUTS)
        return l2_normalise((x @ self.projection(x.shape[1])).numpy())

    def projection(self, n_in: int) -> torch.Tensor:
        """The ``(n_in, dim)`` float64 matrix: Gaussian, scaled by ``1 / sqrt(dim)``; in the
        isometric layout its first ``min(n_in, dim)`` rows replaced by orthonormal ones."""
        if n_in not in self._projections:
            g = torch.Generator().manual_seed(self.seed)
            z = torch.randn((n_in, self.dim), generator=g, dtype=torch.float64)
            z = z / self.dim**0.5
            if self.layout == "isometric":
                k = min(n_in, self.dim)
                q, r = torch.linalg.qr(z[:k].T)  # (dim, k), orthonormal columns
                z[:k] = (q * torch.sign(torch.diagonal(r))).T
            self._projections[n_in] = z
        return self._projections[n_in]


def fingerprints(
    graphs: list[NeuralGraph], dim: int, seed: int = 0, layout: str = "gaussian", probes: int = 0
) -> np.ndarray:
    """The fingerprints of `graphs` by a fresh `Fingerprinter` (see there)."""
    return Fingerprinter(dim, seed, layout, probes)(graphs)


#: Columns of `output_statistics`, in order.
STATISTICS = (
    "log_spread",  # log1p of the outputs' mean standard deviation over the probes
    "confidence",  # mean over probes of the top softmax probability
    "confidence_spread",  # its standard deviation over the probes
    "entropy",  # mean softmax entropy, divided by log(n_outputs)
    "log_margin",  # log1p of the mean gap between the two largest outputs
    "classes_used",  # share of the outputs that are the largest on some probe
    "single_output",  # 1 for a one-output net (the softmax columns are then 0)
)


def output_statistics(graphs: list[NeuralGraph]) -> torch.Tensor:
    """``(len(graphs), len(STATISTICS))`` float32: how decided each function is on the
    probes — the confidence, entropy and top-2 margin of its outputs' softmax, the
    outputs' spread, the share of outputs that win on some probe. Functions of the outputs
    alone, like the fingerprint; read by the quality head. Every output counts, not only
    the fingerprint's first `MAX_OUTPUTS`."""
    rows = [response_statistics(output_responses(g)) for g in graphs]
    return torch.tensor(rows, dtype=torch.float32).reshape(len(graphs), len(STATISTICS))


def response_statistics(y: torch.Tensor) -> list[float]:
    """The `STATISTICS` of one function's outputs `y` ``(P, n_outputs)`` on P inputs."""
    y = y.double()
    spread = float(torch.log1p(y.std(dim=0, correction=0).mean()))
    if y.shape[1] < 2:
        return [spread, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    p = torch.softmax(y, dim=1)
    top = p.max(dim=1).values
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(dim=1) / np.log(y.shape[1])
    two = torch.topk(y, 2, dim=1).values
    used = torch.unique(y.argmax(dim=1)).numel() / y.shape[1]
    return [
        spread,
        float(top.mean()),
        float(top.std(correction=0)),
        float(entropy.mean()),
        float(torch.log1p((two[:, 0] - two[:, 1]).mean())),
        used,
        0.0,
    ]


def combine(parts: Sequence[tuple[np.ndarray, float]]) -> np.ndarray:
    """The hybrid embedding: each part's rows, unit-normalised, times ``sqrt(weight)``,
    side by side. With weights summing to 1 its cosines are the weighted sum of the
    parts' cosines."""
    return np.hstack([np.sqrt(w) * l2_normalise(x) for x, w in parts])


def normalise_columns(y: torch.Tensor, scale: bool) -> torch.Tensor:
    """Centre each column of `y` (an output over the probes), and divide by its spread
    if `scale`. A column that does not vary beyond float noise becomes zero: its noise,
    scaled up, would differ between a net and a symmetric copy of it."""
    mean = y.mean(dim=0, keepdim=True)
    std = y.std(dim=0, correction=0, keepdim=True)
    varies = std > CONSTANT_TOL * (1.0 + mean.abs())
    y = torch.where(varies, y - mean, 0.0)
    return torch.where(varies, y / std.clamp_min(1e-300), 0.0) if scale else y
