"""`TensorSet`: named weight tensors of a checkpoint whose wiring is unknown."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from zoolens.errors import InvalidWeightsError


@dataclass
class TensorSet:
    """The floating-point tensors of a checkpoint, in file order.

    Args:
        tensors: name → tensor, in the order the file stores them.
        meta: provenance (source path, format, unsupported ops for ONNX files).
    """

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tensors)

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        yield from self.tensors.items()

    def num_params(self) -> int:
        return sum(int(t.numel()) for t in self.tensors.values())

    def check_finite(self, source: str = "tensors") -> None:
        for name, t in self.tensors.items():
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise InvalidWeightsError(f"{source}: tensor {name} contains NaN or Inf values")

    def content_hash(self) -> str:
        return hash_tensors(self.tensors.items(), b"tensorset")

    def summary(self) -> list[dict[str, Any]]:
        return [
            {
                "name": k,
                "shape": list(v.shape),
                "dtype": str(v.dtype).replace("torch.", ""),
                "num_params": int(v.numel()),
            }
            for k, v in self.tensors.items()
        ]


def hash_tensors(items: Any, salt: bytes = b"") -> str:
    """SHA-256 over names, shapes, dtypes and bytes of `(name, tensor)` pairs."""
    h = hashlib.sha256(salt)
    for name, t in items:
        t = t.detach().contiguous().cpu()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
