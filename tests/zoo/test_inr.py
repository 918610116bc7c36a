"""Batched INR fitting: one program for many INRs, exactly split into Nets."""

from __future__ import annotations

import torch

from zoolens.zoo.inr import INRArch, INRModel, fit_batch, forward_batch, psnr, split_batch
from zoolens.zoo.tasks import image_coordinates, load_inr_images

ARCH = INRArch(depth=2, width=8, activation="sine")


def test_each_inr_gets_only_its_own_gradient() -> None:
    images, _ = load_inr_images("inr-digits")
    coords = image_coordinates(8, 8)
    a = fit_batch(ARCH, images[[0, 1]], coords, steps=30, lr=1e-3, seed=0)
    b = fit_batch(ARCH, images[[0, 2]], coords, steps=30, lr=1e-3, seed=0)
    for (wa, ba), (wb, bb) in zip(a, b, strict=True):
        torch.testing.assert_close(wa[0], wb[0], rtol=0, atol=1e-6)  # same image, same INR
        torch.testing.assert_close(ba[0], bb[0], rtol=0, atol=1e-6)
        assert not torch.allclose(wa[1], wb[1])


def test_split_nets_reproduce_the_batch() -> None:
    for act in ("sine", "relu"):
        arch = INRArch(2, 8, act)
        images, _ = load_inr_images("inr-mnist")
        coords = image_coordinates(28, 28)
        params = fit_batch(arch, images[:3], coords, steps=5, lr=1e-3, seed=1)
        nets = split_batch(arch, params)
        with torch.no_grad():
            batched = forward_batch(arch, params, coords)
        for i, net in enumerate(nets):
            torch.testing.assert_close(net(coords), batched[i], rtol=1e-5, atol=1e-5)
        assert nets[0].num_params() == sum(p.numel() for p in INRModel(arch).parameters())
        assert [op.fn for op in nets[0].ops if op.kind == "act"] == (
            ["sin", "sin"] if act == "sine" else ["relu", "relu"]
        )


def test_fitting_improves_psnr() -> None:
    images, _ = load_inr_images("inr-digits")
    coords = image_coordinates(8, 8)
    before = fit_batch(ARCH, images[:2], coords, steps=0, lr=1e-3, seed=0)
    after = fit_batch(ARCH, images[:2], coords, steps=200, lr=1e-3, seed=0)
    with torch.no_grad():
        p0 = psnr(forward_batch(ARCH, before, coords)[0], images[0])[0]
        p1 = psnr(forward_batch(ARCH, after, coords)[0], images[0])[0]
    assert p1 > p0 + 10
    assert psnr(images[0], images[0])[0] == 120.0
