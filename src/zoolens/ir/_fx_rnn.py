"""fx translation of recurrent modules, concatenation and splitting.

Private to `zoolens.ir.fx_import`. A batch-first sequence ``(B, T, F)`` of the traced
module is held in the IR as ``(B, F, T)`` (units on axis 1): `FxRnn.transposed` names the
fx values held that way; a consumer this module does not translate reads them through a
``transpose`` op (`FxRnn.materialise`), so the function is always kept.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx
from torch import nn

from zoolens.errors import UnsupportedOpError
from zoolens.ir.ops import Op

_SPLITS = ("split", "chunk")


def _rnn_params(m: nn.RNNBase, layer: int, suffix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    for role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        t = getattr(m, f"{role}_l{layer}{suffix}", None)
        if t is not None:
            out[role] = t.detach().clone()
    return out


class FxRnn:
    """Translates the fx nodes that involve sequences or tuples of tensors.

    Args:
        alias: the importer's fx name → IR value map (shared, updated here).
        ops: the importer's op list (shared, appended to).
        modules: the traced module's submodules by name.
    """

    def __init__(self, alias: dict[str, str], ops: list[Op], modules: dict[str, Any]) -> None:
        self.alias, self.ops, self.modules = alias, ops, modules
        self.transposed: dict[str, str] = {}  # fx name → IR value (B, F, T)
        self._tuples: dict[str, tuple[str, ...]] = {}  # fx name → IR values of its items
        self._splits: dict[str, tuple[str, list[tuple[int, int]]]] = {}
        self._plain: dict[str, str] = {}

    def materialise(self, name: str) -> str:
        """IR value of fx value `name` in the traced module's own layout."""
        if name not in self.transposed:
            return self.alias.get(name, name)
        if name not in self._plain:
            out = f"{name}_btf"
            self.ops.append(
                Op(out, "transpose", (self.transposed[name],), out, {}, {"perm": [1, 0]})
            )
            self._plain[name] = out
        return self._plain[name]

    def _sequence(self, a: Any) -> str:
        """IR value ``(B, F, T)`` of a batch-first sequence fx value `a`."""
        if a.name in self.transposed:
            return self.transposed[a.name]
        out = f"{a.name}_bft"
        if not any(op.name == out for op in self.ops):
            src = self.alias.get(a.name, a.name)
            self.ops.append(Op(out, "transpose", (src,), out, {}, {"perm": [1, 0]}))
        return out

    def handle(self, node: torch.fx.Node) -> bool:
        """Translate `node` if it is one of ours; returns whether it was."""
        t = node.target
        if node.op == "call_module" and isinstance(self.modules[str(t)], (nn.LSTM, nn.GRU)):
            self._rnn(node, self.modules[str(t)])
        elif t is operator.getitem and isinstance(node.args[0], torch.fx.Node):
            return self._getitem(node)
        elif t is torch.cat or (node.op == "call_method" and t == "cat"):
            return self._cat(node)
        elif t in (torch.split, torch.chunk) or (node.op == "call_method" and t in _SPLITS):
            self._split(node)
        elif t in (torch.transpose, "transpose", "permute", torch.permute):
            return self._swap(node)
        else:
            return False
        return True

    def _rnn(self, node: torch.fx.Node, m: nn.RNNBase) -> None:
        name = str(node.target)
        if not m.batch_first or int(getattr(m, "proj_size", 0)):
            raise UnsupportedOpError(
                f"module {name!r}: {type(m).__name__} with batch_first={m.batch_first}, "
                f"proj_size={getattr(m, 'proj_size', 0)} (need batch_first=True, no projection)"
            )
        if len(node.args) > 1 or node.kwargs:
            raise UnsupportedOpError(f"module {name!r}: an initial state is not supported")
        kind = "lstm" if isinstance(m, nn.LSTM) else "gru"
        value = self._sequence(node.args[0])
        for layer in range(m.num_layers):
            op_name = name.replace(".", "_") + (f"_l{layer}" if m.num_layers > 1 else "")
            self.ops.append(Op(op_name, kind, (value,), op_name, _rnn_params(m, layer)))
            if m.bidirectional:  # the backward cell, its states concatenated after
                back, both = f"{op_name}_reverse", f"{op_name}_both"
                params = _rnn_params(m, layer, "_reverse")
                self.ops.append(Op(back, kind, (value,), back, params, {"reverse": True}))
                self.ops.append(Op(both, "concat", (op_name, back), both))
                op_name = both
            value = op_name
        self._tuples[node.name] = (value, "")  # (output, final state: not supported)

    def _getitem(self, node: torch.fx.Node) -> bool:
        src, idx = node.args[0], node.args[1]
        assert isinstance(src, torch.fx.Node)
        if src.name in self._tuples:
            item = self._tuples[src.name][idx] if isinstance(idx, int) else ""
            if not item and not node.users:  # `out, _ = rnn(x)`: the state is never read
                return True
            if not item:
                raise UnsupportedOpError(
                    f"fx node {node.name!r}: only the output sequence of an LSTM/GRU is "
                    "supported (not its final state; take output[:, -1] instead)"
                )
            self.transposed[node.name] = item
            return True
        if src.name in self._splits:
            value, bounds = self._splits[src.name]
            start, stop = bounds[_int(idx)]
            self.ops.append(
                Op(node.name, "split", (value,), node.name, {}, {"start": start, "stop": stop})
            )
            return True
        if src.name in self.transposed and _is_last_step(idx):
            self.ops.append(
                Op(
                    node.name,
                    "select",
                    (self.transposed[src.name],),
                    node.name,
                    attrs={"index": -1},
                )
            )
            return True
        return False

    def _swap(self, node: torch.fx.Node) -> bool:
        """``x.transpose(1, 2)`` / ``x.permute(0, 2, 1)`` of a rank-3 value: a relabelling."""
        x, args = node.args[0], list(node.args[1:])
        if len(args) == 1 and isinstance(args[0], (list, tuple)):
            args = list(args[0])
        dims = [_int(d) % 3 for d in args]
        meta = node.meta.get("tensor_meta")
        if not isinstance(x, torch.fx.Node) or meta is None or len(meta.shape) != 3:
            return False
        if sorted(dims) != [1, 2] and dims != [0, 2, 1]:
            return False
        if x.name in self.transposed:  # back to the IR layout
            self.alias[node.name] = self.transposed[x.name]
        else:
            self.transposed[node.name] = self.alias.get(x.name, x.name)
        return True

    def _cat(self, node: torch.fx.Node) -> bool:
        xs: list[Any] = list(node.args[0])  # type: ignore[arg-type]
        rank = len(_meta_shape(node))
        dim = _int(node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)) % rank
        if any(not isinstance(x, torch.fx.Node) for x in xs):
            raise UnsupportedOpError(f"fx node {node.name!r}: cat of a constant")
        if all(x.name in self.transposed for x in xs) and rank == 3 and dim == 2:
            ins = tuple(self.transposed[x.name] for x in xs)
            self.ops.append(Op(node.name, "concat", ins, node.name))
            self.transposed[node.name] = node.name
            return True
        if dim != 1:
            raise UnsupportedOpError(f"fx node {node.name!r}: cat along dim {dim} (only 1)")
        ins = tuple(self.materialise(x.name) for x in xs)
        self.ops.append(Op(node.name, "concat", ins, node.name))
        return True

    def _split(self, node: torch.fx.Node) -> None:
        x, arg = node.args[0], node.args[1]
        assert isinstance(x, torch.fx.Node)
        shape = _meta_shape(x)
        dim = _int(node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)) % len(shape)
        if dim != 1:
            raise UnsupportedOpError(f"fx node {node.name!r}: split along dim {dim} (only 1)")
        n = shape[1]
        if node.target in (torch.chunk, "chunk"):
            size = -(-n // _int(arg))
            sizes = [min(size, n - s) for s in range(0, n, size)]
        elif isinstance(arg, int):
            sizes = [arg] * (-(-n // arg))
            sizes[-1] = n - sum(sizes[:-1])
        else:
            sizes = [_int(a) for a in arg]  # type: ignore[union-attr]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self._splits[node.name] = (
            self.materialise(x.name),
            [(s, s + k) for s, k in zip(starts, sizes, strict=True)],
        )


def _int(a: Any) -> int:
    """An fx argument that must be an int (a dim, a size, an index)."""
    if not isinstance(a, int):
        raise UnsupportedOpError(f"fx argument {a!r}: a constant int is needed")
    return a


def _meta_shape(node: torch.fx.Node) -> list[int]:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        raise UnsupportedOpError(f"fx node {node.name!r}: unknown shape")
    return [int(d) for d in meta.shape]


def _is_last_step(idx: Any) -> bool:
    """``[:, -1]`` or ``[:, -1, :]`` on a ``(B, T, F)`` tensor."""
    if not isinstance(idx, tuple) or len(idx) not in (2, 3):
        return False
    full = slice(None, None, None)
    return idx[0] == full and idx[1] == -1 and all(i == full for i in idx[2:])
