"""``zoolens fit-head`` and ``zoolens predict`` through the real entry point (in process,
so a test takes milliseconds, not a torch import): output lines, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest

from cli_runner import run_zoolens
from zoolens.nn import Head, WeightStats
from zoolens.testing.zoos import write_label_zoo

zoolens = run_zoolens


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = str(tmp_path_factory.mktemp("zoo") / "labels")
    write_label_zoo(out)
    return out


def test_fit_head_then_predict(zoo_dir, tmp_path, capsys):
    head_dir = str(tmp_path / "task-head")
    code, out, err = zoolens(
        capsys,
        "fit-head",
        "--zoo",
        zoo_dir,
        "--label",
        "task",
        "--out",
        head_dir,
        "--encoder",
        "weight-stats",
    )
    assert code == 0, err
    assert "val accuracy 1.0000" in out and "majority class baseline 0.5000" in out
    head = Head.load(head_dir)
    assert head.config.encoder_source == "weight-stats"
    paths = [f"{zoo_dir}/models/m{i:03d}" for i in (8, 9, 18, 19)]  # test split, both tasks
    code, out, err = zoolens(capsys, "predict", *paths, "--head", head_dir)  # encoder recorded
    assert code == 0, err
    lines = out.strip().splitlines()
    assert [line.split("\t")[:2] for line in lines] == [
        [paths[0], "quiet"],
        [paths[1], "loud"],
        [paths[2], "quiet"],
        [paths[3], "loud"],
    ]
    code, out, _ = zoolens(capsys, "predict", *paths, "--head", head_dir, "--json")
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["prediction"] for r in rows] == ["quiet", "loud", "quiet", "loud"]
    assert all(r["label"] == "task" and 0.5 < r["probability"] <= 1.0 for r in rows)


def test_regression_head(zoo_dir, tmp_path, capsys):
    head_dir = str(tmp_path / "acc-head")
    code, out, err = zoolens(
        capsys,
        "fit-head",
        "-z",
        zoo_dir,
        "-l",
        "accuracy",
        "-o",
        head_dir,
        "-e",
        "weight-stats",
        "--kind",
        "regress",
    )
    assert code == 0 and "val r2" in out and "train mean baseline" in out, err
    code, out, _ = zoolens(capsys, "predict", f"{zoo_dir}/models/m008", "--head", head_dir)
    assert code == 0 and 0.0 < float(out.split("\t")[1]) < 1.0


def one_line_error(code: int, out: str, err: str) -> str:
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_bad_inputs_are_one_line_errors(zoo_dir, tmp_path, capsys):
    fit = ["fit-head", "--zoo", zoo_dir, "--out", str(tmp_path / "h"), "-e", "weight-stats"]
    err = one_line_error(*zoolens(capsys, *fit, "--label", "nope"))
    assert "no label column 'nope'" in err
    err = one_line_error(*zoolens(capsys, *fit, "--label", "family"))
    assert "one class" in err
    err = one_line_error(*zoolens(capsys, *fit, "--label", "task", "--kind", "sort"))
    assert "--kind" in err
    model = f"{zoo_dir}/models/m000"
    err = one_line_error(*zoolens(capsys, "predict", model, "--head", str(tmp_path / "none")))
    assert "no such head directory" in err
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "config.json").write_text("{")
    err = one_line_error(*zoolens(capsys, "predict", model, "--head", str(tmp_path / "corrupt")))
    assert "not a saved zoolens head" in err
    code, _, _ = zoolens(capsys, *fit, "--label", "task")
    assert code == 0
    other = tmp_path / "other-encoder"
    WeightStats({"n_first": 2}).save(str(other))
    err = one_line_error(
        *zoolens(capsys, "predict", model, "--head", str(tmp_path / "h"), "-e", str(other))
    )
    assert "fitted on embeddings of encoder" in err
