"""Choose the weight w of the function fingerprint of a trained neural-graph encoder on the
validation split (the learned part weighs 1 - w).

    python benchmarks/fingerprint_weight.py --zoo ZOO [--zoo ZOO2 ...] --encoder DIR
        [--heldout-encoder DIR2 --heldout-tasks a,b,c --heldout-families f]
        [--weights 0,0.1,...] [--layout isometric] [--fingerprint-probes 0,64] [--save DIR]

``--encoder DIR`` is a saved encoder (a training run's ``RUN/best``, or a shipped one such
as ``src/zoolens/weights/neural-graph``); ``--heldout-encoder DIR2`` its counterpart
trained without the held-out tasks and families.

The criterion, fixed before looking: validation mAP of every validation query (encoder
DIR; gallery: every validation model of the same zoo), averaged over the zoos; with a
counterpart, the mean of that and of the validation mAPs of the queries of the held-out
tasks and of the held-out families (encoder DIR2). `--layout` sets the fingerprint's layout
(`zoolens.nn.fingerprint.LAYOUTS`) before anything is measured; `--fingerprint-probes` adds
the fingerprint's probe count (its first k probes; 0 = all) to the grid, chosen jointly
with the weight by the same criterion. The test split is not
read (`benchmarks/ship_encoder.py` reads it once, for the shipped encoder). `--save DIR`
writes the encoder (DIR/trained) and its counterpart (DIR/heldout) with the chosen weight.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from zoolens.bench.measure import subset_retrieval
from zoolens.eval import retrieval_metrics
from zoolens.nn import NeuralGraphEncoder, load_encoder
from zoolens.nn.fingerprint import Fingerprinter, combine
from zoolens.train.data import group_labels
from zoolens.zoo import Zoo


def parts(
    enc: NeuralGraphEncoder, nets: list, probe_counts: list[int], batch: int = 64
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The learned embeddings of `nets` and their fingerprints on the first k probes for
    each k of `probe_counts` (computed once per encoder; every weight is then a
    recombination)."""
    cfg = enc.config
    makers = {
        k: Fingerprinter(cfg.fingerprint_dim, cfg.seed, cfg.fingerprint_layout, k)
        for k in probe_counts
    }
    learned, fps = [], {k: [] for k in probe_counts}
    for s in range(0, len(nets), batch):
        graphs = enc.graphs(nets[s : s + batch])
        with torch.no_grad():
            learned.append(enc.forward(graphs).double().numpy())
        for k, make in makers.items():
            fps[k].append(make(graphs))
    return np.concatenate(learned), {k: np.concatenate(v) for k, v in fps.items()}


def weighed(learned: np.ndarray, fp: np.ndarray, w: float) -> np.ndarray:
    """The embeddings at fingerprint weight `w` (as `NeuralGraphEncoder.embed_batch`)."""
    return learned if not w else combine([(learned, 1.0 - w), (fp, w)])


def val_scores(
    zoo: Zoo, encs: dict, args: argparse.Namespace, grid: list[tuple[int, float]]
) -> list:
    """Per (probe count, weight) of `grid`: validation mAP of every query (and, with a
    counterpart, of the held-out tasks' and families' queries)."""
    m = zoo.manifest
    df = m[m["split"] == "val"].reset_index(drop=True)
    nets = [zoo.load(str(i)).to(torch.float32) for i in df["id"]]
    labels = group_labels(df)
    counts = sorted({k for k, _ in grid})
    split = {key: parts(enc, nets, counts) for key, enc in encs.items()}
    held = {}
    if "heldout" in encs:
        held = {
            "tasks": df["task"].isin(args.heldout_tasks.split(",")).to_numpy(),
            "families": df["family"].isin(args.heldout_families.split(",")).to_numpy(),
        }
    rows = []
    for k, w in grid:
        learned, fps = split["trained"]
        row = [float(retrieval_metrics(weighed(learned, fps[k], w), labels)["mAP"])]
        if held:
            h = weighed(split["heldout"][0], split["heldout"][1][k], w)
            row += [float(subset_retrieval(h, labels, q)["mAP"]) for q in held.values()]
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--zoo", action="append", required=True, help="repeat for several")
    ap.add_argument("--layout", default="", help="fingerprint layout (default: the encoder's)")
    ap.add_argument("--encoder", required=True, help="a saved neural-graph encoder directory")
    ap.add_argument("--heldout-encoder", default="", help="its held-out counterpart")
    ap.add_argument("--heldout-tasks", default="")
    ap.add_argument("--heldout-families", default="")
    ap.add_argument("--weights", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1")
    ap.add_argument(
        "--fingerprint-probes", default="", help="probe counts to try, e.g. 0,128,64 (0 = all)"
    )
    ap.add_argument("--save", default="")
    args = ap.parse_args()
    if args.heldout_encoder and not (args.heldout_tasks and args.heldout_families):
        ap.error("--heldout-encoder needs --heldout-tasks and --heldout-families")
    zoos = [Zoo.open(z) for z in args.zoo]
    encs = {}
    for key, path in (("trained", args.encoder), ("heldout", args.heldout_encoder)):
        if not path:
            continue
        enc = load_encoder(path)
        if not isinstance(enc, NeuralGraphEncoder):
            raise SystemExit(f"{path}: not a neural-graph encoder")
        if not enc.config.n_probes:
            raise SystemExit(f"{path}: an encoder without probes has no fingerprint")
        encs[key] = enc.with_fingerprint(enc.config.fingerprint, args.layout or None)
    weights = [float(w) for w in args.weights.split(",")]
    if any(not 0.0 <= w <= 1.0 for w in weights):
        ap.error("--weights: every weight must be in [0, 1]")
    own = encs["trained"].config.fingerprint_probes
    counts = (
        [int(k) for k in args.fingerprint_probes.split(",")] if args.fingerprint_probes else [own]
    )
    if any(not 0 <= k <= enc.config.n_probes for k in counts for enc in encs.values()):
        ap.error("--fingerprint-probes: every count must be in [0, n_probes]")
    grid = [(k, w) for k in counts for w in weights if w or k == counts[0]]  # w 0: no fingerprint
    per_zoo = [val_scores(zoo, encs, args, grid) for zoo in zoos]
    val = [[x for scores in per_zoo for x in scores[i]] for i in range(len(grid))]
    best = max(range(len(grid)), key=lambda i: float(np.mean(val[i])))
    held = " | val held-out tasks | val held-out family" if "heldout" in encs else ""
    head = " | ".join(f"val mAP {os.path.basename(os.path.normpath(z))}{held}" for z in args.zoo)
    print(f"| fingerprint probes | weight | {head} | val mean |")
    print("|---|---|" + ("---|" * (len(val[0]) + 1)))
    for i, (k, w) in enumerate(grid):
        mark = " (chosen)" if i == best else ""
        cells = " | ".join(f"{x:.3f}" for x in (*val[i], np.mean(val[i])))
        print(f"| {k or 'all'} | {w:g}{mark} | {cells} |")
    if args.save:
        k, w = grid[best]
        for key, enc in encs.items():
            enc.with_fingerprint(w, probes=k).save(os.path.join(args.save, key))
        print(f"saved with fingerprint weight {w:g} on {k or 'all'} probes under {args.save}")


if __name__ == "__main__":
    main()
