"""``--inputs input_ids,attention_mask`` on ``zoolens inspect`` and ``zoolens embed``: a Hugging
Face text model read with its attention mask as a second input; bad names, other sources and
``--ray`` refused in one line with exit code 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.cli.test_inspect import run_cli
from tests.ir import hf_models

from zoolens.examples import example_path

MASKED = "input_ids,attention_mask"


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str, object]:
    """A tiny BERT dir, its FFN units permuted in every layer (an exact symmetry), and its
    first layer's FFN rows rolled without their readers (not a symmetry)."""
    root = tmp_path_factory.mktemp("bert")
    model = hf_models.save("bert", str(root / "bert"))
    twin = hf_models.save("bert", str(root / "unused"))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for layer in twin.encoder.layer:  # type: ignore[attr-defined]
            up, down = layer.intermediate.dense, layer.output.dense
            p = torch.randperm(up.out_features, generator=g)
            up.weight.copy_(up.weight[p])
            up.bias.copy_(up.bias[p])
            down.weight.copy_(down.weight[:, p])
    twin.save_pretrained(str(root / "twin"))
    with torch.no_grad():
        up = twin.encoder.layer[0].intermediate.dense  # type: ignore[attr-defined]
        up.weight.copy_(up.weight.roll(1, dims=0))
        up.bias.copy_(up.bias.roll(1))
    twin.save_pretrained(str(root / "rolled"))
    return str(root / "bert"), str(root / "twin"), str(root / "rolled"), model


def test_inspect_reads_the_mask_as_a_second_input(
    bert: tuple, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    path, _, _, model = bert
    code, out, err = run_cli(["inspect", path, "--inputs", MASKED, "--json"], monkeypatch, capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["kind"] == "Net" and report["extra_inputs"] == ["attention_mask"]
    assert report["num_params"] == sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]
    assert any(layer["kind"] == "sdpa" for layer in report["layers"])
    code, out, _ = run_cli(["inspect", path, "--inputs", MASKED], monkeypatch, capsys)
    assert code == 0 and "also reads attention_mask" in out.splitlines()[0]
    for flags in ([], ["--inputs", "input_ids"]):  # the default: the ids alone
        code, out, _ = run_cli(["inspect", path, "--json", *flags], monkeypatch, capsys)
        assert code == 0 and json.loads(out)["extra_inputs"] == []


def test_embed_with_the_mask_is_the_masked_nets_embedding(
    bert: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows are the library's embeddings of ``load_net(DIR, inputs=...)``, in input order; the
    mask adds no weights (the same vector as the ids alone); a directory whose FFN units are
    permuted embeds the same (cos ≥ 0.9999), one whose units are rolled without their readers
    does not (sensitivity)."""
    from zoolens.ir import load_net
    from zoolens.nn import load_encoder

    path, twin, rolled, _ = bert
    out = tmp_path / "z.npy"
    args = ["embed", path, twin, rolled, "--out", str(out), "--inputs", MASKED]
    code, stdout, err = run_cli([*args, "--batch-size", "2"], monkeypatch, capsys)
    assert code == 0, err
    assert "embedded 3 model(s)" in stdout
    z = np.load(out).astype(np.float64)
    enc = load_encoder("default")
    net = load_net(path, inputs=("input_ids", "attention_mask"))
    np.testing.assert_allclose(z[0], enc.encode([net])[0], atol=1e-5)
    assert float(z[0] @ enc.encode([load_net(path)])[0]) >= 0.9999
    assert float(z[0] @ z[1]) >= 0.9999
    assert 1 - float(z[0] @ z[2]) > 10 * max(1 - float(z[0] @ z[1]), 1e-6)


@pytest.mark.parametrize("command", ["inspect", "embed"])
def test_bad_inputs_are_one_line_and_exit_2(
    command: str,
    bert: tuple,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = ["--out", str(tmp_path / "z.npy")] if command == "embed" else []
    cases = [
        (bert[0], "input_ids,token_type_ids", "--inputs 'input_ids,token_type_ids'"),
        (bert[0], "attention_mask", "expected input_ids or input_ids,attention_mask"),
        (example_path("mlp_digits"), MASKED, "Hugging Face model directories only"),
    ]
    for path, names, message in cases:
        code, _, err = run_cli([command, path, "--inputs", names, *out], monkeypatch, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "z.npy").exists()


def test_embed_refuses_inputs_with_ray(
    bert: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["embed", bert[0], "-o", str(tmp_path / "z.npy"), "--inputs", MASKED, "--ray", "local"]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and err.strip() == (
        "zoolens: error: --inputs is not read with --ray: embed these models locally"
    )
