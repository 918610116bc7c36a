"""Fine-tuning on a held-out task from merged, synthesised and baseline initialisations.

    python benchmarks/merge_finetune.py [--zoo 24] [--seeds 5] [--epochs 15]

Offline data only: scikit-learn's bundled digits (1300 train / 497 test, inputs / 16).
The zoo: `--zoo` MLPs 64 → 32 → 32 → n (ReLU) trained on the zoo's task with varied seed,
learning rate, steps and weight decay (full-batch Adam). A decoder (`zoolens.merge.
fit_decoder`) is fitted on the default encoder's embeddings of all but the last 4 (its
reconstruction of those 4 held-out nets is reported against the zoo mean). Tasks (zoo →
held-out): `--task subset` digits 0-4 → digits 5-9 (labelled 0-4; no zoo net saw them);
`--task permuted` all digits → all digits with labels permuted by a fixed derangement.
The whole net is fine-tuned; with
`--head reset` (default) the output layer is replaced by one fresh initialisation shared by
every starting point of a seed (a new task, a new head), with `--head keep` the decoded /
merged head is kept too (its confident old-class logits then slow every pretrained start).

Per seed, a pair (A, B) of zoo nets is drawn and every starting point is fine-tuned with
the same Adam (lr 1e-3, batch 64) for `--epochs` epochs, test accuracy after each:
random init; A itself; naive midpoint of A and B; aligned midpoint (`merge`, weight
matching); synthesised (`synthesize`: decoded midpoint embedding), with and without the
functional loss; the zoo net nearest to the midpoint embedding + Gaussian noise (0.1 x
each tensor's std); a weight ensemble (mean of the k = 5 zoo nets nearest to the midpoint
embedding, aligned to the nearest). Reported: accuracy on the zoo task before
fine-tuning, final accuracy, epochs to 90 % of the run's own final accuracy, and epochs to
90 % of the random-init final accuracy (the seed's "epochs saved" measure), mean ± std.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from zoolens.ir import Net, load_net
from zoolens.merge import Decoder, align, fit_decoder, interpolate, merge, synthesize
from zoolens.merge.synthesis import flat_weights
from zoolens.nn import Encoder, load_encoder

Data = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def digits(classes: range) -> Data:
    """(x_train, y_train, x_test, y_test) of the digits in `classes`, labelled from 0."""
    x, y = load_digits(return_X_y=True)
    xt, yt = torch.as_tensor(x / 16.0, dtype=torch.float32), torch.as_tensor(y)
    perm = torch.randperm(len(yt), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1300], perm[1300:]
    tr, te = (
        tr[(yt[tr] >= classes.start) & (yt[tr] < classes.stop)],
        te[(yt[te] >= classes.start) & (yt[te] < classes.stop)],
    )
    return xt[tr], yt[tr] - classes.start, xt[te], yt[te] - classes.start


def mlp(n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, n_out)
    )


def tasks(kind: str) -> tuple[Data, Data]:
    """(the zoo's task, the held-out task)."""
    if kind == "subset":
        return digits(range(0, 5)), digits(range(5, 10))
    data = digits(range(10))
    derange = torch.tensor([3, 7, 0, 9, 5, 1, 8, 2, 4, 6])  # no digit keeps its label
    return data, (data[0], derange[data[1]], data[2], derange[data[3]])


def to_net(model: nn.Module) -> Net:
    net = load_net(model.eval(), input_shape=(64,))
    assert isinstance(net, Net)
    return net


def to_module(net: Net) -> nn.Sequential:
    """The `mlp` holding `net`'s tensors (the family is fixed, so op i ↔ module i)."""
    model = mlp(net.ops[-1].params["weight"].shape[0])
    with torch.no_grad():
        for op, layer in zip(net.ops, model, strict=True):
            for role, t in op.params.items():
                getattr(layer, role).copy_(t.to(torch.float32))
    return model


def accuracy(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train_zoo(n: int, data: Data) -> list[Net]:
    x, y, _, _ = data
    n_out = int(y.max()) + 1
    nets = []
    for i in range(n):
        torch.manual_seed(100 + i)
        lr, steps, wd = [3e-3, 1e-2][i % 2], [100, 200, 400][i % 3], [0.0, 1e-4][(i // 2) % 2]
        model = mlp(n_out)
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        nets.append(to_net(model))
    return nets


def finetune(model: nn.Module, data: Data, epochs: int, seed: int) -> list[float]:
    """Test accuracies before and after each epoch of Adam (lr 1e-3, batch 64)."""
    x, y, xt, yt = data
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    accs = [accuracy(model, xt, yt)]
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        accs.append(accuracy(model, xt, yt))
    return accs


def epochs_to(accs: list[float], target: float) -> float:
    hit = [e for e, a in enumerate(accs) if a >= target]
    return float(hit[0]) if hit else float("nan")


def noisy(net: Net, sigma: float, g: torch.Generator) -> Net:
    out = net.clone()
    for op in out.ops:
        op.params = {
            r: t + sigma * t.std() * torch.randn(t.shape, generator=g) for r, t in op.params.items()
        }
    return out


def ensemble(nets: list[Net]) -> Net:
    ref, out = nets[0], nets[0].clone()
    aligned = [ref] + [align(ref, n) for n in nets[1:]]
    for i, op in enumerate(out.ops):
        op.params = {
            r: torch.stack([n.ops[i].params[r] for n in aligned]).mean(0) for r in op.params
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", type=int, default=24)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--head", choices=["reset", "keep"], default="reset")
    ap.add_argument("--task", choices=["subset", "permuted"], default="subset")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    data, held = tasks(args.task)
    zoo = train_zoo(args.zoo, data)
    train = zoo[:-4]
    encoder = load_encoder("default")
    z = encoder.encode(zoo)
    decoders = {
        "synthesised": fit_decoder(train, z[:-4], encoder_id=encoder.id),
        "synthesised +func": fit_decoder(train, z[:-4], {"functional": 1.0}, encoder_id=encoder.id),
    }
    print(f"zoo of {len(zoo)} trained, embedded, decoders fitted in {time.time() - t0:.0f} s")
    zoo_acc = np.mean([accuracy(n.to(torch.float32), data[2], data[3]) for n in zoo])
    print(f"zoo accuracy on its task: {zoo_acc:.3f}")
    report_decoders(decoders, zoo, z, data)
    results: dict[str, list[tuple[float, list[float]]]] = {}
    zoo_mean = ensemble(train)
    for seed in range(args.seeds):
        inits = starting_points(seed, train, z[:-4], decoders, encoder)
        for name, net in {**inits, "zoo mean (aligned)": zoo_mean}.items():
            model = to_module(net)
            before = accuracy(model, data[2], data[3])
            if args.head == "reset":  # a new task gets a new head: the same fresh one for all
                torch.manual_seed(2000 + seed)
                model[-1].reset_parameters()
            results.setdefault(name, []).append((before, finetune(model, held, args.epochs, seed)))
    print(f"\ntask: {args.task}, head: {args.head}, {args.seeds} seeds, {args.epochs} epochs")
    report(results)
    print(f"total {time.time() - t0:.0f} s")


def report_decoders(
    decoders: dict[str, Decoder], zoo: list[Net], z: np.ndarray, data: Data
) -> None:
    """Reconstruction of the 4 zoo nets the decoders did not see, vs the training nets' mean."""
    ref, train, val = zoo[0], zoo[:-4], zoo[-4:]
    targets = torch.stack([flat_weights(align(ref, n)) for n in val]).float()  # (4, P)
    mean = torch.stack([flat_weights(align(ref, n)) for n in train]).float().mean(0)
    print(f"held-out reconstruction MSE, zoo mean: {float((targets - mean).square().mean()):.4g}")
    for name, dec in decoders.items():
        rec = dec.decode(z[-4:])
        mse = float((torch.stack([flat_weights(n) for n in rec]).float() - targets).square().mean())
        acc = np.mean([accuracy(n.to(torch.float32), data[2], data[3]) for n in rec])
        print(f"  {name}: MSE {mse:.4g}, decoded held-out nets' accuracy {acc:.3f}")


def starting_points(
    seed: int, train: list[Net], z: np.ndarray, decoders: dict[str, Decoder], encoder: Encoder
) -> dict[str, Net]:
    """Every starting point of one seed: a pair (A, B) of zoo nets drawn from `seed`."""
    rng = np.random.default_rng(seed)
    i, j = rng.choice(len(train), size=2, replace=False)
    a, b = train[i], train[j]
    zmid = (z[i] + z[j]) / np.linalg.norm(z[i] + z[j])
    near = np.argsort(-(z @ zmid))
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(1000 + seed)
    return {
        "random init": to_net(mlp(a.ops[-1].params["weight"].shape[0])),
        "endpoint A": a,
        "naive midpoint": interpolate(a, b),
        "aligned midpoint": merge(a, b),
        **{k: synthesize(a, b, 0.5, d, encoder) for k, d in decoders.items()},
        "nearest + noise": noisy(train[near[0]], 0.1, g),
        "ensemble k=5": ensemble([train[k] for k in near[:5]]),
    }


def report(results: dict[str, list[tuple[float, list[float]]]]) -> None:
    scratch = np.mean([accs[-1] for _, accs in results["random init"]])
    print("\n| init | acc on zoo task before | final acc | epochs to 90% own final | ", end="")
    print(f"epochs to 90% scratch final ({scratch:.3f}) |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        before = np.array([r[0] for r in runs])
        final = np.array([r[1][-1] for r in runs])
        own = np.array([epochs_to(r[1], 0.9 * r[1][-1]) for r in runs])
        common = np.array([epochs_to(r[1], 0.9 * scratch) for r in runs])
        cells = [f"{v.mean():.3f} ± {v.std():.3f}" for v in (before, final)]
        cells += [_epochs(v) for v in (own, common)]
        print(f"| {name} | " + " | ".join(cells) + " |")


def _epochs(v: np.ndarray) -> str:
    """Mean ± std over the runs that reached the target, and how many did."""
    hit = v[~np.isnan(v)]
    if not len(hit):
        return f"not reached (0/{len(v)})"
    more = f" ({len(hit)}/{len(v)} reached)" if len(hit) < len(v) else ""
    return f"{hit.mean():.1f} ± {hit.std():.1f}{more}"


if __name__ == "__main__":
    main()
