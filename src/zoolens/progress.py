"""The one progress-bar helper: tqdm on stderr, silent when stderr is not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def progress_bar(it: Iterable[T], **kwargs: Any) -> Iterable[T]:
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", not sys.stderr.isatty())
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    bar: Iterable[T] = tqdm(it, file=sys.stderr, **kwargs)
    return bar
