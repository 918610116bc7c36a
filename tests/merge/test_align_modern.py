"""`align` on transformers and RNNs: attention heads, grouped-query groups and head dims, and
recurrent units with their gates, are matched in
the structure `zoolens.symmetry.attention` allows, with no per-architecture spec."""

from __future__ import annotations

import pytest
import torch

from zoolens.merge import align
from zoolens.merge.align import weight_distance
from zoolens.symmetry import random_exact_action
from zoolens.testing import SEQ_FAMILIES, seq_input, seq_net


@pytest.mark.parametrize("family", SEQ_FAMILIES)
@pytest.mark.parametrize("seed", [1, 2])
def test_a_random_exact_action_is_undone(family: str, seed: int) -> None:
    net = seq_net(family, torch.Generator().manual_seed(0))
    moved = random_exact_action(net, torch.Generator().manual_seed(seed))
    assert weight_distance(net, moved) > 1.0
    out = align(net, moved)
    x = seq_input(net, torch.Generator().manual_seed(3))
    assert torch.allclose(out(x), moved(x), rtol=1e-5, atol=1e-10)
    assert weight_distance(net, out) <= 1e-8


@pytest.mark.parametrize("family", ["llama", "vit"])
def test_independent_nets_come_closer_but_stay_apart(family: str) -> None:
    """Sensitivity: a net that is no symmetric copy keeps a distance after alignment."""
    a = seq_net(family, torch.Generator().manual_seed(0))
    b = seq_net(family, torch.Generator().manual_seed(5))
    out = align(a, b)
    x = seq_input(a, torch.Generator().manual_seed(3))
    assert torch.allclose(out(x), b(x), rtol=1e-5, atol=1e-10)
    assert 0.5 < weight_distance(a, out) < weight_distance(a, b)


class _Recurrent(torch.nn.Module):
    def __init__(self, cell: type[torch.nn.Module]) -> None:
        super().__init__()
        self.rnn = cell(3, 6, batch_first=True)
        self.head = torch.nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x.transpose(1, 2))
        return self.head(y[:, -1])


@pytest.mark.parametrize("cell", [torch.nn.LSTM, torch.nn.GRU])
def test_recurrent_hidden_units_are_aligned_with_their_gates(cell: type) -> None:
    from zoolens.ir import load_net

    torch.manual_seed(0)
    net = load_net(_Recurrent(cell).eval(), input_shape=(3, 5)).to(torch.float64)
    moved = random_exact_action(net, torch.Generator().manual_seed(1))
    out = align(net, moved)
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    assert torch.allclose(out(x), moved(x), rtol=1e-5, atol=1e-10)
    assert weight_distance(net, moved) > 0.5 and weight_distance(net, out) <= 1e-8
    torch.manual_seed(1)  # sensitivity: an independent net stays apart
    other = load_net(_Recurrent(cell).eval(), input_shape=(3, 5)).to(torch.float64)
    assert 0.5 < weight_distance(net, align(net, other)) < weight_distance(net, other)
