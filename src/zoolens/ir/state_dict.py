"""Bare state dicts: a `Net` only where the tensors' names and shapes fix the wiring.

A state dict stores parameters, not the function between them. Its key order and shapes
determine the network in one case only: a single ``Linear`` (a ``weight`` ``(out, in)`` and
its ``bias`` ``(out,)``, e.g. a logistic regression's logits). Everything else stays a
`TensorSet` whose ``meta["reason"]`` says in one line what the file does not hold:

* several chained matrices (an MLP): the activations between them;
* tensors of rank ≥ 3 (a CNN): stride, padding, pooling and the ops between layers;
* one matrix without bias: a ``Linear(bias=False)`` and an ``nn.Embedding`` look the same;
* anything else: how the tensors connect.
"""

from __future__ import annotations

from zoolens.ir.net import Net
from zoolens.ir.ops import Op
from zoolens.ir.tensorset import TensorSet

#: What to save instead, appended to every reason.
SAVE_INSTEAD = "save the module, an ONNX export or a zoolens directory (Net.save)"


def net_from_state_dict(ts: TensorSet) -> Net | TensorSet:
    """`ts` as a `Net` when it is a single Linear layer; else `ts` with ``meta["reason"]``.

    Args:
        ts: the tensors of a bare weight file (`zoolens.ir.weights.load_tensor_set`).

    Returns:
        A one-op `Net` (``linear``, input shape ``(in,)``, ``meta["importer"] ==
        "state_dict"``) or `ts` itself, its ``meta["reason"]`` set.
    """
    names = sorted(ts.tensors, key=lambda k: not k.endswith("weight"))  # safetensors sorts
    if len(names) == 2:
        w_name, b_name = names
        w, b = ts.tensors[w_name], ts.tensors[b_name]
        same_layer = w_name.removesuffix("weight") == b_name.removesuffix("bias")
        if (
            same_layer
            and w_name.endswith("weight")
            and b_name.endswith("bias")
            and w.dim() == 2
            and b.shape == (w.shape[0],)
        ):
            return _linear(ts, w_name, b_name)
    ts.meta["reason"] = f"{why_not_a_net(ts)}; {SAVE_INSTEAD}"
    return ts


def why_not_a_net(ts: TensorSet) -> str:
    """What a state dict that is not a single Linear leaves unknown, in a few words."""
    shapes = [tuple(t.shape) for t in ts.tensors.values()]
    if any(len(s) >= 3 for s in shapes):
        return (
            "a convolution's stride, padding and the ops between layers are not stored in a "
            "state dict"
        )
    matrices = [s for s in shapes if len(s) == 2]
    if len(matrices) == 1 and len(shapes) == 1:
        return "one matrix without bias may be a Linear or an Embedding"
    if len(matrices) >= 2:
        return "an MLP's activations are not stored in a state dict"
    return f"how these {len(shapes)} tensors connect is not stored in a state dict"


def _linear(ts: TensorSet, w_name: str, b_name: str) -> Net:
    w, b = ts.tensors[w_name], ts.tensors[b_name]
    name = w_name.removesuffix("weight").rstrip(".") or "linear"
    op = Op(name, "linear", ("input",), "output", {"weight": w, "bias": b})
    meta = {**ts.meta, "importer": "state_dict", "tensor_names": [w_name, b_name]}
    return Net([op], (int(w.shape[1]),), "input", "output", meta)
