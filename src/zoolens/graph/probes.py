"""Probe inputs: the same fixed inputs for every net with one input shape, whose
activations the graph's nodes carry (`zoolens.graph.net_to_graph`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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

    Computed at every call: a Sobol draw over a large input (an image's thousands of
    coordinates) takes a good part of a second, so whoever draws them for many nets keeps
    them in a `zoolens.graph.GraphCache` (`GraphCache.probes`).
    """
    if kind not in PROBE_KINDS:
        raise ValueError(f"probe kind {kind!r}; expected one of {', '.join(PROBE_KINDS)}")
    return _probes(tuple(input_shape), n, seed, kind)


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


def token_probes(probes: torch.Tensor, vocab: int | None) -> torch.Tensor:
    """Probes in [-1, 1] as token ids in ``[0, vocab)`` (float) for a net that reads token
    ids (`vocab` given), else unchanged: the same ids for every net with one (T, V)."""
    if vocab is None:
        return probes
    return ((probes + 1) / 2 * vocab).floor().clamp(0, vocab - 1)
