"""``zoolens fit-decoder`` and ``zoolens synthesize`` through the real entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.cli_runner import run_zoolens
from tests.merge.test_synthesis import tiny_mlp

from zoolens.ir import Net, load_net
from zoolens.merge import Decoder, check_same_architecture, fit_decoder
from zoolens.merge.synthesis import flat_weights
from zoolens.nn import load_encoder
from zoolens.zoo.manifest import rows_to_frame, write_manifest
from zoolens.zoo.zoo import MODELS_DIR


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zoo of five tiny MLPs of one architecture and one of another width."""
    root = tmp_path_factory.mktemp("zoo")
    rows = []
    for i, width in enumerate([8, 8, 8, 8, 8, 9]):
        model_id = f"m{i}"
        tiny_mlp(i, width).save(str(root / MODELS_DIR / model_id))
        arch = f"mlp(in=6,width={width})"
        rows.append({"id": model_id, "family": "mlp", "arch": arch, "split": "train", "index": i})
    write_manifest(rows_to_frame(rows), str(root))
    return root


@pytest.fixture(scope="module")
def decoder_dir(zoo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A decoder fitted on the zoo's width-8 models through the library."""
    nets = [tiny_mlp(i) for i in range(5)]
    encoder = load_encoder("default")
    out = tmp_path_factory.mktemp("dec") / "decoder"
    fit_decoder(nets, encoder.encode(nets), {"steps": 100}, encoder_id=encoder.id).save(out)
    return out


def test_fit_decoder_fits_the_commonest_architecture_of_the_family(
    zoo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "decoder"
    args = ["fit-decoder", "--zoo", str(zoo_dir), "--family", "mlp", "--out", str(out)]
    code, stdout, err = run_zoolens(capsys, *args, "--steps", "50")
    assert code == 0, err
    assert "5 models of mlp(in=6,width=8)" in stdout
    dec = Decoder.load(out)
    assert dec.encoder_id_ == load_encoder("default").id
    check_same_architecture(tiny_mlp(0), dec.reference_)


def _model(zoo_dir: Path, i: int) -> str:
    return str(zoo_dir / MODELS_DIR / f"m{i}")


def test_synthesize_writes_a_net_of_the_family(
    zoo_dir: Path, decoder_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outs = []
    for alpha in ("0.2", "0.8"):
        out = tmp_path / f"child{alpha}"
        args = ["synthesize", _model(zoo_dir, 0), _model(zoo_dir, 1), "--alpha", alpha]
        code, _, err = run_zoolens(capsys, *args, "--decoder", str(decoder_dir), "--out", str(out))
        assert code == 0, err
        net = load_net(out)
        assert isinstance(net, Net)
        check_same_architecture(tiny_mlp(0), net)
        assert net(torch.randn(4, 6, dtype=torch.float64)).shape == (4, 3)
        outs.append(flat_weights(net))
    assert not torch.allclose(outs[0], outs[1])  # alpha reaches the weights


def test_synthesize_another_architecture_exits_2_in_one_line(
    zoo_dir: Path, decoder_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "child"
    args = ["synthesize", _model(zoo_dir, 0), _model(zoo_dir, 5), "--decoder", str(decoder_dir)]
    code, _, err = run_zoolens(capsys, *args, "--out", str(out))
    assert code == 2
    assert "B is not of the architecture" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_fit_decoder_unknown_family_exits_2(
    zoo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["fit-decoder", "--zoo", str(zoo_dir), "--family", "cnn", "--out", str(tmp_path / "d")]
    code, _, err = run_zoolens(capsys, *args)
    assert code == 2
    assert "no models of family 'cnn'" in err and len(err.strip().splitlines()) == 1
