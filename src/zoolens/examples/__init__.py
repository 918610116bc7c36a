"""Small trained networks shipped with zoolens, for demos and tests.

They are made by ``python -m zoolens.examples.make_examples`` (never at import time).
"""

from __future__ import annotations

from pathlib import Path

#: Names of the shipped examples (directories written by ``Net.save``).
EXAMPLES = ("mlp_digits",)


def example_path(name: str) -> str:
    """Directory of the shipped example `name` (load it with ``zoolens.load_net``).

    Args:
        name: one of `EXAMPLES`.

    Returns:
        The path of the directory holding ``arch.json`` and ``model.safetensors``.
    """
    if name not in EXAMPLES:
        raise KeyError(f"no example {name!r}; zoolens ships {', '.join(EXAMPLES)}")
    return str(Path(__file__).parent / name)
