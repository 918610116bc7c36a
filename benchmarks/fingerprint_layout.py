"""Choose the fingerprint's layout on validation splits: mAP of the fingerprint alone.

    python benchmarks/fingerprint_layout.py --zoo ZOO [--zoo ZOO2 ...] [--probes 64]

For each layout of `zoolens.nn.fingerprint.LAYOUTS`, the leave-one-out task mAP of the
function fingerprint alone (nothing learned; the neural-graph encoder's probe inputs) on
the validation split of each zoo. Reads no test split and no foreign zoo.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from zoolens.eval import retrieval_metrics
from zoolens.nn import NeuralGraphEncoder
from zoolens.nn.fingerprint import LAYOUTS, Fingerprinter
from zoolens.train.data import load_split
from zoolens.zoo import Zoo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", action="append", required=True)
    ap.add_argument("--probes", type=int, default=64)
    ap.add_argument("--dim", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(1)
    enc = NeuralGraphEncoder({"n_probes": args.probes})
    print("| zoo (validation split) | models | " + " | ".join(LAYOUTS) + " |")
    print("|---|---:|" + "---:|" * len(LAYOUTS))
    for path in args.zoo:
        split = load_split(Zoo.open(path), "val")
        graphs = [enc.graph(n) for n in split.nets]
        maps = []
        for layout in LAYOUTS:
            fp = Fingerprinter(args.dim, 0, layout)(graphs)
            fp = np.hstack([fp, np.full((len(fp), 1), 1e-6, fp.dtype)])  # constant nets: 0 rows
            maps.append(retrieval_metrics(fp, split.groups)["mAP"])
        print(f"| {path} | {len(graphs)} | " + " | ".join(f"{m:.3f}" for m in maps) + " |")


if __name__ == "__main__":
    main()
