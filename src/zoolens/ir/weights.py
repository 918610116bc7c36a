"""Read bare weight files (safetensors, PyTorch checkpoints) into a `TensorSet`.

PyTorch checkpoints are always read with ``torch.load(..., weights_only=True)``: a
checkpoint that needs code to unpickle (a pickled ``nn.Module``, a custom class) is refused,
never executed.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import sys
from collections.abc import Mapping
from typing import Any, cast

import torch
from safetensors import SafetensorError, safe_open

from zoolens.errors import LoadError
from zoolens.ir.tensorset import TensorSet

SAFETENSORS_EXTS = (".safetensors",)
TORCH_EXTS = (".pt", ".pth", ".bin", ".ckpt")
#: Keys under which training scripts nest the weights, in the order they are tried.
WEIGHT_KEYS = (
    "state_dict",
    "model_state_dict",
    "model",
    "module",
    "net",
    "network",
    "weights",
    "params",
)
#: Keys of training state that is not the network's weights.
SKIP_KEYS = frozenset(
    {
        "optimizer",
        "optimizer_state_dict",
        "optimizer_states",
        "optim",
        "opt",
        "scheduler",
        "lr_scheduler",
        "lr_schedulers",
        "scaler",
        "amp",
        "callbacks",
        "loops",
        "grad_scaler",
    }
)


def load_tensor_set(path: str | os.PathLike[str]) -> TensorSet:
    """Read the floating-point tensors of a weight file, in file order.

    Args:
        path: a ``.safetensors`` file, or a ``.pt``/``.pth``/``.bin``/``.ckpt`` file written
            by ``torch.save``: a state dict, possibly nested under ``state_dict``,
            ``model_state_dict`` or ``model`` and beside optimizer state (which is skipped).

    Returns:
        A `TensorSet` with ``meta`` ``{"source": path, "format": "safetensors" | "torch"}``.
        Non-floating tensors (step counters, integer buffers) are left out.

    Raises:
        LoadError: empty, truncated or corrupt file, unknown extension, no tensors, or a
            pickle that needs code execution.
        InvalidWeightsError: a tensor holds NaN or Inf.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in SAFETENSORS_EXTS + TORCH_EXTS:
        raise LoadError(
            f"{path}: unknown weight file extension {ext!r} (expected "
            f"{', '.join(SAFETENSORS_EXTS + TORCH_EXTS)})"
        )
    file_size(path)  # unreadable or empty: refused here, naming the file
    if ext in SAFETENSORS_EXTS:
        tensors, fmt = read_safetensors(path, floating_only=True), "safetensors"
    else:
        tensors, fmt = _read_torch(path), "torch"
    if not tensors:
        raise LoadError(f"{path}: no floating-point tensors found (not a weight file?)")
    ts = TensorSet(tensors, meta={"source": path, "format": fmt})
    ts.check_finite(path)
    return ts


def file_size(path: str, what: str = "") -> int:
    """Size of `path` in bytes; `LoadError` naming the file if unreadable or empty."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise LoadError(f"{path}: cannot read ({e.strerror})") from None
    if size == 0:
        raise LoadError(f"{path}: empty file (0 bytes){what}")
    return size


# -- safetensors ----------------------------------------------------------------------------
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(path: str, floating_only: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, in file order, as views of one memory map.

    The file is mapped copy-on-write (``MAP_PRIVATE``): a tensor's bytes are read from
    disk when first touched and stay reclaimable page cache, so a checkpoint is never held
    twice and memory follows what is used. Writing to a tensor copies only its pages; the file
    is never changed. Tensors whose bytes cannot be viewed in place (a dtype torch lacks, a
    misaligned offset, a big-endian machine) are copied out one at a time.

    Args:
        path: a safetensors file.
        floating_only: leave out integer and boolean tensors.

    Returns:
        name → tensor, in the order of the bytes in the file.

    Raises:
        LoadError: empty, truncated or corrupt file.
    """
    size = file_size(path)
    start, entries = _safetensors_header(path, size)
    wanted = [e for e in entries if not floating_only or e[1].startswith(("F", "BF"))]
    try:  # MAP_PRIVATE; no file descriptor stays open (Python's mmap would keep one per file)
        mapped = cast(torch.UntypedStorage, torch.UntypedStorage.from_file(path, False, size))
    except RuntimeError as e:
        raise LoadError(f"{path}: cannot map the file ({_first_line(e)})") from None
    out: dict[str, torch.Tensor] = {}
    copied: list[str] = []
    for name, dtype, shape, (begin, end) in wanted:
        view = _view(mapped, dtype, shape, start + begin, end - begin, f"{path}: tensor {name}")
        out[name] = view if view is not None else torch.empty(0)
        if view is None:
            copied.append(name)
    if copied:  # rare: through the safetensors library, still one tensor at a time
        try:
            with safe_open(path, framework="pt", device="cpu") as f:
                for name in copied:
                    out[name] = f.get_tensor(name)
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise LoadError(f"{path}: corrupt safetensors file ({_first_line(e)})") from None
    return out


def _view(
    mapped: torch.UntypedStorage, dtype: str, shape: list[int], offset: int, nbytes: int, what: str
) -> torch.Tensor | None:
    """Tensor of `shape` over ``mapped[offset:offset + nbytes]``; None when it must be copied."""
    tdtype = _DTYPES.get(dtype)
    if tdtype is None or sys.byteorder != "little":
        return None
    itemsize = torch.empty(0, dtype=tdtype).element_size()
    numel = math.prod(shape)
    if numel * itemsize != nbytes:
        raise LoadError(
            f"{what}: corrupt safetensors header ({dtype} {shape} needs {numel * itemsize} "
            f"bytes, its offsets span {nbytes})"
        )
    if numel == 0:
        return torch.empty(shape, dtype=tdtype)
    if offset % itemsize:
        return None
    view = torch.empty(0, dtype=tdtype)
    return view.set_(mapped, offset // itemsize, torch.Size(shape))  # type: ignore[call-overload,no-any-return]


def _safetensors_header(
    path: str, size: int
) -> tuple[int, list[tuple[str, str, list[int], tuple[int, int]]]]:
    """Where the data starts, and ``(name, dtype, shape, (begin, end))`` of every tensor in
    the order its bytes appear in the file (offsets relative to the data)."""
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 0 or n > size - 8:
            raise LoadError(
                f"{path}: truncated or not a safetensors file (header length "
                f"{n}, file of {size} bytes)"
            )
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LoadError(f"{path}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise LoadError(f"{path}: corrupt safetensors header (not a JSON object)")
    try:
        entries = []
        for k, v in header.items():
            if k == "__metadata__":
                continue
            begin, end = (int(o) for o in v["data_offsets"])
            shape = [int(d) for d in v["shape"]]
            if not 0 <= begin <= end or min(shape, default=0) < 0:
                raise ValueError(f"{k}: offsets {begin}..{end}, shape {shape}")
            entries.append((str(k), str(v["dtype"]), shape, (begin, end)))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise LoadError(f"{path}: corrupt safetensors header (bad entry: {e})") from None
    end = max((o[1] for *_, o in entries), default=0)
    if 8 + n + end > size:
        raise LoadError(
            f"{path}: truncated safetensors file ({size} bytes, the header describes {8 + n + end})"
        )
    return 8 + n, sorted(entries, key=lambda e: e[3][0])


# -- torch.save checkpoints ---------------------------------------------------------------
def _read_torch(path: str) -> dict[str, torch.Tensor]:
    return collect_tensors(load_torch_checkpoint(path), path)


def load_torch_checkpoint(path: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers only.

    Raises:
        LoadError: one line naming `path` when the pickle needs code to load (never run) or
            the file is corrupt or truncated.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found or "Unsupported global" in str(e):
            what = found.group(1) if found else "a Python object"
            raise LoadError(
                f"{path}: the checkpoint needs code execution to load (it pickles "
                f"{what}); zoolens refuses to unpickle code, save "
                "model.state_dict() instead"
            ) from None
        raise LoadError(f"{path}: not a readable PyTorch checkpoint (corrupt pickle)") from None
    except Exception as e:  # torch.load raises RuntimeError, EOFError, ValueError, ... on damage
        raise LoadError(
            f"{path}: not a readable PyTorch checkpoint, the file is corrupt or "
            f"truncated ({_first_line(e)})"
        ) from None
    return obj


def collect_tensors(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The floating tensors of a loaded checkpoint object, keyed as stored.

    Args:
        obj: what ``torch.load`` returned: a tensor, a state dict, or a dict nesting one
            under a key of `WEIGHT_KEYS` (training state under `SKIP_KEYS` is ignored).
        source: name of the file, for messages.
    """
    if isinstance(obj, torch.Tensor):
        return {"tensor": obj.detach()} if obj.is_floating_point() else {}
    if not isinstance(obj, Mapping):
        raise LoadError(f"{source}: holds a {type(obj).__name__}, not a state dict of tensors")
    for key in WEIGHT_KEYS:
        inner = obj.get(key)
        found = collect_tensors(inner, source) if isinstance(inner, Mapping) else {}
        if found:
            return found
    out: dict[str, torch.Tensor] = {}
    _flatten(obj, "", out)
    return out


def _flatten(obj: Mapping[Any, Any], prefix: str, out: dict[str, torch.Tensor]) -> None:
    for key, value in obj.items():
        if str(key) in SKIP_KEYS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            if value.is_floating_point():
                out[name] = value.detach()
        elif isinstance(value, Mapping):
            _flatten(value, name + ".", out)


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else type(e).__name__
    return text.split(". ")[0][:200]
