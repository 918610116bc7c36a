"""One exception family for zoolens. Messages name the file, tensor or op, and what to do."""

from __future__ import annotations


class ZoolensError(Exception):
    """Base of every error zoolens raises on purpose."""


class LoadError(ZoolensError):
    """A checkpoint could not be read: corrupt, truncated, empty, wrong format, unsafe."""


class UnsupportedOpError(LoadError):
    """The network uses an op (or op setting) the IR cannot represent exactly."""


class InvalidWeightsError(LoadError):
    """The weights hold NaN or Inf values."""


class EncoderMismatchError(ZoolensError):
    """An index or a head was used with an encoder other than the one that built it."""


class IndexError(ZoolensError):
    """The model index is missing, corrupt or was asked for something it does not hold."""


class HeadError(ZoolensError):
    """A head could not be fitted or applied: unknown label column, one class, bad shape."""


class MissingDependencyError(ZoolensError):
    """A feature needs an optional package that is not installed (the message names the extra)."""


class ArchitectureMismatchError(ZoolensError):
    """Two networks that must share one architecture (to align or merge) do not."""
