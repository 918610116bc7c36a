"""Where each axis of a traced tensor lives in an IR value: the layout algebra of the
torch.export importer.

An IR value is ``(B, U, *S)``: batch, units, spatial positions. A tensor of the traced
program holds the same numbers arranged differently — ``(B, T, D)`` for a transformer's
hidden states, ``(B, H, T, d)`` for its heads, ``(B*T, D)`` inside GPT-2's Conv1D. Each traced
axis is described by the *atoms* it spans: factors of the batch (``B``), of the units
(``U``), of the positions (``S``), or a broadcast repeat (``R``). Views split and merge atoms,
transposes reorder axes; an op of the IR can be emitted when the traced tensor's atoms are
where that op expects them (a linear map needs every unit atom, in order, on the last axis).

Private to `zoolens.ir.export_import`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from zoolens.errors import UnsupportedOpError


@dataclass(eq=False)
class Atom:
    """One factor of an axis: ``kind`` is ``B``, ``U``, ``S`` or ``R`` (identity by object)."""

    kind: str
    size: int


Axis = tuple[Atom, ...]


@dataclass
class Dyn:
    """A traced tensor that depends on the input's values, laid out over IR value `value`.

    Args:
        value: name of the IR value holding its numbers.
        axes: atoms of each traced axis, outer to inner (an empty axis has size 1).
        units: the IR value's unit atoms, row-major.
        space: the IR value's position atoms, row-major over `sdims`.
        sdims: the IR value's spatial shape.
        rope: ``(cos, sin)`` tables ``(T, d)`` when rotary embedding was applied to it.
    """

    value: str
    axes: tuple[Axis, ...]
    units: tuple[Atom, ...]
    space: tuple[Atom, ...]
    sdims: tuple[int, ...]
    rope: tuple[object, object] | None = field(default=None, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(math.prod(a.size for a in ax) for ax in self.axes)

    def with_axes(self, axes: tuple[Axis, ...]) -> Dyn:
        return replace(self, axes=axes)


def canonical(value: str, units: int, sdims: tuple[int, ...], batch: Atom) -> Dyn:
    """The traced tensor that is IR value `value` itself: ``(B, U, *S)``."""
    u = (Atom("U", units),) if units > 1 else ()
    spatial = tuple((Atom("S", n),) if n > 1 else () for n in sdims)
    s = tuple(a for ax in spatial for a in ax)
    return Dyn(value, ((batch,), u, *spatial), u, s, sdims)


def is_canonical(d: Dyn) -> bool:
    """True when the traced tensor is laid out as its IR value ``(B, U, *S)``."""
    if len(d.axes) != 2 + len(d.sdims) or tuple(a.kind for a in d.axes[0]) != ("B",):
        return False
    if d.axes[1] != d.units:
        return False
    rest = d.axes[2:]
    return (
        all(
            math.prod(a.size for a in ax) == n and all(a.kind == "S" for a in ax)
            for ax, n in zip(rest, d.sdims, strict=True)
        )
        and tuple(a for ax in rest for a in ax) == d.space
    )


def unit_axis(d: Dyn) -> int | None:
    """The traced axis that holds every unit atom in order (and nothing else), if any."""
    for i, ax in enumerate(d.axes):
        if ax == d.units and (ax or all(a.kind != "U" for x in d.axes for a in x)):
            return i
    return None


def view(d: Dyn, shape: list[int]) -> Dyn:
    """`d` reshaped to `shape` (row-major), splitting atoms where an axis boundary cuts one."""
    total = math.prod(d.shape)
    sizes = list(shape)
    if sizes.count(-1) == 1:
        known = math.prod(s for s in sizes if s != -1)
        sizes[sizes.index(-1)] = total // known if known else 0
    if math.prod(sizes) != total:
        raise UnsupportedOpError(f"reshape of {list(d.shape)} to {list(shape)}")
    flat = [a for ax in d.axes for a in ax]
    splits: dict[int, tuple[Atom, Atom]] = {}
    axes: list[Axis] = []
    i = 0
    for n in sizes:
        axis: list[Atom] = []
        prod = 1
        while prod < n:
            if i >= len(flat) or n % prod:
                raise UnsupportedOpError(f"reshape of {list(d.shape)} to {list(shape)}")
            a = flat[i]
            if n % (prod * a.size) == 0:
                axis.append(a)
                prod *= a.size
                i += 1
            elif a.size % (n // prod) == 0:
                outer, inner = Atom(a.kind, n // prod), Atom(a.kind, a.size // (n // prod))
                splits[id(a)] = (outer, inner)
                flat[i] = inner
                axis.append(outer)
                prod = n
            else:
                raise UnsupportedOpError(f"reshape of {list(d.shape)} to {list(shape)}")
        axes.append(tuple(axis))
    if i != len(flat):
        raise UnsupportedOpError(f"reshape of {list(d.shape)} to {list(shape)}")
    return replace(
        d,
        axes=tuple(axes),
        units=_refine(d.units, splits),
        space=_refine(d.space, splits),
    )


def _refine(atoms: tuple[Atom, ...], splits: dict[int, tuple[Atom, Atom]]) -> tuple[Atom, ...]:
    out: list[Atom] = []
    for a in atoms:
        while id(a) in splits:
            outer, a = splits[id(a)]
            out.append(outer)
        out.append(a)
    return tuple(out)


def permute(d: Dyn, dims: list[int]) -> Dyn:
    n = len(d.axes)
    return d.with_axes(tuple(d.axes[p % n] for p in dims))


def transpose(d: Dyn, i: int, j: int) -> Dyn:
    dims = list(range(len(d.axes)))
    i, j = i % len(dims), j % len(dims)
    dims[i], dims[j] = dims[j], dims[i]
    return permute(d, dims)


def unsqueeze(d: Dyn, dim: int) -> Dyn:
    axes = list(d.axes)
    axes.insert(dim % (len(axes) + 1), ())
    return d.with_axes(tuple(axes))


def squeeze(d: Dyn, dims: list[int]) -> Dyn:
    n = len(d.axes)
    drop = {x % n for x in dims if d.shape[x % n] == 1}
    return d.with_axes(tuple(ax for i, ax in enumerate(d.axes) if i not in drop))


def expand(d: Dyn, sizes: list[int]) -> Dyn:
    """Broadcast size-1 axes: the new extent is a repeat atom (the values do not vary on it)."""
    lead = len(sizes) - len(d.axes)
    axes: list[Axis] = [(Atom("R", s),) if s > 1 else () for s in sizes[:lead]]
    for ax, s, have in zip(d.axes, sizes[lead:], d.shape, strict=True):
        axes.append(ax if s in (-1, have) else (Atom("R", s),))
    return d.with_axes(tuple(axes))


def flatten(d: Dyn, start: int, end: int) -> Dyn:
    n = len(d.axes)
    start, end = start % n, end % n
    merged = tuple(a for ax in d.axes[start : end + 1] for a in ax)
    return d.with_axes((*d.axes[:start], merged, *d.axes[end + 1 :]))


def heads(ax: Axis) -> tuple[int, int]:
    """``(unit-atom product, repeat product)`` of a head axis: kv heads and their repeat."""
    if any(a.kind not in ("U", "R") for a in ax):
        raise UnsupportedOpError("attention heads axis mixes batch or positions")
    return (
        math.prod(a.size for a in ax if a.kind == "U"),
        math.prod(a.size for a in ax if a.kind == "R"),
    )
