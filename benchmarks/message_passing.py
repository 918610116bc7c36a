"""The encoder's message passing: the hand-written runs (`zoolens.nn.edge_runs`) against
PyTorch Geometric and plain ``scatter_reduce``, on the same batched graphs, same weights.

    python benchmarks/message_passing.py                # mlp-2k and cnn-50k batches
    python benchmarks/message_passing.py --threads 1 --repeats 5

Each implementation computes the node states of `NeuralGraphNet.node_states` (the default
untrained encoder's 3 layers) without autograd; the figures are CPU milliseconds per graph,
the least over repeats (less sensitive to other processes than wall time), and the largest
difference from the hand-written states. PyG is
optional (``pip install torch_geometric``): without its compiled extras (pyg-lib,
torch-scatter, not on PyPI) it aggregates with torch's ``scatter_reduce``, as here.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from zoolens.graph import GraphBatch
from zoolens.graph.stacked import batch_stacks
from zoolens.nn import NeuralGraphEncoder
from zoolens.nn.edge_runs import degrees
from zoolens.nn.gnn import MessagePassing, NeuralGraphNet, scatter

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import encode_speed  # the benchmark's zoos

States = Callable[[NeuralGraphNet, GraphBatch], torch.Tensor]


def scatter_states(module: NeuralGraphNet, b: GraphBatch) -> torch.Tensor:
    """Node states with gathers and ``scatter_reduce`` over the whole batch."""
    h, e = module.embed_node_states(b), module.embed_edges(b)
    src, dst = b.edge_index
    n = h.shape[0]
    out_deg, in_deg = degrees(b.edge_index, n, h.dtype)
    for i, layer in enumerate(module.mp):
        assert isinstance(layer, MessagePassing)
        d = h.shape[1]
        hf, hb = layer.node_proj(h).split(d, dim=1)
        ef, eb = layer.edge_proj(e).split(d, dim=1)
        aggs = [h]
        for m, at, deg in (
            (F.silu(hf[src] + ef), dst, in_deg),
            (F.silu(hb[dst] + eb), src, out_deg),
        ):
            total = scatter(m, at, n, "sum")
            aggs += [total, total / deg, scatter(m, at, n, "amax")]
        h = layer.norm_h(h + layer.update(torch.cat(aggs, dim=1)))
        if i < len(module.mp) - 1:
            hs, hd = layer.edge_node_proj(h).split(e.shape[1], dim=1)
            e = layer.norm_e(e + layer.edge_out(F.silu(hs[src] + hd[dst] + layer.edge_self(e))))
    return h


try:
    from torch_geometric.nn import MessagePassing as PygMessagePassing

    class Directed(PygMessagePassing):  # type: ignore[misc]
        """``silu(x_j + msg)`` aggregated by sum, mean and max (concatenated)."""

        def __init__(self, flow: str) -> None:
            super().__init__(aggr=["sum", "mean", "max"], flow=flow)

        def forward(
            self, x: torch.Tensor, edge_index: torch.Tensor, msg: torch.Tensor
        ) -> torch.Tensor:
            out: torch.Tensor = self.propagate(edge_index, x=x, msg=msg)
            return out

        def message(self, x_j: torch.Tensor, msg: torch.Tensor) -> torch.Tensor:
            return F.silu(x_j + msg)

except ImportError:
    Directed = None


def pyg_states() -> States | None:
    """Node states by a `torch_geometric.nn.MessagePassing` layer (sum, mean, max
    aggregation in both directions), or None without PyG."""
    if Directed is None:
        return None
    fwd, bwd = Directed("source_to_target"), Directed("target_to_source")

    def states(module: NeuralGraphNet, b: GraphBatch) -> torch.Tensor:
        h, e = module.embed_node_states(b), module.embed_edges(b)
        src, dst = b.edge_index
        for i, layer in enumerate(module.mp):
            assert isinstance(layer, MessagePassing)
            d = h.shape[1]
            hf, hb = layer.node_proj(h).split(d, dim=1)
            ef, eb = layer.edge_proj(e).split(d, dim=1)
            f = fwd(hf, b.edge_index, ef)  # (N, 3d): sum, mean, max
            r = bwd(hb, b.edge_index, eb)
            h = layer.norm_h(h + layer.update(torch.cat([h, f, r], dim=1)))
            if i < len(module.mp) - 1:
                hs, hd = layer.edge_node_proj(h).split(e.shape[1], dim=1)
                u = hs[src] + hd[dst] + layer.edge_self(e)
                e = layer.norm_e(e + layer.edge_out(F.silu(u)))
        return h

    return states


def _batch(case: str, enc: NeuralGraphEncoder) -> GraphBatch:
    if case == "mlp-2k":
        nets = encode_speed._nets(encode_speed._mlp, (16,), 256, 0)
    elif case == "cnn-50k":
        nets = encode_speed._nets(encode_speed._cnn((3, 16, 32, 64, 32)), (3, 32, 32), 32, 1)
    else:
        raise SystemExit(f"unknown case {case!r}")
    stacks, _ = enc.stacks(nets)
    return batch_stacks(stacks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append", choices=("mlp-2k", "cnn-50k"))
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # this benchmark process only
    enc = NeuralGraphEncoder()
    module = enc.module.eval()
    assert isinstance(module, NeuralGraphNet)
    impls: dict[str, States | None] = {
        "zoolens runs": lambda m, b: m.node_states(b),
        "scatter_reduce": scatter_states,
        "PyG": pyg_states(),
    }
    print(f"torch {torch.__version__}, {args.threads} threads; CPU ms per graph (least of repeats)")
    for case in args.case or ["mlp-2k", "cnn-50k"]:
        b = _batch(case, enc)
        with torch.no_grad():
            ref = module.node_states(b)
            for name, fn in impls.items():
                if fn is None:
                    print(f"{case:8} {name:15} not installed")
                    continue
                times = []
                for _ in range(args.repeats):
                    t0 = time.process_time()
                    out = fn(module, b)
                    times.append(time.process_time() - t0)
                ms = 1e3 * min(times) / b.num_graphs
                diff = float((out - ref).abs().max())
                print(f"{case:8} {name:15} {ms:8.3f} ms/graph   max |diff| {diff:.1e}")


if __name__ == "__main__":
    main()
