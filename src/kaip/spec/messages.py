"""How a validation problem reads to the spec's author: kaip's words for pydantic's errors.

``must be <= 1 (got 2)``, ``must be an integer, not a string ('8080')`` with the hint ``remove
the quotes``, ``did you mean 'maxReplicas'?``. One style for every message: what is expected,
what was found, and a fix where one helps. Pure.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any


def suggest(word: str, choices: Sequence[str]) -> str:
    lowered = {c.lower().replace("_", "").replace("-", ""): c for c in choices}
    key = word.lower().replace("_", "").replace("-", "")
    if key in lowered:
        return f"did you mean {lowered[key]!r}?"
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "allowed: " + ", ".join(choices)


_TYPE_NAMES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "datetime_type": "a date-time",
}
_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def kind_of(value: Any) -> str:
    """How a YAML value reads to its author: ``a string ('8080')``, ``a list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _number(value: Any) -> Any:
    """``1.0`` reads as ``1`` in a message; the bound was written ``le=1``."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _type_hint(expected: str, value: Any) -> str:
    if isinstance(value, str) and expected in ("an integer", "a number"):
        try:
            float(value)
        except ValueError:
            return ""
        return "remove the quotes"
    if expected == "a string" and isinstance(value, bool | int | float):
        return "quote it"
    return ""


def _items(count: Any) -> str:
    return f"{count} item" + ("" if count == 1 else "s")


def message_of(err: Any) -> tuple[str, str]:
    """A pydantic error as ``(message, hint)`` in kaip's words: ``must be <= 1 (got 2)``."""
    kind: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx", {})
    value = err.get("input")
    if kind in _TYPE_NAMES:
        expected = _TYPE_NAMES[kind]
        return f"must be {expected}, not {kind_of(value)}", _type_hint(expected, value)
    if kind == "int_from_float":
        return f"must be a whole number (got {value!r})", ""
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        return f"must be {sign} {_number(ctx.get(key))} (got {value!r})", ""
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty", ""
        return f"must be at least {ctx.get('min_length')} characters (got {len(value)})", ""
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters (got {len(value)})", ""
    if kind == "too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty", "list at least one item"
        return (
            f"must have at least {_items(ctx.get('min_length'))} (got {ctx.get('actual_length')})",
            "",
        )
    if kind == "too_long":
        return (
            f"must have at most {_items(ctx.get('max_length'))} (got {ctx.get('actual_length')})",
            "",
        )
    if kind == "string_pattern_mismatch":
        return f"{value!r} does not match {ctx.get('pattern')}", ""
    if kind == "missing":
        return "required field is missing", ""
    return str(err["msg"]).removeprefix("Value error, "), ""
