"""Read a Hugging Face model directory (``config.json`` + safetensors weights) as a `Net`.

The model is built by the ``transformers`` modeling code of its ``model_type`` from the
directory alone (no download, no remote code), traced with ``torch.export`` and translated by
`zoolens.ir.export_import`. The result is checked against the model itself on fresh inputs;
a translation that does not reproduce it is refused, never returned.
"""

from __future__ import annotations

import gc
import json
import os
from typing import Any

import torch

from zoolens.errors import LoadError, UnsupportedOpError
from zoolens.ir.export_import import trace_module
from zoolens.ir.net import Net

#: Default sequence length a text model is traced (and probed) at.
SEQ_LEN = 16
#: Output fields read, in order of preference, from a model's output.
OUTPUT_FIELDS = ("logits", "pooler_output", "last_hidden_state")
#: Families tested to import (others may work; they are tried the same way).
TESTED = ("bert", "distilbert", "roberta", "gpt2", "llama", "vit")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def is_hf_dir(path: str) -> bool:
    """A directory with ``config.json`` naming a ``model_type``."""
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        return False
    try:
        with open(config) as f:
            return isinstance(json.load(f).get("model_type"), str)
    except (OSError, ValueError, AttributeError):
        return False


def import_hf_dir(path: str, seq_len: int = SEQ_LEN, check: bool = True) -> Net:
    """Build, trace and translate the model in directory `path`.

    Args:
        path: a ``save_pretrained`` directory (``config.json`` and ``model.safetensors`` or a
            sharded ``model.safetensors.index.json``).
        seq_len: positions of the token input of a text model (its net's input shape).
        check: compare the net with the model on fresh inputs (≤ 1e-4 relative).

    Raises:
        LoadError: no safetensors weights, transformers missing, an unknown ``model_type``.
        UnsupportedOpError: an op or pattern the IR cannot hold, naming it.
    """
    from zoolens.optional import optional_import

    transformers = optional_import("transformers", "reading Hugging Face directories", "hf")
    model_type = _model_type(path)
    if not any(os.path.isfile(os.path.join(path, f)) for f in _WEIGHT_FILES):
        raise LoadError(
            f"{path}: no model.safetensors (or sharded index) in this {model_type!r} directory; "
            "zoolens reads safetensors weights only (never pickled .bin files)"
        )
    model = _build(transformers, path, model_type)
    x = _example(model, seq_len)
    meta: dict[str, Any] = {
        "source": os.path.abspath(path),
        "importer": "hf",
        "model_type": model_type,
        "architecture": type(model).__name__,
        "source_params": sum(p.numel() for p in model.parameters()),
    }
    try:
        return trace_module(model, x, path, OUTPUT_FIELDS, meta, check)
    except UnsupportedOpError as e:
        raise UnsupportedOpError(
            str(e).replace(f"{path}: ", f"{path}: {model_type!r}: ", 1)
        ) from None
    finally:  # the model and its trace hold reference cycles: free a copy of the weights now
        del model
        gc.collect()


def _model_type(path: str) -> str:
    try:
        with open(os.path.join(path, "config.json")) as f:
            return str(json.load(f)["model_type"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LoadError(f"{path}: unreadable config.json ({e})") from None


def _build(transformers: Any, path: str, model_type: str) -> torch.nn.Module:
    try:  # local files only: nothing is downloaded, no remote code runs
        config = transformers.AutoConfig.from_pretrained(
            path, local_files_only=True, trust_remote_code=False
        )
    except (ValueError, KeyError) as e:
        raise LoadError(
            f"{path}: model_type {model_type!r} is unknown to the installed transformers ({e}); "
            f"tested families: {', '.join(TESTED)}"
        ) from None
    names = getattr(config, "architectures", None) or []
    cls = getattr(transformers, names[0], None) if names else None
    cls = cls or transformers.AutoModel
    local = {"config": config, "local_files_only": True, "use_safetensors": True}
    try:
        try:
            model = cls.from_pretrained(path, attn_implementation="sdpa", **local)
        except (ValueError, TypeError):  # a model without an SDPA attention path
            model = cls.from_pretrained(path, **local)
    except OSError as e:
        raise LoadError(f"{path}: could not read the weights ({str(e).splitlines()[0]})") from None
    model.eval()
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    built: torch.nn.Module = model.float()
    return built


def _example(model: torch.nn.Module, seq_len: int) -> torch.Tensor:
    config: Any = getattr(model, "config", None)
    if getattr(model, "main_input_name", "input_ids") == "pixel_values":
        c = int(getattr(config, "num_channels", 3))
        size = getattr(config, "image_size", 224)
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return torch.randn(2, c, h, w)
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    t = min(seq_len, int(limit)) if limit else seq_len
    vocab = int(config.vocab_size)
    return torch.randint(0, vocab, (2, t), generator=torch.Generator().manual_seed(0))
