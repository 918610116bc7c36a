"""Interface metadata (input shape, output count) and the same-interface search filter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cli_runner import run_zoolens
from zoolens.errors import IndexError as IndexStoreError
from zoolens.index import NO_HIT, ModelIndex, parse_where
from zoolens.ir import Net, load_net
from zoolens.nn.heads import fit_head_on_embeddings

#: (n_in, n_out) of the interfaces in the mixed index.
SHAPES = ((4, 2), (4, 3), (6, 2))


def mlp(n_in: int, n_out: int, seed: int) -> Net:
    torch.manual_seed(seed)
    module = torch.nn.Sequential(
        torch.nn.Linear(n_in, 8), torch.nn.ReLU(), torch.nn.Linear(8, n_out)
    )
    net = load_net(module)
    assert isinstance(net, Net)
    return net


@pytest.fixture
def mixed(tmp_path, encoder):
    """24 nets of three interfaces, ids i<shape>-<seed>, each saved on disk and indexed."""
    nets, ids = [], []
    for n_in, n_out in SHAPES:
        for seed in range(8):
            nets.append(mlp(n_in, n_out, 100 * n_in + 10 * n_out + seed))
            ids.append(f"i{n_in}x{n_out}-{seed}")
    paths = []
    for net, i in zip(nets, ids, strict=True):
        paths.append(str(tmp_path / "models" / i))
        net.save(paths[-1])
    index = ModelIndex.open(tmp_path / "idx", encoder=encoder)
    index.add(paths, progress=False)
    yield index, nets, ids, paths
    index.close()


def test_added_nets_record_their_interface(mixed):
    index, _, ids, _ = mixed
    for i in ids:
        n_in, n_out = (int(v) for v in i[1:].split("-")[0].split("x"))
        meta = index.get(i)["metadata"]
        assert meta["input_shape"] == [n_in] and meta["n_outputs"] == n_out


def test_a_conv_net_records_its_image_shape(tmp_path, encoder):
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 5)
    )
    net = load_net(module, input_shape=(1, 8, 8))
    with ModelIndex.open(tmp_path / "idx", encoder=encoder) as index:
        index.add(net, ids=["conv"], progress=False)
        meta = index.get("conv")["metadata"]
    assert meta["input_shape"] == [1, 8, 8] and meta["n_outputs"] == 5


def test_a_tensorset_gets_no_interface(tmp_path, encoder):
    weights = tmp_path / "weights_only.safetensors"
    state = mlp(4, 2, 0).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    with ModelIndex.open(tmp_path / "idx", encoder=encoder) as index:
        assert index.add([str(weights)], progress=False).added == ["weights_only"]
        meta = index.get("weights_only")["metadata"]
        assert "input_shape" not in meta and "n_outputs" not in meta
        with pytest.raises(IndexStoreError, match="input_shape"):
            index.search("weights_only", k=3, same_interface=True)


@pytest.mark.parametrize("q", [0, 9, 20])
def test_same_interface_equals_brute_force_filter_of_the_ranking(mixed, q):
    index, nets, ids, paths = mixed
    n = len(index)
    scores, ranked = index.search(nets[q], k=n)
    want = index.get(ids[q])["metadata"]
    keep = [
        (s, i)
        for s, i in zip(scores[0], ranked[0], strict=True)
        if (m := index.get(i)["metadata"])["input_shape"] == want["input_shape"]
        and m["n_outputs"] == want["n_outputs"]
    ]
    assert len(keep) == 8
    for query in (nets[q], paths[q], ids[q]):  # a Net, a path, an id of the index
        got_scores, got_ids = index.search(query, k=n, same_interface=True)
        assert list(got_ids[0, :8]) == [i for _, i in keep]
        np.testing.assert_allclose(got_scores[0, :8], [s for s, _ in keep], rtol=1e-6)
        assert all(i is NO_HIT for i in got_ids[0, 8:])  # sensitivity: the rest is filtered
    _, unfiltered = index.search(nets[q], k=n)
    assert set(unfiltered[0]) - {i for _, i in keep}  # the filter removed something


def test_where_n_outputs_uses_the_filter_syntax(mixed):
    index, nets, ids, _ = mixed
    _, got = index.search(nets[0], k=30, where=parse_where(["n_outputs=3"]))
    assert {i for i in got[0] if i is not NO_HIT} == {i for i in ids if "x3-" in i}
    _, got = index.search(nets[0], k=30, where=parse_where(["input_shape=[6]"]))
    assert {i for i in got[0] if i is not NO_HIT} == {i for i in ids if i.startswith("i6x")}


def test_rows_without_interface_keys_never_match(mixed):
    """An index built before interfaces were recorded opens; its rows match no filter."""
    index, nets, ids, _ = mixed
    old = index.get(ids[0], embedding=True)["embedding"]
    index.add_embeddings(old[None] * 1.0, ["legacy"], metadata=[{"task": "x"}])
    _, got = index.search(nets[0], k=len(index), same_interface=True)
    assert "legacy" not in set(got[0])
    _, unfiltered = index.search(nets[0], k=len(index))
    assert "legacy" in set(unfiltered[0])  # sensitivity: it is a near hit without the filter
    with pytest.raises(IndexStoreError, match="same_interface"):
        index.search("legacy", k=3, same_interface=True)
    with pytest.raises(IndexStoreError, match="one query model"):
        index.search(old, k=3, same_interface=True)


zoolens = run_zoolens


def test_cli_same_interface_and_head(mixed, tmp_path, capsys):
    import json

    index, _, ids, paths = mixed
    index.close()
    with ModelIndex.open(index.path, encoder=None, create=False) as again:
        z = np.stack([again.get(i, embedding=True)["embedding"] for i in ids])
        encoder_id = again.encoder_id
    outputs = [int(i.split("x")[1].split("-")[0]) for i in ids]
    head = fit_head_on_embeddings(
        z[::2], outputs[::2], z[1::2], outputs[1::2], label="outs", encoder_id=encoder_id
    )
    head.save(str(tmp_path / "head"))
    code, out, err = zoolens(
        capsys,
        "search",
        paths[9],
        "--index",
        index.path,
        "--same-interface",
        "-k",
        "30",
        "--head",
        str(tmp_path / "head"),
        "--json",
    )
    assert code == 0, err
    hits = json.loads(out)["hits"]
    assert len(hits) == 8 and {h["metadata"]["n_outputs"] for h in hits} == {3}
    assert all(h["prediction"] in (2, 3) for h in hits)
    np.testing.assert_array_equal(
        [h["prediction"] for h in hits],
        head.predict(np.stack([z[ids.index(h["id"])] for h in hits])),
    )
    code, out, _ = zoolens(capsys, "search", paths[9], "--index", index.path, "--json", "-k", "30")
    assert code == 0 and len(json.loads(out)["hits"]) == 24
    assert all("prediction" not in h for h in json.loads(out)["hits"])  # only when asked
    other = fit_head_on_embeddings(
        z[::2], outputs[::2], z[1::2], outputs[1::2], label="outs", encoder_id="other-123"
    )
    other.save(str(tmp_path / "other"))
    code, out, err = zoolens(
        capsys, "search", paths[9], "--index", index.path, "--head", str(tmp_path / "other")
    )
    assert code == 2 and "other-123" in err and len(err.strip().splitlines()) == 1
