"""Bare weight tensors as bipartite layer graphs."""

from __future__ import annotations

import torch

from zoolens.graph import tensors_to_layer_graphs
from zoolens.ir import TensorSet


def test_layer_graphs_pair_biases_and_skip_empty_and_1d() -> None:
    ts = TensorSet(
        {
            "empty": torch.zeros(0, 3),
            "fc.weight": torch.randn(4, 3),
            "fc.bias": torch.randn(4),
            "conv.weight": torch.randn(5, 4, 3, 3),
            "norm": torch.randn(7),
        }
    )
    graphs = tensors_to_layer_graphs(ts)
    assert [g.name for g in graphs] == ["fc.weight", "conv.weight"]
    assert graphs[0].weight.shape == (4, 3, 1) and graphs[0].bias is not None
    assert torch.equal(graphs[0].bias, ts.tensors["fc.bias"])
    assert graphs[1].weight.shape == (5, 4, 9) and graphs[1].bias is None
