"""Helpers shared by the baselines: a model's tensors, flattened weights, fitted state."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from zoolens.errors import LoadError, ZoolensError
from zoolens.ir import Net, TensorSet
from zoolens.nn.base import Item, as_model


class NotFittedError(ZoolensError):
    """A learned baseline was asked to encode before `fit`."""


def model_tensors(model: Net | TensorSet) -> dict[str, torch.Tensor]:
    """The model's floating-point tensors in file order (a Net: ``"{op}.{role}"``, op order)."""
    tensors = model.state_dict() if isinstance(model, Net) else model.tensors
    return {k: v.detach() for k, v in tensors.items() if v.is_floating_point()}


def source_of(model: Net | TensorSet) -> str:
    return str(model.meta.get("source", type(model).__name__))


def flatten_weights(model: Net | TensorSet, length: int) -> tuple[torch.Tensor, int]:
    """The first `length` values of all tensors concatenated in file order, zero-padded.

    Only as many tensors as needed are read, so a huge model costs no more than `length`.

    Returns:
        ``(length,)`` float64 tensor and the number of real (non-padding) values.
    """
    out = torch.zeros(length, dtype=torch.float64)
    n = 0
    for t in model_tensors(model).values():
        if n >= length:
            break
        take = min(t.numel(), length - n)
        out[n : n + take] = t.reshape(-1)[:take].to(torch.float64)
        n += take
    return out, n


def flat_matrix(models: Iterable[Net | TensorSet], length: int) -> np.ndarray:
    """Stacked `flatten_weights`: ``(n, length)`` float64."""
    rows = [flatten_weights(m, length)[0].numpy() for m in models]
    return np.stack(rows) if rows else np.zeros((0, length))


def load_models(items: Iterable[Item]) -> list[Net | TensorSet]:
    """Items (Nets, TensorSets or paths) as loaded models."""
    return [as_model(i) for i in items]


def require_net(model: Net | TensorSet, encoder: str) -> Net:
    """`model` as a Net, or a LoadError saying that `encoder` needs the wiring."""
    if not isinstance(model, Net):
        raise LoadError(
            f"{source_of(model)}: the {encoder!r} encoder runs the network and "
            "needs its wiring; bare weights (a TensorSet) cannot be run"
        )
    return model


def pad_columns(z: np.ndarray, dim: int) -> np.ndarray:
    """Zero-pad (or truncate) the columns of `z` ``(n, m)`` to ``(n, dim)``."""
    out = np.zeros((z.shape[0], dim), dtype=np.float64)
    m = min(dim, z.shape[1])
    out[:, :m] = z[:, :m]
    return out


def to_tensor(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
