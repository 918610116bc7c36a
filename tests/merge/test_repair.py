"""REPAIR: each corrected unit gets the endpoints' interpolated statistics."""

from __future__ import annotations

import torch
from tests.merge.trained import accuracy, digits, mlp, train

from zoolens.ir import DENSE_KINDS
from zoolens.merge import align, interpolate, merge
from zoolens.merge.activations import activations
from zoolens.merge.repair import repair
from zoolens.testing import assert_same_function, random_input, random_net


def _std_mean(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dims = [0, *range(2, v.dim())]
    return v.std(dim=dims), v.mean(dim=dims)


def test_repaired_units_have_the_interpolated_statistics() -> None:
    g = torch.Generator().manual_seed(0)
    a = random_net("cnn1d", g)
    b = align(a, random_net("cnn1d", torch.Generator().manual_seed(0)).to(torch.float64))
    for op in b.ops:  # a second net of a's architecture
        op.params = {
            r: t + 0.3 * torch.randn(t.shape, generator=g, dtype=t.dtype)
            for r, t in op.params.items()
        }
    x, alpha = random_input(a, g, 64), 0.5
    mid = interpolate(a, b, alpha)
    fixed = repair(mid, a, b, alpha, x)
    ea, eb, em, ef = (activations(n, x) for n in (a, b, mid, fixed))
    hidden = [op.output for op in a.ops if op.kind in DENSE_KINDS and op.output != a.output]
    assert hidden
    for v in hidden:
        want = [
            (1 - alpha) * sa + alpha * sb
            for sa, sb in zip(_std_mean(ea[v]), _std_mean(eb[v]), strict=True)
        ]
        got, before = _std_mean(ef[v]), _std_mean(em[v])
        for w, gt in zip(want, got, strict=True):
            assert torch.allclose(gt, w, atol=1e-8)
        assert not torch.allclose(before[0], want[0], atol=1e-3)  # sensitivity


def test_repair_at_an_endpoint_is_the_endpoint() -> None:
    g = torch.Generator().manual_seed(1)
    a = random_net("mlp", g)
    b = a.clone()
    for op in b.ops:
        op.params = {r: t * 1.5 for r, t in op.params.items()}
    x = random_input(a, g, 64)
    assert_same_function(a, repair(interpolate(a, b, 0.0), a, b, 0.0, x), x, rtol=1e-8)


def test_repair_raises_the_aligned_midpoint_accuracy() -> None:
    torch.set_num_threads(1)
    x, y, xt, yt = digits()
    a, b = (train(lambda: mlp(32), seed, x, y, steps=200) for seed in (0, 1))
    plain = accuracy(merge(a, b, data=x), xt, yt)
    repaired = accuracy(merge(a, b, data=x, repair=True), xt, yt)
    assert repaired > plain + 0.03, f"REPAIR {repaired:.3f} vs plain aligned {plain:.3f}"
