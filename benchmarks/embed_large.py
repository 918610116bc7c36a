"""Embed BERT-style checkpoints of growing size with the default encoder: time and peak memory.

Each size is a randomly initialised ``BertModel`` saved with ``save_pretrained`` into a temporary
directory, then embedded in a fresh subprocess (so peak memory is that run's alone) by
``zoolens embed``'s library path: `load_net` + the default encoder. Prints one row per size and
format: parameters, file size, load(+trace) time, embed time, peak RSS and its multiple of the
file size. ``--formats hf`` reads the Hugging Face directory (transformers loads it, torch.export
traces it); ``zoolens`` first converts it to a zoolens directory (``Net.save``: arch.json +
model.safetensors, read memory-mapped tensor by tensor), so the child only reads that.
``base MB`` is the RSS after imports, ``load MB`` the peak right after loading (before the
encoder); ``--threads 0`` stops there.

    python benchmarks/embed_large.py [--sizes tiny,small,22m] [--formats hf,zoolens] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

SIZES = {  # hidden, layers, intermediate, heads (vocab 30522, 512 positions: BERT's)
    "tiny": (64, 2, 256, 2),
    "small": (128, 2, 512, 2),
    "medium": (256, 4, 1024, 4),
    "22m": (384, 6, 1536, 6),
    "110m": (768, 12, 3072, 12),  # BERT-base; not in the default --sizes
}


def _peak_mb() -> float:
    """This process's peak RSS in MB. ``VmHWM``, not ``ru_maxrss``: Linux carries the parent's
    RSS at fork into a child's ``ru_maxrss`` across exec, and the parent holds the model."""
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(path: str, threads: int) -> None:
    import numpy as np
    import torch

    from zoolens.ir import load_net
    from zoolens.nn import load_encoder

    base_mb = _peak_mb()  # interpreter, torch and zoolens imported
    t0 = time.perf_counter()
    net = load_net(path)
    t1 = time.perf_counter()
    load_mb = _peak_mb()
    z = load_encoder().encode([net], threads=threads) if threads else np.zeros((1, 0))
    t2 = time.perf_counter()
    peak_mb = _peak_mb()
    print(
        json.dumps(
            {
                "params": net.trainable_params(),
                "load_s": t1 - t0,
                "embed_s": t2 - t1,
                "peak_mb": peak_mb,
                "load_peak_mb": load_mb,
                "base_mb": base_mb,
                "dim": int(z.shape[1]),
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="tiny,small,medium,22m")
    ap.add_argument("--formats", default="hf", help="hf and/or zoolens (see above)")
    ap.add_argument("--threads", type=int, default=2, help="0: load only, do not embed")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child(a.child, a.threads)
        return
    import torch
    from transformers import BertConfig, BertModel

    print(
        f"{'size':8} {'format':8} {'params':>11} {'file MB':>8} {'load s':>7} {'embed s':>8} "
        f"{'base MB':>8} {'load MB':>8} {'peak MB':>8} {'peak/file':>9}"
    )
    for name in a.sizes.split(","):
        hidden, layers, inter, heads = SIZES[name]
        torch.manual_seed(0)
        cfg = BertConfig(
            hidden_size=hidden,
            num_hidden_layers=layers,
            intermediate_size=inter,
            num_attention_heads=heads,
        )
        with tempfile.TemporaryDirectory() as d:
            BertModel(cfg).eval().save_pretrained(os.path.join(d, "hf"))
            for fmt in a.formats.split(","):
                _measure(name, fmt, d, a.threads)


def _measure(name: str, fmt: str, d: str, threads: int) -> None:
    """One row: embed the `fmt` copy of the checkpoint in `d` in a fresh subprocess."""
    path = os.path.join(d, fmt)
    if not os.path.isdir(path):  # zoolens: converted once, outside the measured process
        from zoolens.ir import load_net

        load_net(os.path.join(d, "hf")).save(path)
    mb = os.path.getsize(os.path.join(path, "model.safetensors")) / 2**20
    out = subprocess.run(
        [sys.executable, __file__, "--child", path, "--threads", str(threads)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        print(f"{name:8} {fmt:8} failed: {out.stderr.strip().splitlines()[-1]}")
        return
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"{name:8} {fmt:8} {r['params']:>11,} {mb:>8.1f} {r['load_s']:>7.1f} "
        f"{r['embed_s']:>8.1f} {r['base_mb']:>8.0f} {r['load_peak_mb']:>8.0f} {r['peak_mb']:>8.0f} "
        f"{r['peak_mb'] / mb:>9.1f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
