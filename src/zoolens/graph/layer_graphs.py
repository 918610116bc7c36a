"""Bipartite graphs of bare weight tensors, for checkpoints whose wiring is unknown."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zoolens.ir import TensorSet


@dataclass
class LayerGraph:
    """One weight tensor as a bipartite graph: rows × columns, kernel axes as features.

    Shapes:
        weight: ``(rows, cols, k)`` with k = product of the remaining axes (1 for
        matrices); bias: ``(rows,)`` or None.
    """

    name: str
    weight: torch.Tensor
    bias: torch.Tensor | None


def tensors_to_layer_graphs(tensors: TensorSet, max_kernel: int = 9) -> list[LayerGraph]:
    """Each ≥2-D floating tensor as a `LayerGraph`, in file order; a following 1-D tensor
    of matching length (named ``*.bias`` or directly after) becomes its bias.
    """
    items = [(k, v) for k, v in tensors.items() if v.is_floating_point()]
    graphs: list[LayerGraph] = []
    for i, (name, t) in enumerate(items):
        if t.dim() < 2 or t.numel() == 0:
            continue
        w = t.detach().reshape(t.shape[0], t.shape[1], -1).to(torch.float32)  # (rows, cols, k)
        if w.shape[2] > max_kernel:
            w = torch.nn.functional.adaptive_avg_pool1d(
                w.reshape(-1, 1, w.shape[2]), max_kernel
            ).reshape(w.shape[0], w.shape[1], -1)
        bias = None
        if i + 1 < len(items):
            nxt = items[i + 1][1]
            if nxt.dim() == 1 and nxt.shape[0] == t.shape[0]:
                bias = nxt.detach().to(torch.float32)
        graphs.append(LayerGraph(name, w, bias))
    return graphs
