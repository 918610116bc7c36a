"""The shipped example networks load and do what their metadata says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoolens.examples import EXAMPLES, example_path
from zoolens.examples.make_examples import load_digits_split
from zoolens.ir import Net, load_net


def test_mlp_digits_classifies_digits() -> None:
    net = load_net(example_path("mlp_digits"))
    assert isinstance(net, Net)
    assert net.input_shape == (64,) and net.num_params() == 64 * 32 + 32 + 32 * 10 + 10
    _, _, x_te, y_te = load_digits_split(seed=int(net.meta["seed"]))
    with torch.no_grad():
        pred = net(torch.from_numpy(x_te)).argmax(1).numpy()
    acc = float(np.mean(pred == y_te))
    assert acc >= 0.9
    assert acc == pytest.approx(net.meta["test_accuracy"], abs=1e-3)


def test_every_example_is_a_net_directory() -> None:
    for name in EXAMPLES:
        assert isinstance(load_net(example_path(name)), Net)
    with pytest.raises(KeyError, match="mlp_digits"):
        example_path("nope")
