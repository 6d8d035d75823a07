"""A Neutron API request body read as Neutron reads it, refused with Neutron's own words.

Clients (the `openstack` CLI, scripts written against Neutron) show the server's message to the
operator, so each refusal is the text and the type Neutron's API gives for the same body: the
order of checks of `prepare_request_body` (body, unknown attributes, POST/PUT permissions,
required attributes, then conversion and validation attribute by attribute) and the messages of
neutron-lib's converters and validators (`api/converters.py`, `api/validators/__init__.py`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any, Callable

from vmqos.core.errors import VmqosError
from vmqos.core.formats.neutron_rules import MAX_INT

NAME_FIELD_SIZE = 255  # neutron-lib db constants
DESCRIPTION_FIELD_SIZE = 255
PROJECT_ID_FIELD_SIZE = 255
DIRECTIONS = ("egress", "ingress")  # neutron-lib constants.VALID_DIRECTIONS, as qos-bw-limit-direction validates
_TRUE = {"1", "t", "true", "on", "y", "yes"}  # oslo.utils strutils.bool_from_string
_FALSE = {"0", "f", "false", "off", "n", "no"}


class NeutronError(VmqosError):
    """A refusal as Neutron words it: the HTTP status, Neutron's exception type and its message."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        self.http_status = status
        self.type = type_
        super().__init__(message)


def bad_request(message: str) -> NeutronError:
    """webob's HTTPBadRequest, which Neutron raises while reading a body."""
    return NeutronError(400, "HTTPBadRequest", message)


def invalid_input(message: str) -> NeutronError:
    """neutron-lib InvalidInput, which its converters raise."""
    return NeutronError(400, "InvalidInput", f"Invalid input for operation: {message}.")


# ------------------------------------------------------------------ converters and validators


def to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise invalid_input(f"'{value}' cannot be converted to boolean")


def to_int(value: Any) -> int:
    """converters.convert_to_int is Python's int(); a bool or a fraction is refused here, not truncated."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise invalid_input(f"'{value}' is not an integer")
    try:
        return int(value)
    except (ValueError, TypeError, OverflowError):
        raise invalid_input(f"'{value}' is not an integer") from None


def check_range(value: int, low: int = 0, high: int = MAX_INT) -> str | None:
    if value < low:
        return f"'{value}' is too small - must be at least '{low}'"
    if value > high:
        return f"'{value}' is too large - must be no larger than '{high}'"
    return None


def check_string(value: Any, max_len: int) -> str | None:
    if not isinstance(value, str):
        return f"'{value}' is not a valid string"
    if len(value) > max_len:
        return f"'{value}' exceeds maximum length of {max_len}"
    return None


def _printable(char: str, spaces: bool) -> bool:
    if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
        return False
    return spaces or unicodedata.category(char) != "Zs"


def check_name(value: Any, max_len: int = NAME_FIELD_SIZE) -> str | None:
    """validate_name_string: printable characters, none of them a space at either end."""
    message = check_string(value, max_len)
    if message:
        return message
    if value and (not all(_printable(c, True) for c in value)
                  or not _printable(value[0], False) or not _printable(value[-1], False)):
        return f"'{value}' is not a valid string"
    return None


def check_values(value: Any, valid: tuple[str, ...]) -> str | None:
    return None if value in valid else f"{value} is not in valid_values"


def check_tags(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(t, str) and 0 < len(t) <= 255 for t in value):
        return f"'{value}' is not a list of tags of 1 to 255 characters"
    return None


# ------------------------------------------------------------------ attribute maps and the body


@dataclass(frozen=True)
class Attribute:
    """One attribute of a resource as neutron-lib's attribute map declares it."""

    post: bool
    put: bool
    default: Any = None  # None: required on POST (when post is True)
    convert: Callable[[Any], Any] | None = None
    check: Callable[[Any], str | None] | None = None


POLICY = {
    "id": Attribute(False, False),
    "name": Attribute(True, True, "", None, check_name),
    "shared": Attribute(True, True, False, to_boolean),
    "tenant_id": Attribute(True, False, "", None, lambda v: check_string(v, PROJECT_ID_FIELD_SIZE)),
    "rules": Attribute(False, False),
    "is_default": Attribute(True, True, False, to_boolean),
    "description": Attribute(True, True, "", None, lambda v: check_string(v, DESCRIPTION_FIELD_SIZE)),
    "project_id": Attribute(True, False, "", None, lambda v: check_string(v, PROJECT_ID_FIELD_SIZE)),
    "tags": Attribute(True, False, [], None, check_tags),
    "revision_number": Attribute(False, False),
    "created_at": Attribute(False, False),
    "updated_at": Attribute(False, False),
}
BANDWIDTH_LIMIT_RULE = {
    "id": Attribute(False, False),
    "max_kbps": Attribute(True, True, None, to_int, check_range),
    "max_burst_kbps": Attribute(True, True, 0, to_int, check_range),
    "direction": Attribute(True, True, "egress", None, lambda v: check_values(v, DIRECTIONS)),
}


def read_body(body: Any, resource: str, attributes: dict[str, Attribute], *, create: bool) -> dict[str, Any]:
    """The resource's attributes from a request body, defaults filled on POST, converted and checked."""
    if not body:
        raise bad_request("Resource body required")
    if not isinstance(body, dict):
        raise bad_request("Body contains invalid data")
    values = body.get(resource)
    if values is None:
        raise bad_request(f"Unable to find '{resource}' in request body")
    if not isinstance(values, dict):
        raise bad_request(f"Object '{resource}' contains invalid data")
    values = dict(values)
    unknown = [key for key in values if key not in attributes]
    if unknown:
        raise bad_request(f"Unrecognized attribute(s) '{', '.join(unknown)}'")
    for name, attr in attributes.items():
        if create:
            if not attr.post and name in values:
                raise bad_request(f"Attribute '{name}' not allowed in POST")
            if attr.post and name not in values:
                if attr.default is None:
                    raise bad_request(f"Failed to parse request. Required attribute '{name}' not specified")
                values[name] = attr.default
        elif name in values and not attr.put:
            raise bad_request(f"Cannot update read-only attribute {name}")
    for name, attr in attributes.items():
        if name not in values:
            continue
        if attr.convert is not None:
            values[name] = attr.convert(values[name])
        problem = attr.check(values[name]) if attr.check is not None else None
        if problem:
            raise bad_request(f"Invalid input for {name}. Reason: {problem}.")
    return values
