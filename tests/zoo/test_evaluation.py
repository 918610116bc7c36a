"""Every checkpoint loads as a Net and reproduces its recorded test metric."""

from __future__ import annotations

import math

import pytest

from zoolens.errors import ZoolensError
from zoolens.ir import Net, load_net
from zoolens.zoo import Zoo, evaluate, evaluate_metrics


def test_every_model_reproduces_its_recorded_metric(micro_zoo: Zoo) -> None:
    for net, row in micro_zoo:
        assert isinstance(load_net(micro_zoo.model_path(row["id"])), Net)
        column = {"classification": "accuracy", "regression": "r2", "inr": "psnr"}[row["kind"]]
        assert evaluate(net, row) == pytest.approx(row[column], rel=1e-6, abs=1e-9), row["id"]
        got = evaluate_metrics(net, row)
        assert got["test_loss"] == pytest.approx(row["test_loss"], rel=1e-5)


def test_metrics_follow_the_kind_conventions(micro_zoo: Zoo) -> None:
    for _, row in micro_zoo.manifest.iterrows():
        if row["kind"] == "classification":
            assert 0.0 <= row["accuracy"] <= 1.0 and math.isnan(row["r2"])
        elif row["kind"] == "regression":
            assert math.isnan(row["accuracy"]) and math.isfinite(row["r2"])
        else:
            assert math.isnan(row["accuracy"]) and row["psnr"] > 0 and 0 <= row["label"] <= 9


def test_unknown_task_is_a_clear_error(micro_zoo: Zoo) -> None:
    net = micro_zoo.load(str(micro_zoo.manifest["id"].iloc[0]))
    with pytest.raises(ZoolensError, match="no offline data"):
        evaluate(net, {"id": "x", "task": "imagenet"})
