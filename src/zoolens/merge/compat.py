"""Two nets of one architecture: the check that says what differs, and shared names."""

from __future__ import annotations

import json
from typing import Any

from zoolens.errors import ArchitectureMismatchError
from zoolens.ir import Net


def check_same_architecture(a: Net, b: Net, names: tuple[str, str] = ("A", "B")) -> None:
    """Raise `ArchitectureMismatchError` naming the first difference between `a` and `b`.

    Op and value names may differ (one net from ONNX, one from torch.fx); kinds,
    activations, settings, wiring and tensor shapes must match op by op.
    """
    na, nb = names
    for name, net in ((na, a), (nb, b)):
        if net.extra_inputs:  # activations are taken from the data input alone
            raise ArchitectureMismatchError(
                f"{name} also reads {', '.join(net.extra_inputs)}; align and merge take nets "
                "of one input: load it without the extra inputs"
            )
    if tuple(a.input_shape) != tuple(b.input_shape):
        raise ArchitectureMismatchError(
            f"{na} and {nb} differ in input shape: {tuple(a.input_shape)} vs "
            f"{tuple(b.input_shape)}; align and merge need two nets of one architecture"
        )
    pos_a, pos_b = _positions(a), _positions(b)
    for i, (oa, ob) in enumerate(zip(a.ops, b.ops, strict=False)):
        where = f"op {i} ({na} {oa.name!r}, {nb} {ob.name!r})"
        if (oa.kind, oa.fn) != (ob.kind, ob.fn):
            raise ArchitectureMismatchError(f"{where}: kind {oa.fn} vs {ob.fn}")
        if [pos_a[v] for v in oa.inputs] != [pos_b[v] for v in ob.inputs]:
            raise ArchitectureMismatchError(f"{where}: the ops read different inputs")
        if _plain(oa.attrs) != _plain(ob.attrs):
            raise ArchitectureMismatchError(f"{where}: settings {oa.attrs} vs {ob.attrs}")
        if sorted(oa.params) != sorted(ob.params):
            raise ArchitectureMismatchError(
                f"{where}: tensors {sorted(oa.params)} vs {sorted(ob.params)}"
            )
        for role, t in oa.params.items():
            if t.shape != ob.params[role].shape:
                raise ArchitectureMismatchError(
                    f"{where}: tensor {role} has shape {tuple(t.shape)} vs "
                    f"{tuple(ob.params[role].shape)}"
                )
    if len(a.ops) != len(b.ops):
        raise ArchitectureMismatchError(
            f"{na} has {len(a.ops)} ops and {nb} {len(b.ops)}; the first "
            f"{min(len(a.ops), len(b.ops))} match"
        )
    if pos_a[a.output] != pos_b[b.output]:
        raise ArchitectureMismatchError(f"{na} and {nb} output different values")


def _plain(attrs: dict[str, Any]) -> Any:
    """Settings as JSON data (a tuple from one importer equals a list from another)."""
    return json.loads(json.dumps(attrs, sort_keys=True, default=str))


def _positions(net: Net) -> dict[str, int]:
    """value name → index of the op writing it (-1 for the input)."""
    return {net.input: -1, **{op.output: i for i, op in enumerate(net.ops)}}


def with_names_of(net: Net, like: Net) -> Net:
    """A copy of `like` holding `net`'s tensors (and meta): `net` under `like`'s names.

    Call after `check_same_architecture(like, net)`.
    """
    out = like.clone()
    for op, src in zip(out.ops, net.ops, strict=True):
        op.params = {role: src.params[role].clone() for role in op.params}
    out.meta = dict(net.meta)
    return out
