"""A Neutron API request body read as Neutron reads it, refused with Neutron's own words.

Clients (the `openstack` CLI, scripts written against Neutron) show the server's message to the
operator, so each refusal is the text and the type Neutron's API gives for the same body: the
order of checks of `prepare_request_body` (body, unknown attributes, POST/PUT permissions,
required attributes, then conversion and validation attribute by attribute) and the messages of
neutron-lib's converters and validators (`api/converters.py`, `api/validators/__init__.py`).
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from vmqos.core.errors import VmqosError
from vmqos.core.formats.neutron_rules import (
    BANDWIDTH_LIMIT,
    DSCP_MARKING,
    MAX_INT,
    MINIMUM_BANDWIDTH,
    MINIMUM_PACKET_RATE,
    PACKET_RATE_LIMIT,
)
from vmqos.core.model.network import VALID_DSCP_MARKS

NAME_FIELD_SIZE = 255  # neutron-lib db constants
DESCRIPTION_FIELD_SIZE = 255
PROJECT_ID_FIELD_SIZE = 255
DIRECTIONS = ("ingress", "egress")  # neutron-lib constants.VALID_DIRECTIONS, as qos-bw-limit-direction validates
DIRECTIONS_AND_ANY = ("any", "ingress", "egress")  # VALID_DIRECTIONS_AND_ANY (minimum_packet_rate only)
DSCP_MARKS = tuple(sorted(VALID_DSCP_MARKS))  # constants.VALID_DSCP_MARKS, in Neutron's order
MAX_TAG_LEN = 255  # neutron/extensions/tagging.py
MAX_TAGS_COUNT = 50
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


def is_uuid_like(value: Any) -> bool:
    """oslo.utils uuidutils.is_uuid_like: Keystone's 32-hex ids count, as do dashed UUIDs."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)).replace("-", "") == \
            value.replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "").lower()
    except (TypeError, ValueError, AttributeError):
        return False


def check_uuid(value: Any) -> str | None:
    return None if is_uuid_like(value) else f"'{value}' is not a valid UUID"


def check_unique_strings(value: Any, max_len: int = MAX_TAG_LEN) -> str | None:
    """validate_list_of_unique_strings: a list, no duplicate, each a string of at most max_len."""
    if not isinstance(value, list):
        return f"'{value}' is not a list"
    seen: list[Any] = []
    dups: list[Any] = []
    for item in value:
        if item in seen and item not in dups:
            dups.append(item)
        seen.append(item)
    if dups:
        return f"Duplicate items in the list: '{', '.join(str(d) for d in dups)}'"
    for item in value:
        problem = check_string(item, max_len)
        if problem:
            return problem
    return None


def check_target_project(value: Any) -> None:
    """neutron/extensions/rbac.py _validate_valid_target_project: it raises instead of returning."""
    if value != "*" and not is_uuid_like(value):
        raise invalid_input(f"'{value}' is not a valid target project ID; expected a UUID or '*'")


def to_rbac_object_type(value: Any) -> str:
    """convert_valid_object_type: the types this server shares (Neutron also has network, security_group...)."""
    normalized = value.strip().lower() if isinstance(value, str) else value
    if normalized in RBAC_OBJECT_TYPES:
        return str(normalized)
    raise invalid_input(f"'{value}' is not a valid RBAC object type")


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
    "tags": Attribute(False, False),  # standard-attr-tag: set through .../tags, not in the body
    "revision_number": Attribute(False, False),
    "created_at": Attribute(False, False),
    "updated_at": Attribute(False, False),
}
_ID = Attribute(False, False)


def _values(valid: tuple[Any, ...]) -> Callable[[Any], str | None]:
    return lambda v: check_values(v, valid)


# neutron-lib api/definitions qos, qos_bw_limit_direction, qos_bw_minimum_ingress, qos_pps_rule and
# qos_pps_minimum_rule: every rule type's body, in the order Neutron declares its attributes.
RULES: dict[str, dict[str, Attribute]] = {
    BANDWIDTH_LIMIT: {"id": _ID, "max_kbps": Attribute(True, True, None, to_int, check_range),
                      "max_burst_kbps": Attribute(True, True, 0, to_int, check_range),
                      "direction": Attribute(True, True, "egress", None, _values(DIRECTIONS))},
    DSCP_MARKING: {"id": _ID, "dscp_mark": Attribute(True, True, None, to_int, _values(DSCP_MARKS))},
    MINIMUM_BANDWIDTH: {"id": _ID, "min_kbps": Attribute(True, True, None, to_int, check_range),
                        "direction": Attribute(True, True, "egress", None, _values(DIRECTIONS))},
    PACKET_RATE_LIMIT: {"id": _ID, "max_kpps": Attribute(True, True, None, to_int, check_range),
                        "max_burst_kpps": Attribute(True, True, 0, to_int, check_range),
                        "direction": Attribute(True, True, "egress", None, _values(DIRECTIONS))},
    MINIMUM_PACKET_RATE: {"id": _ID, "min_kpps": Attribute(True, True, None, to_int, check_range),
                          "direction": Attribute(True, True, "egress", None, _values(DIRECTIONS_AND_ANY))},
}
BANDWIDTH_LIMIT_RULE = RULES[BANDWIDTH_LIMIT]
RBAC_OBJECT_TYPES = ("qos_policy",)
# neutron/extensions/rbac.py RESOURCE_ATTRIBUTE_MAP (target_tenant raises from its own validator)
RBAC_POLICY = {
    "id": _ID,
    "object_type": Attribute(True, False, None, to_rbac_object_type),
    "object_id": Attribute(True, False, None, None, check_uuid),
    "target_tenant": Attribute(True, True, None, None, lambda v: check_target_project(v)),
    "tenant_id": Attribute(True, False, "", None, lambda v: check_string(v, 255)),
    "project_id": Attribute(True, False, "", None, lambda v: check_string(v, 255)),
    "action": Attribute(True, False, None, None, lambda v: check_string(v, DESCRIPTION_FIELD_SIZE)),
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
