"""Encoding speed and peak memory, one clean subprocess per case.

    python benchmarks/encode_speed.py            # all cases, a table
    python benchmarks/encode_speed.py --case mlp-2k   # one case, one JSON line
    python benchmarks/encode_speed.py --threads 1     # encode(threads=1) (default: torch's)
    python benchmarks/encode_speed.py --shipped       # the shipped trained encoders' configs

``mlp-2k-lw`` is the same zoo through the LayerwiseEncoder, for comparison; ``gpt-30k`` are
small GPT-2-like transformers (`zoolens.testing.seq_net`). ``× fwd`` (issue 28) is the embedding
time per model over the time of running that model on its probe inputs (the encoder's probe
count, at least 256 inputs) — what embedding costs in forward passes. Without
``--shipped`` the encoders are untrained ones of the code's default configuration; with it,
the shipped trained ones (``load_encoder("default")``, ``load_encoder("layerwise")``), whose
configurations (e.g. probe count) may differ.

Targets (2 CPU cores, issue 4): ≥ 500 models/s batched for ≤ 10k-parameter models;
≤ 1 s for a 1M-parameter CNN; ≤ 60 s and ≤ 4 GB for a 22M-parameter bare checkpoint.
Peak memory is the process's maximum RSS (``ru_maxrss``), which includes torch itself;
``+MB`` is the growth during encoding over the peak before it. ``cpu s/model`` (user +
system, all threads) is less sensitive than wall time to other processes on the machine;
the load average is printed for that reason. On a loaded machine, torch's default of one
intra-op thread per core can be several times slower than ``--threads 1``.

Where the time goes (mlp-2k): nets of one architecture have their graphs built together
(`zoolens.graph.stacked`), so nearly all of it is message passing. Its per-edge work —
about 4,200 multiply-adds per weight over the default 3 layers (node width 32, edge width
16), plus gathers, SiLU, max and LayerNorm over the edges — against one multiply-add per
weight and probe in the forward pass (256 probes) puts ``× fwd`` for an MLP at ≥ 16 with
this encoder's widths, whatever the implementation. ``benchmarks/message_passing.py``
compares the hand-written message passing with PyTorch Geometric.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

CASES = ("mlp-2k", "mlp-2k-lw", "cnn-50k", "cnn-1m", "gpt-30k", "bare-22m")
TARGETS = {
    "mlp-2k": "≥ 500 models/s",
    "gpt-30k": "—",
    "mlp-2k-lw": "≥ 500 models/s",
    "cnn-50k": "—",
    "cnn-1m": "≤ 1 s/model",
    "bare-22m": "≤ 60 s, ≤ 4 GB",
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _nets(make: Callable[[], Any], shape: tuple[int, ...], n: int, seed: int) -> list[Any]:
    """`n` Nets of one architecture with independent random weights."""
    import torch

    from zoolens.ir import load_net

    torch.manual_seed(seed)  # benchmark process only: module init below
    base = load_net(make().eval(), input_shape=shape)
    g = torch.Generator().manual_seed(seed)
    nets = []
    for _ in range(n):
        net = base.clone()
        for op in net.ops:
            op.params = {k: torch.randn(v.shape, generator=g) * 0.1 for k, v in op.params.items()}
        nets.append(net)
    return nets


def _mlp() -> Any:
    from torch import nn

    return nn.Sequential(
        nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)
    )


def _cnn(widths: tuple[int, ...]) -> Callable[[], Any]:
    def make() -> Any:
        from torch import nn

        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers += [nn.Conv2d(widths[i], widths[i + 1], 3, padding=1), nn.ReLU()]
            if i < len(widths) - 2:
                layers.append(nn.MaxPool2d(2))
        return nn.Sequential(
            *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], 10)
        )

    return make


def _seq_nets(n: int) -> list[Any]:
    """`n` GPT-2-like nets (width 32, 4 heads, 2 blocks, vocabulary 500, 16 positions), float32."""
    import torch

    from zoolens.testing import seq_net
    from zoolens.testing.seq_nets import SeqConfig

    cfg = SeqConfig(
        vocab=500, width=32, heads=4, kv_heads=4, head_dim=8, ffn=64, max_len=16, seq_len=16
    )
    return [
        seq_net("gpt2", torch.Generator().manual_seed(i), cfg).to(torch.float32) for i in range(n)
    ]


def _forward_seconds(nets: list[Any], enc: Any) -> float:
    """Seconds to run every net once on its probe inputs (the encoder's count, ≥ 256)."""
    import torch

    from zoolens.graph import default_probes
    from zoolens.graph.probes import token_probes
    from zoolens.graph.seq import token_vocab

    n = max(256, int(getattr(getattr(enc, "config", None), "n_probes", 0) or 0))
    net = nets[0]
    x = token_probes(
        default_probes(tuple(net.input_shape), n=n), token_vocab(net.consumers(net.input))
    )
    x = x.to(next(net.parameters()).dtype)
    t0 = time.perf_counter()
    with torch.no_grad():
        for net in nets:
            net(x)
    return time.perf_counter() - t0


def _bare_22m() -> Any:
    import torch

    from zoolens.ir import TensorSet

    g = torch.Generator().manual_seed(0)
    t = {}
    for i in range(5):
        t[f"blocks.{i}.weight"] = torch.randn(2048, 2048, generator=g) * 0.02
        t[f"blocks.{i}.bias"] = torch.randn(2048, generator=g) * 0.02
    t["head.weight"] = torch.randn(512, 2048, generator=g) * 0.02
    t["head.bias"] = torch.zeros(512)
    return TensorSet(t, {"source": "bare-22m"})


def _encoder(kind: str, shipped: bool) -> Any:
    """The ``neural-graph`` or ``layerwise`` encoder: an untrained default, or the shipped one."""
    from zoolens.nn import LayerwiseEncoder, NeuralGraphEncoder, load_encoder

    if shipped:
        return load_encoder("default" if kind == "neural-graph" else kind)
    return NeuralGraphEncoder() if kind == "neural-graph" else LayerwiseEncoder()


def run_case(case: str, threads: int = 0, shipped: bool = False) -> dict[str, Any]:
    """Run one case in this process (`threads` > 0: that many torch intra-op threads)."""
    import torch

    from zoolens.nn.base import torch_threads

    n_threads = threads if threads > 0 else None  # explicit, as `encode(threads=)` takes it
    if case == "mlp-2k":
        nets, kind, batch = _nets(_mlp, (16,), 1024, 0), "neural-graph", 256
    elif case == "mlp-2k-lw":
        nets, kind, batch = _nets(_mlp, (16,), 1024, 0), "layerwise", 256
    elif case == "cnn-50k":
        nets, kind, batch = _nets(_cnn((3, 16, 32, 64, 32)), (3, 32, 32), 64, 1), "neural-graph", 32
    elif case == "cnn-1m":
        nets, kind, batch = (
            _nets(_cnn((3, 64, 128, 256, 256)), (3, 32, 32), 3, 2),
            "neural-graph",
            1,
        )
    elif case == "gpt-30k":
        nets, kind, batch = _seq_nets(64), "neural-graph", 16
    elif case == "bare-22m":
        nets, kind, batch = [_bare_22m()], "layerwise", 1
    else:
        raise SystemExit(f"unknown case {case!r}; known: {CASES}")
    enc = _encoder(kind, shipped)
    params = nets[0].num_params()
    if case != "bare-22m":
        enc.encode(nets[: min(batch, 4)], batch_size=batch, threads=n_threads)  # warm-up
    rss0, cpu0 = _rss_mb(), _cpu_s()
    t0 = time.perf_counter()
    enc.encode(nets, batch_size=batch, threads=n_threads)
    seconds, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    with torch_threads(n_threads):
        forward = _forward_seconds(nets, enc) if case != "bare-22m" else float("nan")
        used_threads = torch.get_num_threads()
    return {
        "case": case,
        "encoder": enc.name,
        "params": params,
        "models": len(nets),
        "batch": batch,
        "seconds": seconds,
        "models_per_s": len(nets) / seconds,
        "s_per_model": seconds / len(nets),
        "forward_ratio": seconds / forward if forward == forward else float("nan"),
        "cpu_s_per_model": cpu / len(nets),
        "peak_rss_mb": _rss_mb(),
        "encode_rss_mb": _rss_mb() - rss0,
        "threads": used_threads,
        "load_avg_1min": os.getloadavg()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=CASES, help="run one case here and print JSON")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    ap.add_argument("--shipped", action="store_true", help="the shipped trained encoders")
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.threads, args.shipped)))
        return
    import torch

    threads = args.threads if args.threads > 0 else torch.get_num_threads()
    print(
        f"torch {torch.__version__}, {threads} threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
        f"{'shipped' if args.shipped else 'untrained default'} encoders"
    )
    print(
        f"{'case':10} {'encoder':13} {'params':>10} {'models/s':>9} {'s/model':>9} "
        f"{'cpu s/model':>11} {'× fwd':>6} {'peak MB':>8} {'+MB':>6}  target"
    )
    for case in CASES:
        r = subprocess.run(
            [sys.executable, __file__, "--case", case, "--threads", str(args.threads)]
            + ["--shipped"] * args.shipped,
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            print(f"{case:10} failed: {r.stderr.strip().splitlines()[-1:]}")
            continue
        f = json.loads(r.stdout.strip().splitlines()[-1])
        print(
            f"{case:10} {f['encoder']:13} {f['params']:>10,} {f['models_per_s']:>9.1f} "
            f"{f['s_per_model']:>9.3f} {f['cpu_s_per_model']:>11.3f} {f['forward_ratio']:>6.0f} "
            f"{f['peak_rss_mb']:>8.0f} {f['encode_rss_mb']:>6.0f}  {TARGETS[case]}"
        )


if __name__ == "__main__":
    main()
