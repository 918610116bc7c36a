"""zoolens' own network format: ``model.safetensors`` + ``arch.json`` in a directory."""

from __future__ import annotations

import json
import os
from typing import Any

from safetensors.torch import save_file

from zoolens.errors import LoadError
from zoolens.ir.net import Net
from zoolens.ir.ops import Op
from zoolens.ir.weights import read_safetensors

FORMAT_VERSION = 1
ARCH_FILE = "arch.json"
WEIGHTS_FILE = "model.safetensors"


def save_net(net: Net, path: str) -> None:
    """Write `net` to directory `path` (created if needed); files are replaced atomically."""
    os.makedirs(path, exist_ok=True)
    arch: dict[str, Any] = {
        "format": "zoolens.net",
        "format_version": FORMAT_VERSION,
        "input": net.input,
        "output": net.output,
        "input_shape": list(net.input_shape),
        "meta": net.meta,
        **({"extra_inputs": list(net.extra_inputs)} if net.extra_inputs else {}),
        "ops": [
            {
                "name": op.name,
                "kind": op.kind,
                "inputs": list(op.inputs),
                "output": op.output,
                "attrs": op.attrs,
                "params": list(op.params),
            }
            for op in net.ops
        ],
    }
    tensors = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    tmp_w, tmp_a = os.path.join(path, WEIGHTS_FILE + ".tmp"), os.path.join(path, ARCH_FILE + ".tmp")
    save_file(tensors, tmp_w)
    with open(tmp_a, "w") as f:
        json.dump(arch, f, indent=1)
    os.replace(tmp_w, os.path.join(path, WEIGHTS_FILE))
    os.replace(tmp_a, os.path.join(path, ARCH_FILE))


def is_net_dir(path: str) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, ARCH_FILE))


def load_net_dir(path: str) -> Net:
    """Read a directory written by `save_net`, bit-exactly; the tensors are views of the
    memory-mapped weights file (`read_safetensors`)."""
    arch_path = os.path.join(path, ARCH_FILE)
    try:
        with open(arch_path) as f:
            arch = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise LoadError(f"{arch_path}: not a readable zoolens arch file ({e})") from None
    if arch.get("format") != "zoolens.net":
        raise LoadError(f"{arch_path}: not a zoolens arch file (no 'format': 'zoolens.net')")
    if int(arch.get("format_version", 0)) > FORMAT_VERSION:
        raise LoadError(
            f"{arch_path}: format_version {arch['format_version']} is newer than "
            f"this zoolens reads ({FORMAT_VERSION}); upgrade zoolens"
        )
    tensors = read_safetensors(os.path.join(path, WEIGHTS_FILE))  # memory-mapped, no copy
    try:
        ops = [
            Op(
                name=o["name"],
                kind=o["kind"],
                inputs=tuple(o["inputs"]),
                output=o["output"],
                attrs=o.get("attrs", {}),
                params={r: tensors[f"{o['name']}.{r}"] for r in o.get("params", [])},
            )
            for o in arch["ops"]
        ]
        net = Net(
            ops=ops,
            input_shape=tuple(arch["input_shape"]),
            input=arch["input"],
            output=arch["output"],
            meta=arch.get("meta", {}),
            extra_inputs=tuple(arch.get("extra_inputs", ())),
        )
    except KeyError as e:
        raise LoadError(f"{path}: arch.json and model.safetensors disagree: missing {e}") from None
    net.check_finite(path)
    return net
