"""Hugging Face directories whose weights are pickled ``pytorch_model.bin`` state dicts."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from tests.cli_runner import run_zoolens
from tests.ir import hf_models

from zoolens.errors import LoadError
from zoolens.ir import Net, load_net


def _as_bin(src: str, dst: Path, model: torch.nn.Module, shards: int = 1) -> str:
    """`src`'s config beside the state dict pickled as ``save_pretrained(safe_serialization=
    False)`` wrote it: ``pytorch_model.bin``, or `shards` files and their index."""
    dst.mkdir()
    shutil.copy(os.path.join(src, "config.json"), dst / "config.json")
    state = model.state_dict()
    if shards == 1:
        torch.save(state, dst / "pytorch_model.bin")
        return str(dst)
    keys = list(state)
    weight_map = {}
    for i in range(shards):
        name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = {k: state[k] for k in keys[i::shards]}
        torch.save(part, dst / name)
        weight_map |= dict.fromkeys(part, name)
    (dst / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return str(dst)


@pytest.mark.parametrize("family", ["bert", "gpt2"])
@pytest.mark.parametrize("shards", [1, 2])
def test_bin_directory_reads_equal_to_safetensors(family: str, shards: int, tmp_path) -> None:
    model = hf_models.save(family, str(tmp_path / "st"))
    path = _as_bin(str(tmp_path / "st"), tmp_path / "bin", model, shards)
    a, b = load_net(str(tmp_path / "st")), load_net(path)
    assert isinstance(b, Net) and b.arch_key() == a.arch_key()
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    x = hf_models.example(model, b.input_shape)
    want = hf_models.reference(model, x)
    assert float((b(x) - want).abs().max()) <= 1e-4 * float(want.abs().max())
    assert b.num_params() == a.num_params()


def test_bin_of_another_model_reads_other_weights(tmp_path) -> None:
    """Sensitivity: the net holds the .bin's weights, not the config's fresh initialisation."""
    hf_models.save("bert", str(tmp_path / "st"))
    other = hf_models.save("bert", str(tmp_path / "st1"), seed=1)
    a = load_net(str(tmp_path / "st"))
    b = load_net(_as_bin(str(tmp_path / "st"), tmp_path / "bin", other))
    x = hf_models.example(other, b.input_shape)
    assert not torch.allclose(a(x), b(x), atol=1e-3)
    assert torch.allclose(b(x), hf_models.reference(other, x), atol=1e-4)


def test_bin_missing_weights_is_refused(tmp_path) -> None:
    model = hf_models.save("bert", str(tmp_path / "st"))
    path = _as_bin(str(tmp_path / "st"), tmp_path / "bin", model)
    state = torch.load(os.path.join(path, "pytorch_model.bin"), weights_only=True)
    state.pop(next(k for k in state if "intermediate" in k))
    torch.save(state, os.path.join(path, "pytorch_model.bin"))
    with pytest.raises(LoadError, match=r"not in pytorch_model\.bin"):
        load_net(path)


class _Payload:
    """Unpickling this runs code: what a malicious checkpoint does."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo zoolens-pwned > /dev/null",))


def test_a_bin_that_runs_code_is_refused_in_one_line(tmp_path, capsys) -> None:
    model = hf_models.save("bert", str(tmp_path / "st"))
    path = _as_bin(str(tmp_path / "st"), tmp_path / "bin", model)
    bad = {**model.state_dict(), "payload": _Payload()}
    torch.save(bad, os.path.join(path, "pytorch_model.bin"))
    with pytest.raises(LoadError, match="refuses to unpickle code"):
        load_net(path)
    capsys.readouterr()  # save_pretrained's progress bar
    code, out, err = run_zoolens(capsys, "inspect", path)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "pytorch_model.bin" in err
    assert "system" in err


def test_no_weights_at_all_is_one_clear_error(tmp_path) -> None:
    hf_models.save("bert", str(tmp_path / "st"))
    (tmp_path / "cfg").mkdir()
    shutil.copy(tmp_path / "st" / "config.json", tmp_path / "cfg" / "config.json")
    with pytest.raises(LoadError, match=r"no model\.safetensors or pytorch_model\.bin"):
        load_net(str(tmp_path / "cfg"))


def test_a_shard_index_naming_files_elsewhere_is_refused(tmp_path) -> None:
    model = hf_models.save("bert", str(tmp_path / "st"))
    path = _as_bin(str(tmp_path / "st"), tmp_path / "bin", model, shards=2)
    index = os.path.join(path, "pytorch_model.bin.index.json")
    with open(index) as f:
        weight_map = json.load(f)["weight_map"]
    first = next(iter(weight_map))
    weight_map[first] = "../elsewhere.bin"
    with open(index, "w") as f:
        json.dump({"weight_map": weight_map}, f)
    with pytest.raises(LoadError, match="not a file name"):
        load_net(path)
