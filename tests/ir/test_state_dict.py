"""Bare state dicts → a `Net` only where names and shapes fix the wiring (zoolens.ir.state_dict)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from zoolens.ir import Net, TensorSet, load_net
from zoolens.ir.state_dict import SAVE_INSTEAD


def _save(state: dict[str, torch.Tensor], path: Path) -> str:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return str(path)


@pytest.mark.parametrize("ext", [".pt", ".pth", ".bin", ".safetensors"])
@pytest.mark.parametrize("prefix", ["", "fc.", "module.head."])
def test_a_single_linear_is_a_net_computing_it(tmp_path: Path, ext: str, prefix: str) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(7, 3)
    state = {f"{prefix}{k}": v for k, v in layer.state_dict().items()}
    net = load_net(_save(state, tmp_path / f"logreg{ext}"))
    assert isinstance(net, Net) and net.meta["importer"] == "state_dict"
    assert net.input_shape == (7,) and net.num_params() == 7 * 3 + 3
    x = torch.randn(5, 7)
    with torch.no_grad():
        torch.testing.assert_close(net(x), layer(x))


def test_a_linear_nested_beside_optimizer_state_is_read(tmp_path: Path) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(4, 2)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    layer(torch.randn(3, 4)).sum().backward()
    opt.step()
    path = _save({"model_state_dict": layer.state_dict(), "optimizer": opt.state_dict()},
                 tmp_path / "ckpt.pt")  # fmt: skip
    net = load_net(path)
    assert isinstance(net, Net)
    x = torch.randn(3, 4)
    with torch.no_grad():
        torch.testing.assert_close(net(x), layer(x))


def test_the_net_holds_the_files_weights(tmp_path: Path) -> None:
    """Sensitivity: two files of one shape give two functions."""
    torch.manual_seed(0)
    a, b = nn.Linear(6, 2), nn.Linear(6, 2)
    na = load_net(_save(a.state_dict(), tmp_path / "a.pt"))
    nb = load_net(_save(b.state_dict(), tmp_path / "b.pt"))
    x = torch.randn(4, 6)
    assert isinstance(na, Net) and isinstance(nb, Net)
    assert not torch.allclose(na(x), nb(x), atol=1e-3)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_mlp, "an MLP's activations are not stored"),
        (_cnn, "a convolution's stride, padding"),
        (lambda: nn.Linear(4, 3, bias=False), "may be a Linear or an Embedding"),
        (lambda: nn.Embedding(10, 4), "may be a Linear or an Embedding"),
        (lambda: nn.LayerNorm(5), "how these 2 tensors connect"),
        (lambda: nn.LSTM(3, 4), "an MLP's activations"),  # matrices: never guessed as a net
    ],
)
def test_ambiguous_state_dicts_stay_tensor_sets_with_one_line_reason(
    tmp_path: Path, make, why: str
) -> None:
    torch.manual_seed(0)
    state = make().state_dict()
    ts = load_net(_save(state, tmp_path / "w.pt"))
    assert isinstance(ts, TensorSet)
    reason = ts.meta["reason"]
    assert why in reason and reason.endswith(SAVE_INSTEAD) and "\n" not in reason
    assert ts.num_params() == sum(v.numel() for v in state.values() if v.is_floating_point())


def test_weight_and_bias_of_two_layers_are_not_one_linear(tmp_path: Path) -> None:
    state = {"a.weight": torch.randn(3, 4), "b.bias": torch.randn(3)}
    assert isinstance(load_net(_save(state, tmp_path / "w.pt")), TensorSet)
    state = {"weight": torch.randn(3, 4), "bias": torch.randn(4)}  # bias of the wrong size
    assert isinstance(load_net(_save(state, tmp_path / "v.pt")), TensorSet)


def test_inspect_names_the_reason(tmp_path: Path, capsys) -> None:
    from tests.cli_runner import run_zoolens

    path = _save(_mlp().state_dict(), tmp_path / "mlp.pt")
    code, out, _ = run_zoolens(capsys, "inspect", path)
    assert code == 0 and "not read as a network: an MLP's activations" in out
    path = _save(nn.Linear(3, 2).state_dict(), tmp_path / "lin.pt")
    code, out, _ = run_zoolens(capsys, "inspect", path)
    assert code == 0 and "read as Net" in out and "not read as a network" not in out
