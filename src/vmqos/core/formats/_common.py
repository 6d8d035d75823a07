"""Small helpers the format modules share: strict integers and JSON loading with good errors."""

from __future__ import annotations

import json
from typing import Any

from vmqos.core.errors import FormatError, InvalidValue


def strict_int(field: str, value: Any, *, minimum: int = 0, maximum: int | None = None) -> int:
    """An integer from a JSON number or a decimal string, as the APIs accept them; never a bool or float."""
    if isinstance(value, bool):
        raise InvalidValue(field, value, "expected an integer")
    if isinstance(value, str):
        text = value.strip().strip("'\"")
        if not text.lstrip("-").isdigit():
            raise InvalidValue(field, value, "expected an integer")
        value = int(text)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise InvalidValue(field, value, "expected an integer")
    if value < minimum:
        raise InvalidValue(field, value, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise InvalidValue(field, value, f"must be at most {maximum}")
    return value


def load_json(fmt: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(fmt, f"not valid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from None
