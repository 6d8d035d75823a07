"""Request bodies read as Nova and Cinder read them, refused with their own words and fault codes.

Both services check a body against a JSON schema (nova/api/validation, cinder/api/validation) and
word a refusal as `Invalid input for field/attribute <name>. Value: <value>. <jsonschema's
message>`; the API answers it as their fault body, `{"badRequest": {"code": 400, "message": ...}}`.
The checks here are those schemas' keywords for the few fields the flavor, extra-spec, QoS-spec,
volume-type and volume bodies have, in the order jsonschema meets them (type, pattern, minimum,
maximum, then the object's required and additional properties).
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from vmqos.core.errors import VmqosError

MAX_INT = 0x7FFFFFFF  # nova/db/constants.py and cinder's db MAX_INT
# The keys of Nova's `metadata` (flavor extra specs) and of Cinder's `extra_specs` (QoS and type specs).
NOVA_KEY = re.compile(r"[a-zA-Z0-9-_:. ]{1,255}")
CINDER_KEY = re.compile(r"[a-zA-Z0-9-_:. /]{1,255}")
_TRUE = ("1", "t", "true", "on", "y", "yes")  # oslo.utils strutils.bool_from_string(strict=True)
_FALSE = ("0", "f", "false", "off", "n", "no")
# parameter_types.boolean's enum, as jsonschema prints it in a refusal
BOOLEAN_ENUM = [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes",
                False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no"]
CINDER_BOOLEAN_ENUM = [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t",
                       False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no", "n", "f"]


class Fault(VmqosError):
    """A refusal as Nova and Cinder word it: the HTTP status and the message of their fault body."""

    def __init__(self, status: int, message: str) -> None:
        self.http_status = status
        super().__init__(message)


def bad_request(message: str) -> Fault:
    return Fault(400, message)


def decoded(body: Any) -> Any:
    """A body FastAPI left as bytes (sent without a JSON content type) read as JSON, as Nova and Cinder
    read any body; "Malformed request body" when it is not JSON."""
    if isinstance(body, (bytes, bytearray)):
        try:
            return json.loads(body)
        except ValueError:
            raise bad_request("Malformed request body") from None
    return body


def forbidden(action: str) -> Fault:
    """PolicyNotAuthorized, worded alike by Nova and Cinder."""
    return Fault(403, f"Policy doesn't allow {action} to be performed.")


def invalid(field: str, value: Any, message: str) -> Fault:
    """A schema refusal of a body's attribute (nova/cinder api/validation/validators.py); of the body
    itself (`field` empty), jsonschema's message alone."""
    if not field:
        return bad_request(message)
    return bad_request(f"Invalid input for field/attribute {field}. Value: {value}. {message}")


def body_object(body: Any, key: str) -> dict[str, Any]:
    """`body[key]`, an object, as the schemas require it (`required: [key]`, type object)."""
    body = decoded(body)
    if not isinstance(body, dict):
        raise bad_request(f"{body!r} is not of type 'object'")
    if key not in body:
        raise bad_request(f"'{key}' is a required property")
    value = body[key]
    if not isinstance(value, dict):
        raise invalid(key, value, f"{value!r} is not of type 'object'")
    return value


def only(field: str, value: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """`additionalProperties: False`."""
    extra = [key for key in value if key not in allowed]
    if extra:
        verb = "were" if len(extra) > 1 else "was"
        raise invalid(field, value, f"Additional properties are not allowed "
                                    f"({', '.join(repr(k) for k in extra)} {verb} unexpected)")


def required(field: str, value: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        if name not in value:
            raise invalid(field, value, f"'{name}' is a required property")


def int_like(field: str, value: Any, minimum: int, maximum: int = MAX_INT) -> int:
    """An integer given as a JSON number or a string of digits (parameter_types.volume_size and kin)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise invalid(field, value, f"{value!r} is not of type 'integer', 'string'")
    if isinstance(value, str) and not re.search(r"^[0-9]+$", value):
        raise invalid(field, value, f"{value!r} does not match '^[0-9]+$'")
    number = int(value)
    if number < minimum:
        raise invalid(field, value, f"{number} is less than the minimum of {minimum}")
    if number > maximum:
        raise invalid(field, value, f"{number} is greater than the maximum of {maximum}")
    return number


def boolean(field: str, value: Any, enum: list[Any] = BOOLEAN_ENUM) -> bool:
    """parameter_types.boolean (Nova's, or Cinder's `enum`), then oslo's strict bool_from_string."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str) or value not in enum:
        raise invalid(field, value, f"{value!r} is not one of {enum}")
    return value.strip().lower() in _TRUE


def query_boolean(value: str) -> bool | None:
    """A query's boolean (strutils.bool_from_string, strict); None when it is not one."""
    text = value.strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def printable(char: str) -> bool:
    """A character of Nova's and Cinder's valid names and descriptions (parameter_types._get_printable)."""
    return unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def text(field: str, value: Any, max_length: int, *, nullable: bool = False, min_length: int = 0) -> str | None:
    """A string of printable characters (a description), or None when `nullable`."""
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        kinds = "'string', 'null'" if nullable else "'string'"
        raise invalid(field, value, f"{value!r} is not of type {kinds}")
    if len(value) < min_length:
        raise invalid(field, value, f"{value!r} is too short")
    if len(value) > max_length:
        raise invalid(field, value, f"{value!r} is too long")
    if not all(printable(c) for c in value):
        raise invalid(field, value, f"{value!r} does not match the printable characters of a description")
    return value


def metadata(field: str, value: Any, *, numbers: bool, keys: re.Pattern[str] = NOVA_KEY) -> dict[str, str]:
    """Extra specs (parameter_types.metadata, extra_specs): keys of `keys`, string values of at most 255
    characters (numbers too when `numbers`, as Nova's flavor extra specs take them); stored as strings."""
    if not isinstance(value, dict):
        raise invalid(field, value, f"{value!r} is not of type 'object'")
    kinds = (str, int, float) if numbers else (str,)
    for key, item in value.items():
        if not keys.fullmatch(key):
            raise invalid(field, value, f"Additional properties are not allowed ({key!r} was unexpected)")
        if isinstance(item, bool) or not isinstance(item, kinds):
            names = "'string', 'number'" if numbers else "'string'"
            raise invalid(key, item, f"{item!r} is not of type {names}")
        if isinstance(item, str) and len(item) > 255:
            raise invalid(key, item, f"{item!r} is too long")
        if not isinstance(item, str) and len(str(item)) > 255:
            raise bad_request("extra_specs value has a length greater than 255.")
    return {key: item if isinstance(item, str) else str(item) for key, item in value.items()}
