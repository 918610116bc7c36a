"""`load_net`: one entry point for every checkpoint format zoolens reads."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from zoolens.errors import LoadError, UnsupportedOpError
from zoolens.ir.io import is_net_dir, load_net_dir
from zoolens.ir.net import Net
from zoolens.ir.tensorset import TensorSet


def load_net(
    source: str | os.PathLike[str] | nn.Module,
    input_shape: tuple[int, ...] | None = None,
    strict: bool = False,
    inputs: tuple[str, ...] | None = None,
) -> Net | TensorSet:
    """Read a network from a module, a zoolens directory, an ONNX file or bare weights.

    Args:
        source: an ``nn.Module`` (traced with torch.fx, or torch.export given
            `input_shape`), a directory written by ``Net.save``, a Hugging Face model
            directory (``config.json`` + safetensors), a ``.onnx`` file, or a
            ``.safetensors``/``.pt``/``.pth``/``.bin`` checkpoint (a single Linear → `Net`;
            other weights without wiring → `TensorSet` with ``meta["reason"]``,
            `zoolens.ir.state_dict`).
        input_shape: input shape without batch axis, for modules that need it.
        strict: for ONNX files with ops the IR lacks, raise instead of returning the
            initializers as a `TensorSet` with a warning.
        inputs: for a Hugging Face text model, ``("input_ids", "attention_mask")`` makes
            the net read the attention mask too (`zoolens.ir.hf_import.import_hf_dir`);
            the default reads the token ids alone (no padding). Refused for other sources.

    Returns:
        A `Net` when the wiring is known, otherwise a `TensorSet`.
    """
    if isinstance(source, nn.Module):
        _no_inputs(type(source).__name__, inputs)
        return _load_module(source, input_shape)
    path = os.fspath(source)
    if not os.path.exists(path):
        raise LoadError(f"{path}: no such file or directory")
    if is_net_dir(path):
        _no_inputs(path, inputs)  # a saved net reads what it was imported with
        return load_net_dir(path)
    if os.path.isdir(path):
        from zoolens.ir.hf_import import import_hf_dir, is_hf_dir

        if is_hf_dir(path):
            return import_hf_dir(path, inputs=inputs)
        raise LoadError(_unreadable_dir(path))
    _no_inputs(path, inputs)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".onnx":
        from zoolens.ir.onnx_import import import_onnx

        return import_onnx(path, strict=strict)
    if ext in (".safetensors", ".pt", ".pth", ".bin", ".ckpt"):
        from zoolens.ir.state_dict import net_from_state_dict
        from zoolens.ir.weights import load_tensor_set

        return net_from_state_dict(load_tensor_set(path))
    raise LoadError(
        f"{path}: unknown extension {ext!r} (expected a zoolens directory, .onnx, "
        ".safetensors, .pt, .pth, .bin or .ckpt)"
    )


def _no_inputs(source: str, inputs: tuple[str, ...] | None) -> None:
    if inputs is not None and tuple(inputs) != ("input_ids",):
        raise LoadError(
            f"{source}: inputs={tuple(inputs)!r} is read from Hugging Face model directories "
            "only; this source's net reads one input"
        )


def _load_module(module: nn.Module, input_shape: tuple[int, ...] | None) -> Net:
    """torch.fx first (MLPs, CNNs, INRs); modules it cannot read (transformers, models with
    control flow) through torch.export on an example input of `input_shape` — token ids when
    the module starts from an ``nn.Embedding``."""
    from zoolens.ir.fx_import import import_module

    name = type(module).__name__
    fx_error: LoadError | None = None
    if input_shape is None or not any(isinstance(m, nn.Embedding) for m in module.modules()):
        try:  # fx has no token embeddings: those go straight to torch.export
            net = import_module(module, input_shape)
            net.check_finite(name)
            return net
        except LoadError as e:
            if input_shape is None:
                raise
            fx_error = e
    from zoolens.ir.export_import import trace_module

    try:
        return trace_module(module.eval(), _example(module, input_shape), name)  # checks NaNs
    except LoadError as export_error:  # the more specific of the two reasons
        raise (fx_error if isinstance(fx_error, UnsupportedOpError) else export_error) from None


def _example(module: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    emb = next((m for m in module.modules() if isinstance(m, nn.Embedding)), None)
    if emb is not None:
        return torch.randint(0, emb.num_embeddings, (2, *input_shape), generator=g)
    return torch.randn((2, *input_shape), generator=g)


def _unreadable_dir(path: str) -> str:
    """Why directory `path` is not read as a network, in one line."""
    return (
        f"{path}: a directory without arch.json or a Hugging Face config.json (not a model "
        "directory); zoolens reads zoolens and Hugging Face directories, .onnx files and "
        ".safetensors/.pt/.pth/.bin/.ckpt weights"
    )


def describe(obj: Any) -> str:
    return "Net" if isinstance(obj, Net) else "TensorSet"
