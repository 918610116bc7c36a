"""`export_onnx`: a Net written as ONNX computes the net's function (onnxruntime) and, for the
families the ONNX importer reads, comes back as an equal Net."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from zoolens.errors import ZoolensError
from zoolens.ir import Net, load_net
from zoolens.ir.onnx_export import export_onnx
from zoolens.testing import SEQ_FAMILIES, seq_input, seq_net

ort = pytest.importorskip("onnxruntime")


def test_a_cnn_round_trips_through_onnx(tmp_path) -> None:
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    ).eval()
    net = load_net(m, input_shape=(1, 8, 8))
    path = str(tmp_path / "cnn.onnx")
    export_onnx(net, path)
    back = load_net(path)
    x = torch.randn(5, 1, 8, 8)  # another batch size than the export's
    assert isinstance(back, Net)
    assert torch.allclose(back(x), net(x), atol=1e-5)
    assert back.num_params() == net.num_params()


@pytest.mark.parametrize("family", SEQ_FAMILIES)
def test_transformers_export_to_onnx_runtime(family: str, tmp_path) -> None:
    net = seq_net(family, torch.Generator().manual_seed(0)).to(torch.float32)
    path = str(tmp_path / f"{family}.onnx")
    export_onnx(net, path)
    x = seq_input(net, torch.Generator().manual_seed(1), n=3)
    feed = (
        x.long().numpy() if net.consumers(net.input)[0].kind == "embedding" else x.float().numpy()
    )
    got = ort.InferenceSession(path).run(None, {"input": feed})[0]
    want = net(torch.as_tensor(feed)).detach().numpy()
    assert np.allclose(got, want, atol=1e-5)
    other = seq_net(family, torch.Generator().manual_seed(1)).to(torch.float32)
    assert not np.allclose(got, other(torch.as_tensor(feed)).detach().numpy(), atol=1e-3)


def test_an_unwritable_path_is_one_error(tmp_path) -> None:
    net = seq_net("gpt2", torch.Generator().manual_seed(0))
    (tmp_path / "f").write_text("x")
    with pytest.raises(ZoolensError, match="could not be exported"):
        export_onnx(net, str(tmp_path / "f" / "a.onnx"))
