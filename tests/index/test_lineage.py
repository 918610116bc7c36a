"""Lineage recovery from weights on a tiny family: a parent, short fine-tunes of it (one
stored permuted and rescaled), an unrelated model; recorded metadata; near-duplicates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from index.fake_encoder import tiny_net
from index.lineage_family import family
from zoolens.index.lineage import (
    Lineage,
    LineageConfig,
    recover_lineage,
    relative_distances,
    weight_kurtosis,
)
from zoolens.ir import Net
from zoolens.merge import align
from zoolens.symmetry import random_exact_action


@pytest.fixture(scope="module")
def fam() -> tuple[dict[str, Net], list[tuple[str, str]]]:
    return family(n_children=4)


def _edges(lineage: Lineage, how: str = "weights") -> set[tuple[str, str]]:
    return {(e.parent, e.child) for e in lineage.edges if e.how == how}


def test_recovers_edges_and_directions(fam) -> None:
    nets, truth = fam
    lineage = recover_lineage(nets, align=align)
    assert _edges(lineage) == set(truth)
    assert all(0 < e.distance < LineageConfig().edge_threshold for e in lineage.edges)
    assert lineage.parent_of("u") is None and lineage.children_of("u") == []
    assert lineage.duplicates == []


def test_without_alignment_the_permuted_child_is_lost(fam) -> None:
    """Sensitivity twin: `c2` is `p`'s fine-tune with its units permuted and rescaled."""
    nets, _ = fam
    lineage = recover_lineage(nets, align=None)
    assert lineage.parent_of("c2") is None
    assert ("p", "c1") in _edges(lineage) or ("c1", "p") in _edges(lineage)


def test_recorded_parent_wins(fam) -> None:
    nets, _ = fam
    lineage = recover_lineage(nets, recorded={"c1": "u", "c3": "", "p": None}, align=align)
    parent = lineage.parent_of("c1")
    assert parent is not None and (parent.parent, parent.how) == ("u", "recorded")
    assert parent.distance > LineageConfig().edge_threshold  # compared, though far
    assert ("p", "c1") not in _edges(lineage)
    assert {("p", "c2"), ("p", "c3"), ("p", "c4")} <= _edges(lineage)


def test_near_duplicates_through_symmetry(fam) -> None:
    nets, _ = fam
    copy = random_exact_action(nets["u"], torch.Generator().manual_seed(3))
    lineage = recover_lineage({**nets, "u-copy": copy}, align=align)
    assert lineage.duplicates_of("u") == ["u-copy"]
    # sensitivity twin: a fine-tune is close, but not a duplicate
    assert lineage.duplicates_of("p") == [] and lineage.duplicates_of("c1") == []
    # without alignment the permuted copy is not recognised
    assert recover_lineage({**nets, "u-copy": copy}).duplicates_of("u") == []


def test_other_architectures_are_never_joined(fam) -> None:
    nets, _ = fam
    lineage = recover_lineage({**nets, "tiny": tiny_net(0)}, align=align)
    assert lineage.describe("tiny") == {"parent": None, "children": [], "near_duplicates": []}
    shown = lineage.describe("p")
    assert shown["parent"] is None
    assert sorted(c["id"] for c in shown["children"]) == ["c1", "c2", "c3", "c4"]
    assert all(c["how"] == "weights" and c["distance"] > 0 for c in shown["children"])


def test_relative_distances_hand_worked() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0], [3.0, 0.0]])
    d = relative_distances(x)
    assert d[0, 1] == pytest.approx(1.0) and d[0, 2] == pytest.approx(4.0 / 5.0)
    assert np.allclose(d, d.T) and np.all(np.diag(d) == 0)


def test_kurtosis_rises_with_heavy_tails() -> None:
    net = tiny_net(0)
    light = net.clone()
    heavy = net.clone()
    g = torch.Generator().manual_seed(0)
    for op in heavy.ops:
        if "weight" in op.params:
            w = torch.randn(op.params["weight"].shape, generator=g)
            op.params["weight"] = w * torch.randn(w.shape, generator=g).abs() ** 2
    for op in light.ops:
        if "weight" in op.params:
            op.params["weight"] = torch.rand(op.params["weight"].shape, generator=g) - 0.5
    assert weight_kurtosis(heavy) > 1.0 and weight_kurtosis(light) < -0.5
    # hand-worked: entries +-1 only: m4 / m2^2 = 1, excess kurtosis -2
    for op in (o for o in light.ops if "weight" in o.params):
        op.params["weight"] = torch.ones(op.params["weight"].shape)
        op.params["weight"].view(-1)[::2] = -1.0
    assert weight_kurtosis(light) == pytest.approx(-2.0)


def test_an_aligner_failure_leaves_recorded_edges(fam) -> None:
    nets, _ = fam

    def broken(ref: Net, model: Net) -> Net:
        raise RuntimeError("cannot align this")

    lineage = recover_lineage(nets, recorded={"c1": "p"}, align=broken)
    assert [(e.parent, e.child, e.how) for e in lineage.edges] == [("p", "c1", "recorded")]
