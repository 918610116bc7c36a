"""Values the torch.export importer computes from the attention mask alone, and the attention
they mask.

A model traced with ``attention_mask`` (``(B, T)``, 1 = attend, 0 = padding) builds from it,
with constants only (position ranges, the causal triangle), the boolean mask its SDPA reads.
Every such traced op is kept as a function of the mask (`MaskFn`) and, where an SDPA reads it,
run on probe masks (no padding, all padding, leading, trailing, scattered and random): it is
accepted only when it equals the key padding mask, alone or with the causal triangle, on every
probe. The SDPA then becomes an ``sdpa`` op with ``attrs["mask"] = "keys"`` reading the net's
``attention_mask`` input (`zoolens.ir.ops_seq.run_sdpa`). The mask read anywhere else (mixed
with hidden values, as a float additive mask, or a mask of another shape) is refused, naming
the op.

Private to `zoolens.ir.export_import`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from zoolens.errors import UnsupportedOpError

#: The name of the net input (and of the traced keyword argument) holding the mask.
MASK = "attention_mask"
_SDPA = "scaled_dot_product_attention"


@dataclass
class MaskFn:
    """``fn(mask)``: a value computed from the attention mask ``(B, T)`` (of `dtype`) alone."""

    shape: tuple[int, int]
    dtype: torch.dtype
    fn: Callable[[torch.Tensor], Any]


def mask_input(shape: tuple[int, ...], dtype: torch.dtype) -> MaskFn:
    """The traced mask placeholder itself."""
    if len(shape) != 2:
        raise UnsupportedOpError(f"{MASK} of shape {list(shape)}; expected (batch, positions)")
    return MaskFn((int(shape[0]), int(shape[1])), dtype, lambda m: m)


def _flat(args: Any) -> list[Any]:
    if isinstance(args, (list, tuple)):
        return [x for a in args for x in _flat(a)]
    return [args]


def mask_value(name: str, target: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> Any | None:
    """The translation of a traced op reading a mask-derived value: a new `MaskFn`; ``None``
    when it reads none, or is an SDPA (whose handler reads the mask with `key_mask`)."""
    from zoolens.ir._export_context import replay

    flat = _flat(list(args)) + _flat(list(kw.values()))
    masks = [a for a in flat if isinstance(a, MaskFn)]
    if not masks or name == _SDPA:
        return None
    if any(_is_hidden(a) for a in flat):
        raise UnsupportedOpError(
            f"ATen op {name!r} mixes the {MASK} with hidden values (supported: the mask an "
            "attention op reads)"
        )

    def fn(mask: torch.Tensor) -> Any:
        return replay(target, args, kw, lambda v: v.fn(mask) if isinstance(v, MaskFn) else v)

    return MaskFn(masks[0].shape, masks[0].dtype, fn)


def _is_hidden(v: Any) -> bool:
    """A value that depends on the data input's values (an IR value, a pending pattern, a
    function of the token ids)."""
    from zoolens.ir._export_layout import Dyn
    from zoolens.ir._export_patterns import PENDING
    from zoolens.ir._export_tokens import PadPositions, TokenFn

    return isinstance(v, (Dyn, TokenFn, PadPositions, *PENDING))


def probe_masks(shape: tuple[int, int], dtype: torch.dtype) -> list[torch.Tensor]:
    """Batches of masks `shape` whose rows are all ones, all zeros, left, right and scattered
    padding, and random."""
    b, t = shape
    n = b * -(-8 // b)  # ≥ 8 rows, whole batches
    rows = torch.randint(0, 2, (n, t), generator=torch.Generator().manual_seed(0))
    rows[0], rows[1] = 1, 0
    rows[2] = (torch.arange(t) >= t // 2).long()  # left padding
    rows[3] = (torch.arange(t) < t - t // 3).long()  # right padding
    rows[4] = torch.arange(t) % 2
    return [rows[i : i + b].to(dtype) for i in range(0, n, b)]


def key_mask(mask: MaskFn, t: int) -> bool:
    """Whether the SDPA mask `mask` is the key padding mask with the causal triangle (True)
    or without it (False), checked on every `probe_masks`.

    Raises:
        UnsupportedOpError: another mask, or an additive (float) one.
    """
    if mask.shape[1] != t:
        raise UnsupportedOpError(f"an {MASK} over {mask.shape[1]} positions for {t} queries")
    tril = torch.ones(t, t, dtype=torch.bool).tril()
    fits = {False: True, True: True}
    for probe in probe_masks(mask.shape, mask.dtype):
        try:
            got = torch.as_tensor(mask.fn(probe))
        except (RuntimeError, ValueError, IndexError, TypeError) as e:
            raise UnsupportedOpError(
                f"the attention mask computed from {MASK} does not run on probe masks ({e})"
            ) from None
        if got.dtype != torch.bool:
            raise UnsupportedOpError(
                f"an additive ({got.dtype}) attention mask computed from {MASK}; supported: "
                "the boolean mask of transformers' SDPA attention"
            )
        keys = (probe != 0)[:, None, None, :]  # (B, 1, 1, T)
        for causal in fits:
            want = keys & tril if causal else keys.expand(-1, -1, t, -1)  # (B, 1, T, T)
            shaped = got.dim() == 4 and tuple(got.shape[2:]) == (t, t)
            shaped = shaped and got.shape[0] in (1, want.shape[0])
            fits[causal] = fits[causal] and shaped and bool((got == want).all())
    if fits[False]:
        return False
    if fits[True]:
        return True
    raise UnsupportedOpError(
        f"an attention mask computed from {MASK} that is neither its key padding mask nor "
        "that mask with the causal triangle"
    )
