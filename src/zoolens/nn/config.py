"""`EncoderConfig`: the frozen, typed, validated hyper-parameters of one encoder.

Each encoder class has one config dataclass (nanoGPT's ``GPTConfig``), passed as the
single constructor argument. A field's type is checked on construction (an ``int`` is
accepted for a ``float``; ``bool`` is never an ``int``), and its range when the field
declares one with `bounded`. `from_dict` builds a config from a mapping (a saved
``config.json``'s ``"config"``, or keyword overrides) and refuses unknown keys.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from zoolens.errors import LoadError, ZoolensError

C = TypeVar("C", bound="EncoderConfig")


class ConfigError(ZoolensError, ValueError):
    """An encoder config value of the wrong type or out of its range."""


def bounded(default: Any, lo: float | None = None, hi: float | None = None) -> Any:
    """A dataclass field with `default` and the closed range ``[lo, hi]`` (None: open)."""
    return dataclasses.field(default=default, metadata={"range": (lo, hi)})


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Base of every encoder's config: no fields; subclasses add theirs."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            expected = hints[f.name]
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
                value = float(value)
            if not _is_instance(value, expected):
                raise ConfigError(
                    f"{type(self).__name__}.{f.name} = {value!r}: expected "
                    f"{getattr(expected, '__name__', expected)}"
                )
            lo, hi = f.metadata.get("range", (None, None))
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                span = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
                raise ConfigError(
                    f"{type(self).__name__}.{f.name} = {value!r}: expected a value in {span}"
                )
        self.validate()

    def validate(self) -> None:
        """Checks across fields (subclasses); raise `ConfigError`."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict (what ``config.json`` stores)."""
        return dataclasses.asdict(self)

    def replace(self: C, **changes: Any) -> C:
        """A copy with `changes` (validated like a new config)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any], source: str = "config") -> C:
        """A config from `values` (missing keys: the defaults).

        Raises:
            LoadError: a key that is not a field, naming `source` and the key.
            ConfigError: a value of the wrong type or out of range.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in names:
                raise LoadError(
                    f"{source}: unknown key {key!r} for {cls.__name__}; "
                    f"expected some of {', '.join(sorted(names))}"
                )
        return cls(**values)


def _is_instance(value: Any, expected: Any) -> bool:
    if expected is Any:
        return True
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, float)
    origin = typing.get_origin(expected)
    if origin is typing.Literal:
        return value in typing.get_args(expected)
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True  # unions and generics: not checked
