"""State of the torch.export importer: folded constants, the ops emitted so far, and how a
pending value becomes an IR value.

Private to `zoolens.ir.export_import`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from zoolens.errors import UnsupportedOpError
from zoolens.ir._export_layout import Atom, Dyn
from zoolens.ir._export_patterns import Expr, Pending, activation
from zoolens.ir.ops import Op


@dataclass
class Const:
    """A folded tensor. `param`: the parameter it is (or is derived from); `table`, `ids`: the
    parameter table and the row ids it was gathered with (an embedding of constant ids)."""

    value: torch.Tensor
    param: str | None = None
    ids: torch.Tensor | None = None
    table: torch.Tensor | None = None


@dataclass
class Context:
    """What the translation has built so far."""

    params: dict[str, str]  # placeholder name → parameter FQN
    ops: list[Op] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    used: dict[str, list[str]] = field(default_factory=dict)  # FQN → ["op.role", ...]
    consumers: dict[str, int] = field(default_factory=dict)  # traced node → user count
    implied: list[str] = field(default_factory=list)  # "op.role" tensors not in the model
    batch: Atom = field(default_factory=lambda: Atom("B", 1))
    counter: int = 0

    def name(self, hint: str) -> str:
        base = hint.removesuffix(".weight").removesuffix(".bias") or "op"
        name, i = base, 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def emit(
        self,
        kind: str,
        inputs: tuple[str, ...],
        hint: str,
        params: dict[str, Any] | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> Op:
        """Append an op; `params` values are tensors or `Const`s (their parameter is recorded)."""
        name = self.name(hint)
        tensors: dict[str, torch.Tensor] = {}
        for role, p in (params or {}).items():
            if isinstance(p, Const):
                if p.param is not None:
                    self.used.setdefault(p.param, []).append(f"{name}.{role}")
                p = p.value
            tensors[role] = p.detach().clone().contiguous()
        op = Op(name, kind, inputs, f"v{len(self.ops)}_{name}", tensors, attrs or {})
        self.ops.append(op)
        return op


Value = Dyn | Pending | Const | Any


def replay(
    target: Any, args: tuple[Any, ...], kw: dict[str, Any], leaf: Callable[[Any], Any]
) -> Any:
    """Call the traced `target` again on `args` / `kw` with every `Const` replaced by its
    value and every other leaf `v` by ``leaf(v)`` (lists and tuples walked through)."""

    def run(v: Any) -> Any:
        if isinstance(v, Const):
            return v.value
        if isinstance(v, (list, tuple)):
            return type(v)(run(x) for x in v)
        return leaf(v)

    return target(*run(list(args)), **{k: run(v) for k, v in kw.items()})


def materialise(ctx: Context, v: Value, reader: str) -> Dyn:
    """`v` as a `Dyn`: an elementwise `Expr` becomes an activation op; other pending
    values cannot be read by `reader`."""
    if isinstance(v, Dyn):
        return v
    if isinstance(v, Expr):
        found = activation(v.fn)
        if found is None:
            raise UnsupportedOpError(f"an elementwise function read by {reader} is no activation")
        name, attrs = found
        if name == "identity":
            return v.src
        if name == "scale":
            op = ctx.emit("scale", (v.src.value,), "scale", attrs=attrs)
        else:
            op = ctx.emit("act", (v.src.value,), name, attrs={"fn": name, **attrs})
        return _renamed(v.src, op.output)
    raise UnsupportedOpError(f"{reader} reads a partial {type(v).__name__} pattern")


def _renamed(d: Dyn, value: str) -> Dyn:
    return Dyn(value, d.axes, d.units, d.space, d.sdims)
