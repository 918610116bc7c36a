"""The render part of an embedding: a coordinate network drawn as an image, then classified.

A net that reads a point of the plane (input shape ``(2,)``) is an implicit neural
representation (INR) of an image: its values on the pixel grid are the image it stores.
The fingerprint samples it at scattered probe points and an MLP reads them; a small
convolutional net over the drawn image sees strokes wherever they sit, and tells the
stored images' classes apart better (docs/benchmark: "The render head"). `renders` draws
every coordinate net on a ``side x side`` grid of pixel centres over [-1, 1]² (x along
the columns, y down the rows: the convention INRs are fitted with), its first
`RENDER_CHANNELS` outputs as channels, each standardised over the pixels. Other nets are
not drawn; their render part is one shared vector orthogonal to every drawn net's
(`NeuralGraphEncoder.render_probabilities`), so it reorders none of their neighbours
among themselves. A drawing is a function of the net's function alone: exactly invariant
to every weight symmetry.
`RenderHead` is the classifier, fit on a zoo by `zoolens.train.function.fit_render_head`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from zoolens.ir import Net, TensorSet
from zoolens.nn.fingerprint import normalise_columns

RENDER_INPUT = (2,)  # the input shape of the nets that are drawn
RENDER_CHANNELS = 3  # outputs drawn as channels (the rest are dropped, missing ones zero)


def is_coordinate_net(model: Net | TensorSet) -> bool:
    """Whether `model` is a net reading a point of the plane (and so is drawn)."""
    return isinstance(model, Net) and tuple(model.input_shape) == RENDER_INPUT


def renders(models: Sequence[Net | TensorSet], side: int) -> tuple[np.ndarray, np.ndarray]:
    """The drawings ``(n, RENDER_CHANNELS, side, side)`` float32 of `models` and which of
    them are drawn ``(n,)`` bool (the coordinate nets; the others' rows are zero). Each
    channel is centred and scaled to unit spread over the pixels; a constant one is zero."""
    images = np.zeros((len(models), RENDER_CHANNELS, side, side), dtype=np.float32)
    drawn = np.array([is_coordinate_net(m) for m in models], dtype=bool)
    grid = _pixel_centres(side)
    with torch.no_grad():
        for i in np.flatnonzero(drawn):
            net = models[int(i)]
            assert isinstance(net, Net)  # is_coordinate_net
            p = next(net.parameters(), None)
            y = net(grid.to(p.dtype if p is not None else torch.float32)).double()
            y = normalise_columns(y.reshape(side * side, -1)[:, :RENDER_CHANNELS], scale=True)
            images[i, : y.shape[1]] = y.T.reshape(-1, side, side).float().numpy()
    return images, drawn


@functools.lru_cache(maxsize=4)
def _pixel_centres(side: int) -> torch.Tensor:
    """``(side * side, 2)`` float64 (x, y) pixel centres over [-1, 1]², row-major."""
    axis = torch.linspace(-1, 1, side, dtype=torch.float64)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=1)


class RenderHead(nn.Module):
    """A small CNN from drawings to class logits: two 3 x 3 convolution + pooling stages,
    pooled to 7 x 7 whatever the side, then an MLP.

    Shapes:
        x: ``(n, RENDER_CHANNELS, side, side)`` → ``(n, n_classes)``.
    """

    def __init__(self, n_classes: int, dropout: float = 0.3, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(RENDER_CHANNELS, width, 3, padding=1),
            nn.GELU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.GELU(),
            nn.AdaptiveMaxPool2d(7),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(2 * width * 49, 4 * width),
            nn.GELU(),
            nn.Linear(4 * width, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out
