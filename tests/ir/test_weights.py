"""Bare weight files → TensorSet: state dicts from other projects, safetensors, bad files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from zoolens.errors import InvalidWeightsError, LoadError
from zoolens.ir import TensorSet, load_net
from zoolens.ir.weights import load_tensor_set, read_safetensors


def _models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, batch_first=True)
    return {
        "lstm": nn.LSTM(4, 6, num_layers=2),
        "transformer": nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False),
        "cnn": nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)
        ),
    }


def _float_items(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in sd.items() if v.is_floating_point()}


def _assert_same(ts: TensorSet, expected: dict[str, torch.Tensor]) -> None:
    assert list(ts.tensors) == list(expected)
    assert all(torch.equal(ts.tensors[k], v) for k, v in expected.items())


def _optimizer_state(model: nn.Module) -> dict[str, Any]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    return opt.state_dict()


@pytest.mark.parametrize("name", ["lstm", "transformer", "cnn"])
@pytest.mark.parametrize("ext", [".pt", ".pth", ".bin", ".ckpt"])
def test_state_dicts_of_other_projects(tmp_path: Path, name: str, ext: str) -> None:
    sd = _models()[name].state_dict()
    path = tmp_path / f"{name}{ext}"
    torch.save(sd, path)
    ts = load_net(path)
    assert isinstance(ts, TensorSet)
    _assert_same(ts, _float_items(sd))
    assert {k: ts.meta[k] for k in ("source", "format")} == {"source": str(path), "format": "torch"}
    assert "not stored in a state dict" in ts.meta["reason"]


def test_integer_buffers_are_left_out(tmp_path: Path) -> None:
    sd = _models()["cnn"].state_dict()
    torch.save(sd, tmp_path / "cnn.pt")
    ts = load_tensor_set(tmp_path / "cnn.pt")
    assert "1.num_batches_tracked" in sd and "1.num_batches_tracked" not in ts.tensors


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd, opt: {"state_dict": sd, "optimizer_states": [opt], "epoch": 3},
        lambda sd, opt: {"model_state_dict": sd, "optimizer_state_dict": opt, "epoch": 3},
        lambda sd, opt: {"model": sd, "optimizer": opt, "step": 100},
        lambda sd, opt: {**sd, "optimizer": opt},
    ],
)
@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_nested_checkpoints_with_optimizer_state(
    tmp_path: Path,
    name: str,
    wrap: Callable[[dict[str, torch.Tensor], dict[str, Any]], dict[str, Any]],
) -> None:
    model = _models()[name]
    opt = _optimizer_state(model)
    sd = model.state_dict()
    torch.save(wrap(sd, opt), tmp_path / "ckpt.pt")
    _assert_same(load_tensor_set(tmp_path / "ckpt.pt"), _float_items(sd))


def test_data_parallel_prefix_is_kept(tmp_path: Path) -> None:
    sd = {f"module.{k}": v for k, v in _models()["lstm"].state_dict().items()}
    torch.save(sd, tmp_path / "dp.pth")
    _assert_same(load_tensor_set(tmp_path / "dp.pth"), sd)


def test_safetensors_in_file_order(tmp_path: Path) -> None:
    tensors = {
        "z.weight": torch.randn(3, 2),
        "a.bias": torch.randn(4, dtype=torch.float64),
        "m.half": torch.randn(5).half(),
        "steps": torch.arange(3),
        "b.bf16": torch.randn(2).bfloat16(),
    }
    path = tmp_path / "w.safetensors"
    save_file(tensors, str(path))
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    header.pop("__metadata__", None)
    by_offset = sorted(header, key=lambda k: header[k]["data_offsets"][0])
    ts = load_net(path)
    assert isinstance(ts, TensorSet)
    assert list(ts.tensors) == [k for k in by_offset if k != "steps"]
    assert all(torch.equal(ts.tensors[k], tensors[k]) for k in ts.tensors)
    assert ts.meta["format"] == "safetensors"


class Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)


def _save_module(path: Path) -> None:
    torch.save(Custom(), path)


def _save_sd(path: Path) -> bytes:
    torch.save(_models()["cnn"].state_dict(), path)
    return path.read_bytes()


def _corrupt_middle(path: Path) -> None:
    raw = bytearray(_save_sd(path))
    mid = len(raw) // 2
    raw[mid : mid + 64] = np.random.default_rng(0).bytes(64)
    raw[:4] = b"\0\0\0\0"
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "name, make, what",
    [
        ("empty.pt", lambda p: p.write_bytes(b""), "empty"),
        ("empty.safetensors", lambda p: p.write_bytes(b""), "empty"),
        ("trunc.pt", lambda p: p.write_bytes(_save_sd(p)[:300]), "corrupt or truncated"),
        ("corrupt.pt", _corrupt_middle, "corrupt"),
        ("garbage.bin", lambda p: p.write_bytes(np.random.default_rng(1).bytes(999)), "corrupt"),
        ("module.pt", _save_module, "needs code execution"),
        ("list.pt", lambda p: torch.save([1, 2, 3], p), "holds a list"),
        ("ints.pt", lambda p: torch.save({"idx": torch.arange(4)}, p), "no floating-point"),
        ("weights.npz", lambda p: p.write_bytes(b"PK\x03\x04"), "unknown"),
    ],
)
def test_bad_checkpoints_are_load_errors(
    tmp_path: Path, name: str, make: Callable[[Path], object], what: str
) -> None:
    path = tmp_path / name
    make(path)
    for loader in (load_tensor_set, load_net):
        with pytest.raises(LoadError, match=what) as err:
            loader(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_pickled_module_names_its_class(tmp_path: Path) -> None:
    _save_module(tmp_path / "m.pt")
    with pytest.raises(LoadError, match="Custom") as err:
        load_tensor_set(tmp_path / "m.pt")
    assert "refuses" in str(err.value)


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_safetensors(tmp_path: Path, cut: float) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.randn(64), "b": torch.randn(32)}, str(path))
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * cut)])
    with pytest.raises(LoadError, match=r"truncated|corrupt"):
        load_tensor_set(path)


def test_safetensors_with_garbage_header(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}")
    with pytest.raises(LoadError, match="corrupt safetensors header"):
        load_tensor_set(path)


@pytest.mark.parametrize("ext", [".pt", ".safetensors"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_named(tmp_path: Path, ext: str, bad: float) -> None:
    tensors = {"ok": torch.zeros(3), "layer.weight": torch.ones(2, 2)}
    tensors["layer.weight"][1, 0] = bad
    path = tmp_path / f"w{ext}"
    if ext == ".pt":
        torch.save(tensors, path)
    else:
        save_file(tensors, str(path))
    with pytest.raises(InvalidWeightsError, match=r"layer\.weight") as err:
        load_net(path)
    assert str(path) in str(err.value)


def _mixed(path: Path) -> dict[str, torch.Tensor]:
    """Every dtype zoolens views in place, an empty tensor, and a misaligned one (copied)."""
    g = torch.Generator().manual_seed(0)
    tensors = {
        "h": torch.randn(3, generator=g).half(),  # 6 bytes: what follows may be misaligned
        "f": torch.randn(4, 5, generator=g),
        "d": torch.randn(2, 3, dtype=torch.float64, generator=g),
        "b": torch.randn(7, generator=g).bfloat16(),
        "i": torch.arange(5),
        "u": torch.arange(3, dtype=torch.uint8),
        "flag": torch.tensor([True, False]),
        "empty": torch.zeros(0, 4),
        "f8": torch.randn(6, generator=g).to(torch.float8_e4m3fn),
    }
    save_file(tensors, str(path))
    return tensors


def test_read_safetensors_equals_the_eager_load(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    path = tmp_path / "w.safetensors"
    _mixed(path)
    eager, mapped = load_file(str(path)), read_safetensors(str(path))
    assert sorted(mapped) == sorted(eager)
    for name, t in eager.items():
        got = mapped[name]
        assert got.dtype == t.dtype and got.shape == t.shape, name
        assert torch.equal(got.view(torch.uint8), t.view(torch.uint8)), name  # bit-exact
    floats = read_safetensors(str(path), floating_only=True)
    assert set(floats) == {"h", "f", "d", "b", "empty", "f8"}


def test_misaligned_tensors_are_copied_equal(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    g = torch.Generator().manual_seed(1)
    parts = [
        ("h", torch.randn(3, generator=g).half(), "F16"),
        ("f", torch.randn(5, generator=g), "F32"),
    ]
    header, data = {}, b""
    for name, t, dtype in parts:  # packed without padding: "f" starts at byte 6
        raw = t.numpy().tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(t.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path = tmp_path / "w.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)
    mapped, eager = read_safetensors(str(path)), load_file(str(path))
    for name, t, _ in parts:
        assert torch.equal(mapped[name], t) and torch.equal(eager[name], t), name


def test_read_safetensors_views_one_mapping_without_copies(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.randn(256, 64), "b": torch.randn(1000), "c": torch.randn(8)}, str(path))
    raw = path.read_bytes()
    start = 8 + int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:start])
    mapped = read_safetensors(str(path))
    base = mapped["a"].data_ptr() - header["a"]["data_offsets"][0]
    for name in ("b", "c"):  # every tensor sits at its file offset within the same mapping
        assert mapped[name].data_ptr() - base == header[name]["data_offsets"][0]
    mapped["b"].mul_(0)  # copy-on-write: the file keeps its bytes
    assert path.read_bytes() == raw
    assert torch.equal(read_safetensors(str(path))["b"], load_tensor_set(path).tensors["b"])
    assert not torch.equal(mapped["b"], read_safetensors(str(path))["b"])  # the write was real


def test_read_safetensors_refuses_a_size_the_header_contradicts(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.randn(4, 4), "b": torch.randn(4)}, str(path))
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    text = raw[8 : 8 + n].decode().replace("[4,4]", "[4,5]")  # same length: a 4x5 claim
    assert text != raw[8 : 8 + n].decode()
    path.write_bytes(raw[:8] + text.encode() + raw[8 + n :])
    with pytest.raises(LoadError, match=r"tensor a: corrupt safetensors header") as err:
        read_safetensors(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_truncated_safetensors_is_one_line_naming_the_file(tmp_path: Path, cut: float) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.randn(64), "b": torch.randn(32)}, str(path))
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * cut)])
    with pytest.raises(LoadError, match="truncated") as err:
        read_safetensors(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_loaded_files_hold_no_file_descriptor(tmp_path: Path) -> None:
    import os

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.randn(64, 64)}, str(path))
    before = len(os.listdir("/proc/self/fd"))
    held = [read_safetensors(str(path)) for _ in range(50)]  # a zoo in memory: 50 mappings
    assert len(os.listdir("/proc/self/fd")) <= before + 1
    assert all(torch.equal(h["a"], held[0]["a"]) for h in held)
