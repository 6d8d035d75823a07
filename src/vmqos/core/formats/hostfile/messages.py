"""Pydantic's complaints about a host file's shape, as one FormatError an operator can act on.

The wire models check the shape; what pydantic says about a mistake (`extra_forbidden`, a
location tuple) is translated here into the key, its line, and the key that was probably meant.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

from vmqos.core.errors import FormatError, shown
from vmqos.core.formats.hostfile.places import FMT, Lines, Path, in_where, where
from vmqos.core.formats.hostfile.wire import HostFileWire, keys_at

_TYPES = {
    "int_type": "expected an integer",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "list_type": "expected a list",
}



def validate(data: dict[str, Any], lines: Lines) -> HostFileWire:
    try:
        return HostFileWire.model_validate(data)
    except ValidationError as exc:
        errors = [(lines(tuple(e["loc"])) or 0, i, e) for i, e in enumerate(exc.errors())]
        errors.sort(key=lambda item: item[:2])
        line, _, first = errors[0]
        message = shape_message(first)
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        raise FormatError(FMT, message, line=line or None) from None


def shape_message(error: Any) -> str:
    loc: Path = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        parent, key = loc[:-1], str(loc[-1])
        allowed = keys_at(parent) or []
        text = f"unknown key {key!r} {in_where(parent)}"
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            return f"{text}; did you mean {close[0]!r}?"
        return f"{text}; expected one of: {', '.join(allowed)}" if allowed else text
    if kind == "missing":
        return f"missing key {str(loc[-1])!r} {in_where(loc[:-1])}"
    message = _TYPES.get(kind) or str(error["msg"]).replace("Input should be", "expected")
    value = error.get("input")
    if not isinstance(value, (dict, list)):
        message += f", got {shown(value)}"  # shortened: a value may be 5,000 digits long
    return f"{where(loc)}: {message}"
