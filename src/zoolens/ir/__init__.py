"""The IR: `Net`, an executable, framework-neutral description of a trained network."""

from zoolens.ir.io import load_net_dir, save_net
from zoolens.ir.load import load_net
from zoolens.ir.net import Net, ValueInfo
from zoolens.ir.ops import ACTIVATIONS, DENSE_KINDS, KINDS, UNITWISE_KINDS, Op
from zoolens.ir.tensorset import TensorSet

__all__ = [
    "ACTIVATIONS",
    "DENSE_KINDS",
    "KINDS",
    "UNITWISE_KINDS",
    "Net",
    "Op",
    "TensorSet",
    "ValueInfo",
    "load_net",
    "load_net_dir",
    "save_net",
]
