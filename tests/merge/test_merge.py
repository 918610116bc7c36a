"""`merge`: aligned interpolation keeps two trained MLPs' accuracy where naive loses it;
BatchNorm statistics reset; task arithmetic and TIES by hand-worked cases."""

from __future__ import annotations

import pytest
import torch
from tests.merge.trained import accuracy, digits, mlp, train
from torch import nn

from zoolens.errors import ZoolensError
from zoolens.ir import Net
from zoolens.merge import interpolate, merge, reset_batchnorm
from zoolens.merge.merge import _ties_tensor
from zoolens.testing import random_input, random_net


@pytest.fixture(scope="module")
def trained_pair() -> tuple[Net, Net, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.set_num_threads(1)
    x, y, xt, yt = digits()
    a, b = (train(lambda: mlp(64), seed, x, y, steps=200) for seed in (0, 1))
    return a, b, x, xt, yt


def test_aligned_midpoint_keeps_accuracy_where_naive_loses_it(trained_pair: tuple) -> None:
    a, b, x, xt, yt = trained_pair
    ends = min(accuracy(a, xt, yt), accuracy(b, xt, yt))
    assert ends > 0.9
    naive = accuracy(merge(a, b, method="naive"), xt, yt)
    aligned = accuracy(merge(a, b), xt, yt)
    by_acts = accuracy(merge(a, b, align_method="activations", data=x), xt, yt)
    assert naive < ends - 0.2, f"naive midpoint {naive:.3f} vs endpoints {ends:.3f}"
    assert aligned > ends - 0.06, f"aligned midpoint {aligned:.3f} vs endpoints {ends:.3f}"
    assert by_acts > ends - 0.06, f"activation-aligned {by_acts:.3f} vs {ends:.3f}"


def test_interpolation_endpoints_are_the_nets(trained_pair: tuple) -> None:
    a, b, _, xt, _ = trained_pair
    x = xt.to(torch.float64)
    assert torch.equal(interpolate(a, b, 0.0)(x), a(x))
    assert torch.allclose(interpolate(a, b, 1.0)(x), b(x), atol=1e-12)
    assert not torch.allclose(interpolate(a, b, 0.5)(x), a(x), atol=1e-3)


def _bn_net(g: torch.Generator) -> Net:
    net = random_net("cnn2d_bn", g)
    return net


def test_reset_batchnorm_matches_the_data_statistics() -> None:
    g = torch.Generator().manual_seed(0)
    net = _bn_net(g)
    x = random_input(net, g, 64) * 3 + 1
    out = reset_batchnorm(net, x)
    env = {out.input: x}
    for op in out.ops:
        xs = [env[n] for n in op.inputs]
        if op.kind == "batchnorm":
            dims = [0, *range(2, xs[0].dim())]
            assert torch.allclose(op.params["running_mean"], xs[0].mean(dims), atol=1e-10)
            assert torch.allclose(op.params["running_var"], xs[0].var(dims), atol=1e-10)
            # sensitivity: the random statistics it replaced were not these
            old = net.op(op.name).params["running_mean"]
            assert not torch.allclose(old, op.params["running_mean"], atol=1e-3)
        env[op.output] = op.run(xs)


def test_merge_resets_batchnorm_of_the_merged_net() -> None:
    g = torch.Generator().manual_seed(1)
    a = _bn_net(g)
    b = random_net("cnn2d_bn", torch.Generator().manual_seed(1))  # same arch
    b = b.clone()
    for op in b.ops:
        op.params = {r: t * 1.1 for r, t in op.params.items()}
    x = random_input(a, g, 64)
    merged = merge(a, b, method="naive", data=x)
    plain = interpolate(a, b)
    assert torch.allclose(merged(x), reset_batchnorm(plain, x)(x), atol=1e-10)
    assert not torch.allclose(merged(x), plain(x), atol=1e-4)
    kept = merge(a, b, method="naive", data=x, renormalize=False)
    assert torch.allclose(kept(x), plain(x), atol=1e-12)


def _finetunes() -> tuple[Net, Net, Net]:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    from zoolens.ir import load_net

    b = load_net(base, input_shape=(3,))
    assert isinstance(b, Net)
    b = b.to(torch.float64)
    g = torch.Generator().manual_seed(5)
    fa, fb = b.clone(), b.clone()
    for f in (fa, fb):
        for op in f.ops:
            op.params = {
                r: t + 0.1 * torch.randn(t.shape, generator=g, dtype=t.dtype)
                for r, t in op.params.items()
            }
    return b, fa, fb


def test_task_arithmetic_adds_task_vectors() -> None:
    base, fa, fb = _finetunes()
    out = merge(fa, fb, method="task-arithmetic", base=base, lam=0.7)
    for o, p, a, b in zip(out.ops, base.ops, fa.ops, fb.ops, strict=True):
        for r in o.params:
            want = p.params[r] + 0.7 * (a.params[r] - p.params[r] + b.params[r] - p.params[r])
            assert torch.allclose(o.params[r], want, atol=1e-12)


def test_ties_trims_elects_and_averages() -> None:
    t1 = torch.tensor([0.9, -0.5, 0.05, 0.3, 0.0])
    t2 = torch.tensor([0.6, 0.7, -0.02, -0.1, 0.4])
    # thresholds keep |t1| >= 0.3 and |t2| >= 0.4
    got = _ties_tensor([t1, t2], [0.3, 0.4])
    # entry 0: both kept, agree → mean 0.75; entry 1: -0.5 vs 0.7 → sign +, only 0.7;
    # entry 2: both trimmed → 0; entry 3: 0.3 kept, -0.1 trimmed → 0.3; entry 4: 0.4
    assert torch.allclose(got, torch.tensor([0.75, 0.7, 0.0, 0.3, 0.4]))


def test_ties_keeps_the_requested_density() -> None:
    base, fa, fb = _finetunes()
    out = merge(fa, fb, method="ties", base=base, density=0.2)
    delta = torch.cat(
        [(o - p).reshape(-1) for o, p in zip(out.parameters(), base.parameters(), strict=True)]
    )
    frac = float((delta != 0).double().mean())
    assert 0.15 <= frac <= 2 * 0.2 + 2 / delta.numel()  # the union of two 20% supports
    dense = merge(fa, fb, method="ties", base=base, density=1.0)
    assert (
        float((torch.cat([t.reshape(-1) for t in dense.parameters()]) != 0).double().mean()) > 0.9
    )


def test_task_methods_need_a_base_and_others_refuse_one() -> None:
    base, fa, fb = _finetunes()
    with pytest.raises(ZoolensError, match="--base"):
        merge(fa, fb, method="ties")
    with pytest.raises(ZoolensError, match="takes no --base"):
        merge(fa, fb, method="naive", base=base)
    with pytest.raises(ZoolensError, match="expected one of"):
        merge(fa, fb, method="average")  # type: ignore[arg-type]
