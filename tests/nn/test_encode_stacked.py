"""NeuralGraphEncoder.encode builds the graphs of nets of one architecture together
(`zoolens.graph.stacked`) and lays the batch out without per-net graphs: its embeddings
equal those of the per-net route (`net_to_graph` per net, `batch_graphs`, the module) to
1e-5, on mixed, shuffled batches of every family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoolens.ir import Net
from zoolens.nn import NeuralGraphConfig, NeuralGraphEncoder
from zoolens.nn.base import l2_normalise
from zoolens.nn.fingerprint import combine
from zoolens.testing import FAMILIES, cosine, random_net


def _zoo(seed: int, per_family: int = 3) -> list[Net]:
    """`per_family` nets of one random architecture per family, shuffled."""
    g = torch.Generator().manual_seed(seed)
    nets = []
    for family in FAMILIES:
        base = random_net(family, torch.Generator().manual_seed(seed + 1))
        for _ in range(per_family):
            net = base.clone()
            for op in net.ops:  # new weights; positive factors keep BatchNorm variances valid
                op.params = {
                    k: v * (0.5 + torch.rand(v.shape, generator=g, dtype=v.dtype))
                    for k, v in op.params.items()
                }
            nets.append(net)
    order = torch.randperm(len(nets), generator=g).tolist()
    return [nets[i] for i in order]


def _per_net(enc: NeuralGraphEncoder, nets: list[Net]) -> np.ndarray:
    """The route without stacks: one graph per net, `batch_graphs`, the module."""
    with torch.no_grad():
        enc.module.eval()
        graphs = enc.graphs(nets)
        z = enc.forward(graphs).double().numpy()
    w = enc.config.fingerprint
    return l2_normalise(combine([(z, 1 - w), (enc.fingerprints(graphs), w)]) if w else z)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("config", [{}, {"fingerprint": 0.3, "seed": 4}])
def test_encode_equals_the_per_net_route(seed: int, config: dict[str, object]) -> None:
    enc = NeuralGraphEncoder(NeuralGraphConfig(**config))  # type: ignore[arg-type]
    nets = _zoo(seed)
    z = enc.encode(nets, batch_size=8)
    assert np.abs(z - _per_net(enc, nets)).max() <= 1e-5
    assert enc.graph_cache.stats()["architectures"] >= len(FAMILIES)


def test_rows_do_not_depend_on_their_batch() -> None:
    """Sensitivity beside the identity: rows of different nets differ, and a net's row is
    the same alone as among others of its architecture."""
    enc, nets = NeuralGraphEncoder(), _zoo(5)
    z = enc.encode(nets, batch_size=len(nets))
    alone = enc.encode([nets[0]])
    assert cosine(z[0], alone[0]) > 0.99999
    mates = [i for i, n in enumerate(nets) if n.arch_key() == nets[0].arch_key() and i != 0]
    assert all(np.linalg.norm(z[i] - z[0]) > 1e-4 for i in mates)
