"""Metadata filters: ``where`` dicts and the ``key>=value`` string syntax, compiled to SQL.

A filter is a conjunction of conditions on the JSON metadata of each model:

- ``{"task": "digits"}``: equality (JSON types are compared exactly; ``None`` means the key
  is missing or null);
- ``{"accuracy": (">=", 0.9)}``: a comparison, one of ``= != < <= > >=``;
- ``{"accuracy": [(">=", 0.9), ("<", 0.99)]}``: several conditions on one key;
- ``{"task": ["digits", "fashion"]}`` or ``("in", [...])``: membership.

Comparisons only match values of the comparand's JSON type (a number never compares with a
string), so ``accuracy >= 0.9`` skips models whose accuracy is ``"n/a"``. ``!=`` also matches
models that lack the key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from zoolens.errors import ZoolensError

Condition = tuple[str, str, Any]  # (key, op, value)
OPS = ("=", "!=", "<", "<=", ">", ">=", "in")
_SYNTAX = re.compile(r"^\s*([^<>=!]+?)\s*(==|=|!=|>=|<=|>|<)\s*(.*?)\s*$")


class FilterError(ZoolensError):
    """A ``where`` filter could not be understood."""


def parse_where(exprs: Iterable[str]) -> list[Condition]:
    """Parse CLI filter strings such as ``task=digits`` or ``accuracy>=0.9``.

    Numbers, ``true``/``false`` and ``null`` are read as JSON values. An equality with a
    number also matches the same text (``seed=3`` matches ``3`` and ``"3"``).

    Args:
        exprs: strings ``KEY OP VALUE`` with OP one of ``= == != < <= > >=``.

    Returns:
        Conditions ``(key, op, value)``, ANDed; pass them as ``where=`` to `ModelIndex.search`.
    """
    conditions: list[Condition] = []
    for expr in exprs:
        m = _SYNTAX.match(expr)
        if not m:
            raise FilterError(
                f"cannot parse filter {expr!r}; expected KEY=VALUE or KEY>=VALUE "
                "(operators: = != < <= > >=)"
            )
        key, op, raw = m.group(1), m.group(2), m.group(3)
        op = "=" if op == "==" else op
        value = coerce_value(raw)
        if op == "=" and isinstance(value, (int, float)) and not isinstance(value, bool):
            conditions.append((key, "in", [value, raw]))
        else:
            conditions.append((key, op, value))
    return conditions


def coerce_value(raw: str) -> Any:
    """``"0.9"`` → 0.9, ``"3"`` → 3, ``"true"`` → True, ``"null"`` → None, else the string."""
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none"):
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    return raw


def normalise_where(where: Mapping[str, Any] | Iterable[Condition] | None) -> list[Condition]:
    """Turn any accepted ``where`` form into a list of ``(key, op, value)`` conditions."""
    if where is None:
        return []
    if not isinstance(where, Mapping):
        conds = [tuple(c) for c in where]
        for c in conds:
            if len(c) != 3:
                raise FilterError(f"a condition is (key, op, value); got {c!r}")
        return [_check(str(k), op, v) for k, op, v in conds]
    out: list[Condition] = []
    for key, spec in where.items():
        out.extend(_check(str(key), op, v) for op, v in _key_conditions(key, spec))
    return out


def _key_conditions(key: str, spec: Any) -> list[tuple[str, Any]]:
    if isinstance(spec, tuple) and len(spec) == 2 and spec[0] in OPS:
        return [spec]
    if (
        isinstance(spec, list)
        and spec
        and all(isinstance(s, tuple) and len(s) == 2 and s[0] in OPS for s in spec)
    ):
        return list(spec)
    if isinstance(spec, (list, set, frozenset)):
        return [("in", list(spec))]
    if isinstance(spec, (dict, tuple)):
        raise FilterError(
            f"filter on {key!r}: use a value, (op, value) or [(op, value), ...]; got {spec!r}"
        )
    return [("=", spec)]


def _check(key: str, op: str, value: Any) -> Condition:
    op = "=" if op == "==" else op
    if op not in OPS:
        raise FilterError(f"filter on {key!r}: unknown operator {op!r}; use one of {OPS}")
    if op == "in" and not isinstance(value, (list, tuple, set, frozenset)):
        raise FilterError(f"filter on {key!r}: 'in' needs a list of values, got {value!r}")
    if op != "in" and not isinstance(value, (str, int, float, bool, type(None))):
        raise FilterError(
            f"filter on {key!r}: {op} needs a string, number, boolean or None, "
            f"got {value!r} (use 'in' for a list)"
        )
    if op in ("<", "<=", ">", ">=") and not isinstance(value, (int, float, str)):
        raise FilterError(f"filter on {key!r}: {op} needs a number or a string, got {value!r}")
    return key, op, value


def json_path(key: str) -> str:
    """The SQLite JSON path of a top-level metadata key (dots are part of the key)."""
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_sql(conditions: list[Condition], column: str = "metadata") -> tuple[str, list[Any]]:
    """Compile conditions to an SQL boolean expression and its parameters.

    Returns:
        ``(sql, params)``; ``("1", [])`` when there is no condition.
    """
    parts: list[str] = []
    params: list[Any] = []
    for key, op, value in conditions:
        sql, p = _condition_sql(
            f"json_extract({column}, ?)", f"json_type({column}, ?)", json_path(key), op, value
        )
        parts.append(sql)
        params.extend(p)
    return (" AND ".join(f"({s})" for s in parts) or "1"), params


def _condition_sql(x: str, t: str, path: str, op: str, value: Any) -> tuple[str, list[Any]]:
    if op == "in":
        values = list(value)
        if not values:
            return "0", []
        marks = ", ".join("?" for _ in values)
        return f"{x} IN ({marks})", [path, *values]
    if value is None:
        return (f"{x} IS NULL", [path]) if op == "=" else (f"{x} IS NOT NULL", [path])
    if op == "!=":
        return f"{x} IS NULL OR {x} != ?", [path, path, value]
    if op == "=":
        return f"{x} = ?", [path, value]
    types = "('text')" if isinstance(value, str) else "('integer', 'real')"
    return f"{t} IN {types} AND {x} {op} ?", [path, path, value]
