"""Values the torch.export importer computes from the token ids alone: position ids that count
the non-padding tokens (RoBERTa's ``cumsum(ids != pad) * (ids != pad) + pad``).

Every traced op that computes from the token ids (an op with no handler of its own: ``ne``,
``cumsum``, ...) or from such a value, and reads no weight-dependent value, is kept as a
function of the ids (`TokenFn`), run on probe ids when its use is known: an embedding lookup of
it is accepted only when it equals the `zoolens.ir.ops_seq.padded_positions` of one of the
scalars the function compared the ids with, on probes holding that pad at the start, the end,
in the middle, everywhere and nowhere. The lookup (`PadPositions`) becomes a ``posembed`` op
with ``attrs["pad"]`` when it is added to the token embeddings. Anything else computed from the
token values is refused, naming the op.

Private to `zoolens.ir.export_import`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from zoolens.errors import UnsupportedOpError
from zoolens.ir._export_context import Const, Context, materialise, replay
from zoolens.ir._export_layout import Atom, Dyn
from zoolens.ir._export_ops import HANDLERS, IDENTITY, _same_layout
from zoolens.ir._export_patterns import Expr
from zoolens.ir.ops_seq import padded_positions


@dataclass
class TokenFn:
    """``fn(ids)``: a tensor computed from the token ids `src` ``(B, T)`` alone; `scalars`:
    the integers it compared the ids with (candidate padding ids)."""

    src: Dyn
    fn: Callable[[torch.Tensor], Any]
    scalars: tuple[int, ...] = ()


@dataclass
class PadPositions:
    """Rows of `table` ``(N, D)`` (a parameter) read at padding-aware positions of `src`."""

    src: Dyn
    table: Const
    pad: int


def is_token_input(v: Any) -> bool:
    return isinstance(v, Dyn) and v.value == "input" and not v.units


def _flat(args: Any) -> list[Any]:
    if isinstance(args, (list, tuple)):
        return [x for a in args for x in _flat(a)]
    return [args]


def token_value(
    ctx: Context, name: str, target: Any, args: tuple[Any, ...], kw: dict[str, Any]
) -> Any | None:
    """The translation of a traced op that reads a token-derived value; ``None`` when it reads
    none (or is the token embedding itself), for the ordinary handlers."""
    flat = _flat(list(args)) + _flat(list(kw.values()))
    pos = [a for a in flat if isinstance(a, PadPositions)]
    if pos:
        return _add_positions(ctx, name, args, kw, pos[0])
    toks = [a for a in flat if isinstance(a, TokenFn)]
    raw = [a for a in flat if is_token_input(a)]
    part = name == "slice" and raw and not toks and not _whole(target, raw[0], args, kw)
    if not toks and not part and (not raw or name in HANDLERS or name in IDENTITY):
        return None  # the ids themselves: embedded, or laid out, by the ordinary handlers
    if name == "embedding" and isinstance(args[0], Const) and isinstance(args[1], TokenFn):
        start = _shift_start(args[1], int(args[0].value.shape[0]))
        if start is not None:
            return _shifted_embedding(ctx, args[0], args[1].src, start)
        return _lookup(args[0], args[1])
    if name == "gather" and isinstance(args[0], Const):
        return _gather_uniform(args[0], args[2])
    if any(isinstance(a, (Dyn, Expr)) and not is_token_input(a) for a in flat):
        raise UnsupportedOpError(f"ATen op {name!r} mixes the token values with hidden values")
    src = toks[0].src if toks else raw[0]
    scalars = tuple(s for t in toks for s in t.scalars)
    if name in ("ne", "eq") and isinstance(args[1], int) and not isinstance(args[1], bool):
        scalars += (int(args[1]),)

    def leaf(v: Any, ids: torch.Tensor) -> Any:
        if isinstance(v, TokenFn):
            return v.fn(ids)
        return ids if is_token_input(v) else v

    def fn(ids: torch.Tensor) -> Any:
        return replay(target, args, kw, lambda v: leaf(v, ids))

    return TokenFn(src, fn, scalars)


def _whole(target: Any, ids: Dyn, args: tuple[Any, ...], kw: dict[str, Any]) -> bool:
    """Whether a ``slice`` of the token ids keeps them all (a no-op the layout handler takes)."""
    x = torch.zeros(ids.shape, dtype=torch.long)
    return tuple(target(x, *args[1:], **kw).shape) == tuple(x.shape)


def _shift_start(ids: TokenFn, vocab: int) -> int | None:
    """The start token ``s`` when `ids` computes ``cat(s, ids[:, :-1])`` (the decoder input of
    an encoder-decoder model, shifted right) on random probe ids; else ``None``."""
    g = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(4):
        batch = torch.randint(0, vocab, ids.src.shape, generator=g)
        try:
            got = torch.as_tensor(ids.fn(batch))
        except (RuntimeError, ValueError, IndexError, TypeError):
            return None
        if got.shape != batch.shape or not torch.equal(got[:, 1:].long(), batch[:, :-1]):
            return None
        starts |= {int(v) for v in got[:, 0]}
    return starts.pop() if len(starts) == 1 else None


def _shifted_embedding(ctx: Context, table: Const, ids: Dyn, start: int) -> Dyn:
    """``table[cat(start, ids[:, :-1])]``: an ``embedding`` op with ``attrs["shift"]``."""
    weight = Const(table.value.T, table.param)  # (D, V)
    op = ctx.emit("embedding", (ids.value,), table.param or "embedding", {"weight": weight})
    op.attrs["shift"] = start
    u = Atom("U", int(table.value.shape[1]))
    return Dyn(op.output, (*ids.axes, (u,)), (u,), ids.space, ids.sdims)


def _gather_uniform(table: Const, index: Any) -> Const:
    """``gather`` from a constant whose entries are all equal (BERT-style token-type ids read
    at computed positions): that value, whatever the index."""
    values = table.value
    if not isinstance(index, TokenFn) or not bool((values == values.reshape(-1)[0]).all()):
        raise UnsupportedOpError("ATen op 'gather' of a varying table at token-derived indices")
    shape = torch.as_tensor(index.fn(torch.zeros(index.src.shape, dtype=torch.long))).shape
    return Const(torch.full(shape, values.reshape(-1)[0].item(), dtype=values.dtype))


def _probes(shape: tuple[int, ...], pad: int) -> list[torch.Tensor]:
    """Batches of token ids `shape` ``(B, T)`` whose rows hold `pad` nowhere, everywhere,
    leading, trailing, scattered and at random."""
    b, t = shape
    g = torch.Generator().manual_seed(0)
    n = b * -(-8 // b)  # ≥ 8 rows, whole batches
    rows = torch.randint(0, pad + 8, (n, t), generator=g)
    rows[0][rows[0] == pad] = pad + 1  # no padding
    rows[1] = pad
    rows[2, : t // 2] = pad  # left padding
    rows[3, t // 2 :] = pad  # right padding
    rows[4, ::2] = pad
    return [rows[i : i + b] for i in range(0, n, b)]


def _lookup(table: Const, ids: TokenFn) -> PadPositions:
    """An embedding read at token-derived rows: accepted when they are padding-aware positions."""
    if table.param is None:
        raise UnsupportedOpError("embedding of a computed table at token-derived positions")
    for pad in dict.fromkeys(ids.scalars):
        try:
            ok = all(
                torch.equal(torch.as_tensor(ids.fn(batch)).long(), padded_positions(batch, pad))
                for batch in _probes(ids.src.shape, pad)
            )
        except (RuntimeError, ValueError, IndexError, TypeError):
            ok = False
        if ok:
            return PadPositions(ids.src, table, pad)
    raise UnsupportedOpError(
        "position ids computed from the token values other than padding-aware positions "
        "cumsum(ids != pad) * (ids != pad) + pad, or token ids other than the ids shifted "
        "right (BART's decoder input)"
    )


def _add_positions(
    ctx: Context, name: str, args: tuple[Any, ...], kw: dict[str, Any], pos: PadPositions
) -> Dyn:
    """``x + table[positions(ids)]``: a ``posembed`` op with ``attrs["pad"]``, reading `x`
    and the token ids."""
    others = [a for a in args if a is not pos]
    if name != "add" or len(args) != 2 or len(others) != 1 or kw.get("alpha", 1) != 1:
        raise UnsupportedOpError(
            f"ATen op {name!r} on a padding-aware position embedding; supported: adding it "
            "to the token embeddings"
        )
    if not isinstance(others[0], (Dyn, Expr)):
        raise UnsupportedOpError("a padding-aware position embedding added to a constant")
    x = materialise(ctx, others[0], "add")
    d = pos.table.value.shape[1]
    u = Atom("U", int(d))
    looked_up = Dyn("positions", (*pos.src.axes, (u,)), (u,), pos.src.space, pos.src.sdims)
    if not _same_layout(x, looked_up):
        raise UnsupportedOpError("a padding-aware position embedding added to another layout")
    weight = Const(pos.table.value.T, pos.table.param)  # (D, N)
    op = ctx.emit(
        "posembed",
        (x.value, pos.src.value),
        pos.table.param or "positions",
        {"weight": weight},
        {"pad": pos.pad},
    )
    return Dyn(op.output, x.axes, x.units, x.space, x.sdims)
