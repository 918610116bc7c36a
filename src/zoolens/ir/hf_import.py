"""Read a Hugging Face model directory (``config.json`` + weights) as a `Net`.

The model is built by the ``transformers`` modeling code of its ``model_type`` from the
directory alone (no download, no remote code), traced with ``torch.export`` and translated by
`zoolens.ir.export_import`. The result is checked against the model itself on fresh inputs;
a translation that does not reproduce it is refused, never returned. Weights are safetensors,
or pickled ``pytorch_model.bin`` state dicts read with ``torch.load(weights_only=True)``: a
file that needs code to unpickle is refused, never run.
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
TESTED = ("bert", "distilbert", "roberta", "gpt2", "llama", "phi", "gpt_neox", "mpt", "bart", "vit")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
_BIN_FILE, _BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
#: What ``inputs`` may name: the model's main input, and optionally its attention mask.
INPUTS = (("input_ids",), ("input_ids", "attention_mask"))


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


def import_hf_dir(
    path: str,
    seq_len: int = SEQ_LEN,
    check: bool = True,
    inputs: tuple[str, ...] | None = None,
) -> Net:
    """Build, trace and translate the model in directory `path`.

    Args:
        path: a ``save_pretrained`` directory (``config.json`` and ``model.safetensors``, a
            sharded ``model.safetensors.index.json``, or a state dict in ``pytorch_model.bin``
            or a sharded ``pytorch_model.bin.index.json``).
        seq_len: positions of the token input of a text model (its net's input shape).
        check: compare the net with the model on fresh inputs (≤ 1e-4 relative).
        inputs: the model inputs the net reads. ``None`` (or the main input alone): the
            net computes ``model(input_ids)``, every position attended. ``("input_ids",
            "attention_mask")``: the net also reads ``attention_mask`` ``(B, T)`` by name,
            ``net(ids, attention_mask=mask)`` computing ``model(ids, attention_mask=mask)``
            (left or right padding; left out, no padding). Text models only.

    Raises:
        LoadError: no weights, a ``.bin`` that needs code to unpickle, weights missing from
            the files, transformers missing, an unknown ``model_type``.
        UnsupportedOpError: an op or pattern the IR cannot hold, naming it.
    """
    from zoolens.optional import optional_import

    transformers = optional_import("transformers", "reading Hugging Face directories", "hf")
    model_type = _model_type(path)
    state = None
    if not any(os.path.isfile(os.path.join(path, f)) for f in _WEIGHT_FILES):
        state = _bin_state_dict(path, model_type)
    mask_wanted = _mask_wanted(path, inputs)
    model = _build(transformers, path, model_type, state)
    x = _example(model, seq_len)
    mask = None
    if mask_wanted:
        if x.is_floating_point():
            raise UnsupportedOpError(
                f"{path}: {model_type!r} reads {tuple(x.shape[1:])} pixel values, not token "
                "ids: an attention mask is read for text models only"
            )
        mask = torch.ones(x.shape, dtype=torch.long)
        mask[0, : x.shape[1] // 4] = 0  # traced with padding: no shortcut for a full mask
    meta: dict[str, Any] = {
        "source": os.path.abspath(path),
        "importer": "hf",
        "model_type": model_type,
        "architecture": type(model).__name__,
        "source_params": sum(p.numel() for p in model.parameters()),
    }
    try:
        return trace_module(model, x, path, OUTPUT_FIELDS, meta, check, mask)
    except UnsupportedOpError as e:
        if getattr(model.config, "is_encoder_decoder", False) and "cannot trace" in str(e):
            raise UnsupportedOpError(
                f"{path}: {model_type!r}: an encoder-decoder model that needs "
                "decoder_input_ids; read: those whose decoder reads the ids shifted right "
                "when they are left out (BART)"
            ) from None
        raise UnsupportedOpError(
            str(e).replace(f"{path}: ", f"{path}: {model_type!r}: ", 1)
        ) from None
    finally:  # the model and its trace hold reference cycles: free a copy of the weights now
        del model
        gc.collect()


def _mask_wanted(path: str, inputs: tuple[str, ...] | None) -> bool:
    if inputs is None or tuple(inputs) == INPUTS[0]:
        return False
    if tuple(inputs) == INPUTS[1]:
        return True
    raise LoadError(f"{path}: inputs={tuple(inputs)!r}; supported: {INPUTS[0]!r} or {INPUTS[1]!r}")


def _model_type(path: str) -> str:
    try:
        with open(os.path.join(path, "config.json")) as f:
            return str(json.load(f)["model_type"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LoadError(f"{path}: unreadable config.json ({e})") from None


def _bin_state_dict(path: str, model_type: str) -> dict[str, torch.Tensor]:
    """The state dict in ``pytorch_model.bin`` (or its shards), read without running code."""
    from zoolens.ir.weights import load_torch_checkpoint

    index = os.path.join(path, _BIN_INDEX)
    if os.path.isfile(index):
        try:
            with open(index) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise LoadError(f"{index}: unreadable shard index ({e})") from None
    elif os.path.isfile(os.path.join(path, _BIN_FILE)):
        shards = [_BIN_FILE]
    else:
        raise LoadError(
            f"{path}: no model.safetensors or pytorch_model.bin (or sharded index) in this "
            f"{model_type!r} directory"
        )
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        if not isinstance(shard, str) or os.path.basename(shard) != shard:
            raise LoadError(f"{index}: shard {shard!r} is not a file name in {path}")
        file = os.path.join(path, shard)
        if not os.path.isfile(file):
            raise LoadError(f"{file}: shard named by {_BIN_INDEX} is missing")
        obj = load_torch_checkpoint(file)
        if not isinstance(obj, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
        ):
            raise LoadError(
                f"{file}: not a state dict of tensors (save model.state_dict() or use "
                "save_pretrained)"
            )
        state.update(obj)
    return state


def _build(
    transformers: Any, path: str, model_type: str, state: dict[str, torch.Tensor] | None = None
) -> torch.nn.Module:
    """The model of `path`'s config with its weights: the directory's safetensors, or `state`
    (a ``.bin`` state dict read by `_bin_state_dict`)."""
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
    local: dict[str, Any] = {"config": config, "local_files_only": True}
    local |= {"use_safetensors": True} if state is None else {"state_dict": state}
    source = path if state is None else None  # a state dict: transformers opens no file
    try:
        try:
            model, info = cls.from_pretrained(
                source, attn_implementation="sdpa", output_loading_info=True, **local
            )
        except (ValueError, TypeError):  # a model without an SDPA attention path
            model, info = cls.from_pretrained(source, output_loading_info=True, **local)
    except OSError as e:
        raise LoadError(f"{path}: could not read the weights ({str(e).splitlines()[0]})") from None
    missing = sorted(info.get("missing_keys") or ())
    if state is not None and missing:  # never a model with guessed (random) weights
        raise LoadError(
            f"{path}: {len(missing)} weight(s) of {type(model).__name__} are not in "
            f"{_BIN_FILE} (first: {missing[0]}); save the whole model with save_pretrained"
        )
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
