"""What the format readers share: one integer rule and one bounded JSON loader, with good errors.

Every reader takes numbers through `ascii_int`/`strict_int` and JSON through `load_json`, so
that what a number is (units.parse_integer: ASCII digits, at most 20) and how large and deep a
document may be are decided once. Anything else the input holds ends as a one-line VmqosError
naming the field, never as a ValueError or RecursionError from deep inside Python.
"""

from __future__ import annotations

import json
import re
from typing import Any

from vmqos.core.errors import FormatError, InvalidValue
from vmqos.core.units import ASCII_WHITESPACE, MAX_DIGITS, parse_integer

# The largest document a reader takes: a policy, a flavor or a QoS spec is a few KiB, a whole
# `openstack ... -f json` dump well under this. Bounded so that a mistaken file is refused at once.
MAX_DOCUMENT_CHARS = 4 * 1024 * 1024
# The deepest nesting a reader takes (a Neutron policy is 4 deep). json.loads raises
# RecursionError near 1,000 levels, so this is checked before parsing.
MAX_DEPTH = 32
# JSON strings (skipped: brackets inside them do not nest) and brackets, for the depth scan.
_JSON_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


class HugeNumber:
    """A JSON integer of more than MAX_DIGITS digits, kept as text so no reader computes with it.

    `load_json` returns it in place of an int; `strict_int` refuses it naming the field, and a
    reader that wants a string or an object refuses it as it would any other wrong type.
    """

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"<a number of {len(self.text.lstrip('-'))} digits>"


def ascii_int(field: str, text: str, *, signs: str = "+-") -> int:
    """`text` as an integer as every reader takes it: units.parse_integer after stripping ASCII
    whitespace (only ASCII: `str.strip()` would also eat control characters)."""
    return parse_integer(field, text.strip(ASCII_WHITESPACE), signs=signs)


def _unquoted(text: str) -> str:
    """`text` without one pair of matching quotes around it; a lone or unmatched quote stays (and is refused)."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def strict_int(field: str, value: Any, *, minimum: int = 0, maximum: int | None = None,
               signs: str = "+-") -> int:
    """An integer from a JSON number or a decimal string, as the APIs accept them; never a bool or float.

    Strings may be quoted once more (`'512'`, as `openstack flavor show` prints them) and carry a
    sign from `signs`; Python's int() would also take `²`, `٥` or `1_000`, which are refused.
    """
    if isinstance(value, bool):
        raise InvalidValue(field, value, "expected an integer")
    if isinstance(value, HugeNumber):
        raise InvalidValue(field, value, f"no value vmqos takes has more than {MAX_DIGITS} digits")
    if isinstance(value, str):
        value = ascii_int(field, _unquoted(value.strip(ASCII_WHITESPACE)), signs=signs)
    if isinstance(value, float) and value.is_integer() and abs(value) < 10.0**MAX_DIGITS:
        value = int(value)
    if not isinstance(value, int):
        raise InvalidValue(field, value, "expected an integer")
    if value < minimum:
        raise InvalidValue(field, value, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise InvalidValue(field, value, f"must be at most {maximum}")
    if abs(value) >= 10**MAX_DIGITS:
        raise InvalidValue(field, value, f"no value vmqos takes has more than {MAX_DIGITS} digits")
    return value


def check_size(fmt: str, text: str) -> None:
    """Refuse a document larger than MAX_DOCUMENT_CHARS before any work is done on it."""
    if len(text) > MAX_DOCUMENT_CHARS:
        raise FormatError(fmt, f"the input has {len(text)} characters; a {fmt} document has at most "
                               f"{MAX_DOCUMENT_CHARS} - is this the right file?")


def check_depth(fmt: str, text: str) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH, before json.loads recurses into it."""
    depth = 0
    for match in _JSON_NESTING.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                raise FormatError(fmt, f"nested more than {MAX_DEPTH} levels deep; a {fmt} document is "
                                       "a few levels deep - is this the right file?", line=line)
        elif token in ("]", "}"):
            depth -= 1


def _json_int(text: str) -> int | HugeNumber:
    return HugeNumber(text) if len(text.lstrip("-")) > MAX_DIGITS else int(text)


def load_json(fmt: str, text: str) -> Any:
    """JSON text, bounded in size and depth; an integer of more than MAX_DIGITS digits is a HugeNumber."""
    check_size(fmt, text)
    check_depth(fmt, text)
    try:
        return json.loads(text, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise FormatError(fmt, f"not valid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from None
    except (ValueError, RecursionError) as exc:  # pragma: no cover - bounded above; kept as a last guard
        raise FormatError(fmt, f"not valid JSON: {type(exc).__name__}") from None
