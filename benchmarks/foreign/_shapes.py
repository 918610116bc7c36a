"""The shapes-INR zoo: procedurally drawn shapes and the coordinate MLPs (ReLU and sine)
fitted to them, (x, y) in [-1, 1]² → intensity.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

SIDE = 28  # pixels per side of the fitted image
SHAPES = ("disc", "square", "triangle", "ring", "cross", "stripes")


def pixel_grid(side: int = SIDE) -> torch.Tensor:
    """Pixel-centre coordinates ``(side², 2)`` in [-1, 1]², row-major (y then x)."""
    c = (torch.arange(side, dtype=torch.float32) * 2 + 1) / side - 1
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def _sdf(shape: str, p: np.ndarray, size: float, rng: np.random.Generator) -> np.ndarray:
    """Signed distance (negative inside) of `shape` at local coordinates `p` ``(n, 2)``."""
    x, y = p[:, 0], p[:, 1]
    r = np.hypot(x, y)
    if shape == "disc":
        return r - size
    if shape == "square":
        return np.maximum(np.abs(x), np.abs(y)) - size * 0.8
    if shape == "triangle":
        normals = [
            (math.cos(a), math.sin(a))
            for a in (math.pi / 2 + k * 2 * math.pi / 3 for k in range(3))
        ]
        return np.max([nx * x + ny * y for nx, ny in normals], axis=0) - size * 0.5
    if shape == "ring":
        return np.abs(r - size) - size * float(rng.uniform(0.15, 0.3))
    if shape == "cross":
        t = size * float(rng.uniform(0.2, 0.35))
        bar1 = np.maximum(np.abs(x) - size, np.abs(y) - t)
        bar2 = np.maximum(np.abs(y) - size, np.abs(x) - t)
        return np.minimum(bar1, bar2)
    if shape == "stripes":
        period = float(rng.uniform(0.35, 0.6))
        return np.cos(2 * math.pi * x / period) * period / (2 * math.pi)
    raise ValueError(shape)


def draw_shape(shape: str, rng: np.random.Generator, side: int = SIDE) -> np.ndarray:
    """An anti-aliased image ``(side, side)`` in [0, 1] of `shape` at a random position,
    size, rotation and contrast."""
    p = pixel_grid(side).numpy().astype(np.float64)
    centre = rng.uniform(-0.35, 0.35, 2)
    angle = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    local = (p - centre) @ rot
    d = _sdf(shape, local, float(rng.uniform(0.3, 0.6)), rng)
    inside = 1.0 / (1.0 + np.exp(d * side))  # ~1-pixel soft edge
    fg, bg = rng.uniform(0.7, 1.0), rng.uniform(0.0, 0.2)
    return (bg + (fg - bg) * inside).reshape(side, side).astype(np.float32)


class ReluINR(nn.Sequential):
    def __init__(self, width: int, depth: int) -> None:
        layers: list[nn.Module] = []
        d = 2
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        super().__init__(*layers, nn.Linear(d, 1))


class SineLayer(nn.Module):
    """sin(w0 · (W x + b)) with SIREN initialisation."""

    def __init__(self, d_in: int, d_out: int, w0: float, first: bool) -> None:
        super().__init__()
        self.w0 = w0
        self.linear = nn.Linear(d_in, d_out)
        bound = 1.0 / d_in if first else math.sqrt(6.0 / d_in) / w0
        nn.init.uniform_(self.linear.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * self.linear(x))


class SineINR(nn.Sequential):
    def __init__(self, width: int, depth: int, w0: float) -> None:
        layers = [
            SineLayer(2 if i == 0 else width, width, w0 if i == 0 else 1.0, i == 0)
            for i in range(depth)
        ]
        super().__init__(*layers, nn.Linear(width, 1))


def draw_config(rng: np.random.Generator) -> dict[str, object]:
    family = "sine" if rng.random() < 0.5 else "relu"
    cfg: dict[str, object] = {
        "family": family,
        "activation": "sin" if family == "sine" else "relu",
        "width": int(rng.choice([16, 24, 32] if family == "sine" else [24, 32, 48])),
        "depth": int(rng.integers(2, 4)),
        "w0": float(rng.choice([10.0, 20.0, 30.0])) if family == "sine" else 0.0,
        "lr": float(rng.choice([1e-3, 2e-3]) if family == "sine" else rng.choice([3e-3, 5e-3])),
        "steps": int(rng.choice([300, 400, 500])),
    }
    return cfg


def arch_name(cfg: dict[str, object]) -> str:
    w0 = f"-w0{int(cfg['w0'])}" if cfg["family"] == "sine" else ""
    return f"{cfg['family']}-inr-w{cfg['width']}-d{cfg['depth']}{w0}"


def fit(cfg: dict[str, object], image: np.ndarray, seed: int) -> tuple[nn.Module, float]:
    """An INR of `cfg` fit to `image` by full-batch Adam on the pixel grid; its PSNR (dB)."""
    torch.manual_seed(seed)
    width, depth = int(cfg["width"]), int(cfg["depth"])
    model = (
        SineINR(width, depth, float(cfg["w0"]))
        if cfg["family"] == "sine"
        else ReluINR(width, depth)
    )
    coords, target = pixel_grid(image.shape[0]), torch.from_numpy(image).reshape(-1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))
    for _ in range(int(cfg["steps"])):
        loss = nn.functional.mse_loss(model(coords), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        mse = float(nn.functional.mse_loss(model(coords), target))
    return model.eval(), 10 * math.log10(1.0 / max(mse, 1e-12))
