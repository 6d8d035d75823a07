"""Nova's flavor and extra-spec bodies read as Nova 2.1-2.102 reads them, and its `quota:` validators.

The schemas are nova/api/openstack/compute/schemas/flavors.py, flavors_extraspecs.py and
flavor_access.py; the `quota:` validators are nova/api/validation/extra_specs/quota.py with the
messages of its base.py and validators.py. Nova runs those validators from microversion 2.86 on;
vmqos runs them, and then the vmqos model's own Nova reader (core.formats.nova), at every
microversion, because it enforces these values itself: a flavor whose `quota:` specs the host
could not apply is refused when it is written, not found out when an instance starts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from vmqos.core.errors import VmqosError
from vmqos.core.formats import nova
from vmqos.core.model import QosDocument
from vmqos.services.openstack_input import (
    decoded,
    Fault,
    bad_request,
    body_object,
    boolean,
    int_like,
    invalid,
    metadata,
    only,
    printable,
    required,
    text,
)

Version = tuple[int, int]  # a compute microversion, (2, 61)
DESCRIPTION_MAX = 65535  # a TEXT column: 2.55's description
_ID_PATTERN = re.compile(r"^(?! )[a-zA-Z0-9. _-]+(?<! )$")
_NAME_RULE = ("An invalid 'name' value was provided. The name must be: printable characters. "
              "Can not start or end with whitespace.")
_RXTX_MAX = 3.40282e+38  # SQL_SP_FLOAT_MAX

# quota: keys and Nova's rule for each: ("int", minimum or None) or ("enum", values)
_VMWARE_ENUM = ("custom", "high", "normal", "low")
QUOTA_RULES: dict[str, tuple[str, Any]] = {
    **{f"quota:{res}_{kind}": rule for res in ("cpu", "memory", "disk_io", "vif")
       for kind, rule in (("limit", ("int", 0)), ("reservation", ("int", None)),
                          ("shares_level", ("enum", _VMWARE_ENUM)), ("shares_share", ("int", 0)))},
    "quota:cpu_shares": ("int", 0), "quota:cpu_period": ("int", 0), "quota:cpu_quota": ("int", None),
    **{f"quota:disk_{stat}_{metric}_sec": ("int", 0) for stat in ("read", "write", "total")
       for metric in ("bytes", "iops")},
    **{f"quota:vif_{way}_{attr}": ("int", 0) for way in ("inbound", "outbound")
       for attr in ("average", "peak", "burst")},
}


@dataclass(frozen=True)
class FlavorInput:
    """A flavor as POST /flavors gives it, read and checked; None id: Nova makes a UUID."""

    name: str
    id: str | None
    ram: int
    vcpus: int
    disk: int
    ephemeral: int
    swap: int
    rxtx_factor: float
    is_public: bool
    description: str | None


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise invalid("name", value, f"{value!r} is not of type 'string'")
    if value and (not all(printable(c) for c in value) or value[0].isspace() or value[-1].isspace()):
        raise bad_request(_NAME_RULE)
    if not value:
        raise invalid("name", value, "'' is too short")
    if len(value) > 255:
        raise invalid("name", value, f"{value!r} is too long")
    return value


def _flavor_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise invalid("id", value, f"{value!r} is not of type 'string', 'number', 'null'")
    if isinstance(value, str):
        if not value:
            raise invalid("id", value, "'' is too short")
        if len(value) > 255:
            raise invalid("id", value, f"{value!r} is too long")
        if not _ID_PATTERN.search(value):
            raise invalid("id", value, f"{value!r} does not match '^(?! )[a-zA-Z0-9. _-]+(?<! )$'")
    return str(value)


def _rxtx(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise invalid("rxtx_factor", value, f"{value!r} is not of type 'number', 'string'")
    if isinstance(value, str) and not re.search(r"^[0-9]+(\.[0-9]+)?$", value):
        raise invalid("rxtx_factor", value, f"{value!r} does not match '^[0-9]+(\\.[0-9]+)?$'")
    number = float(value)
    if number <= 0:
        raise invalid("rxtx_factor", value, f"{value!r} is less than or equal to the minimum of 0")
    if number > _RXTX_MAX:
        raise invalid("rxtx_factor", value, f"{value!r} is greater than the maximum of {_RXTX_MAX}")
    return number


def read_flavor(body: Any, version: Version) -> FlavorInput:
    """POST /flavors's body (schemas/flavors.py create, create_v255, create_v2102)."""
    body = decoded(body)
    values = body_object(body, "flavor")
    allowed = ["name", "id", "ram", "vcpus", "disk", "OS-FLV-EXT-DATA:ephemeral", "swap",
               "os-flavor-access:is_public"]
    if version < (2, 102):
        allowed.append("rxtx_factor")
    if version >= (2, 55):
        allowed.append("description")
    name = _name(values["name"]) if "name" in values else ""
    flavor_id = _flavor_id(values.get("id"))
    sizes = {key: int_like(key, values[key], minimum) for key, minimum in
             (("ram", 1), ("vcpus", 1), ("disk", 0), ("OS-FLV-EXT-DATA:ephemeral", 0), ("swap", 0))
             if key in values}
    rxtx = _rxtx(values["rxtx_factor"]) if "rxtx_factor" in values and version < (2, 102) else 1.0
    public = boolean("os-flavor-access:is_public", values["os-flavor-access:is_public"]) \
        if "os-flavor-access:is_public" in values else True
    description = text("description", values.get("description"), DESCRIPTION_MAX, nullable=True) \
        if version >= (2, 55) else None
    required("flavor", values, ("name", "ram", "vcpus", "disk"))
    only("flavor", values, tuple(allowed))
    only("", body, ("flavor",))
    return FlavorInput(name.strip(), flavor_id, sizes["ram"], sizes["vcpus"], sizes["disk"],
                       sizes.get("OS-FLV-EXT-DATA:ephemeral", 0), sizes.get("swap", 0), rxtx, public, description)


def read_description(body: Any) -> str | None:
    """PUT /flavors/{id}'s body (2.55's update schema): the description alone, required."""
    body = decoded(body)
    values = body_object(body, "flavor")
    description = text("description", values["description"], DESCRIPTION_MAX, nullable=True) \
        if "description" in values else None
    required("flavor", values, ("description",))
    only("flavor", values, ("description",))
    only("", body, ("flavor",))
    return description


def read_extra_specs(body: Any) -> dict[str, str]:
    """POST /flavors/{id}/os-extra_specs's body: {"extra_specs": {key: value}}, values as strings."""
    body = decoded(body)
    if not isinstance(body, dict) or "extra_specs" not in body:
        raise bad_request("'extra_specs' is a required property")
    specs = metadata("extra_specs", body["extra_specs"], numbers=True)
    only("", body, ("extra_specs",))
    return specs


def read_extra_spec(body: Any, key: str) -> dict[str, str]:
    """PUT /flavors/{id}/os-extra_specs/{key}'s body: exactly {key: value}."""
    body = decoded(body)
    if not isinstance(body, dict):
        raise bad_request(f"{body!r} is not of type 'object'")
    if len(body) < 1:
        raise bad_request(f"{body!r} does not have enough properties")
    if len(body) > 1:
        raise bad_request(f"{body!r} has too many properties")
    specs = metadata("", body, numbers=True)
    if key not in specs:
        raise bad_request("Request body and URI mismatch")
    return specs


def read_tenant(body: Any, action: str) -> str:
    """The project of an addTenantAccess / removeTenantAccess action (schemas/flavor_access.py)."""
    body = decoded(body)
    values = body.get(action) if isinstance(body, dict) else None
    if not isinstance(values, dict):
        raise invalid(action, values, f"{values!r} is not of type 'object'")
    required(action, values, ("tenant",))
    only(action, values, ("tenant",))
    tenant = values["tenant"]
    if not isinstance(tenant, str):
        raise invalid("tenant", tenant, f"{tenant!r} is not of type 'string'")
    if not 1 <= len(tenant) <= 255:
        raise invalid("tenant", tenant, f"{tenant!r} is too {'short' if not tenant else 'long'}")
    return tenant


# ------------------------------------------------------------------ the quota: extra specs


def _failed(message: str) -> Fault:
    return bad_request(f"Validation failed; {message}")


def check_quota_spec(name: str, value: str) -> None:
    """Nova's validator of one `quota:` key (extra_specs/quota.py, base.py's messages)."""
    rule = QUOTA_RULES.get(name)
    if rule is None:
        raise _failed(f"extra spec '{name}' does not appear to be a valid extra spec.")
    kind, bound = rule
    if kind == "enum":
        if value not in bound:
            raise _failed(f"'{value}' is not one of: {', '.join(bound)}.")
        return
    try:
        number = int(value)
    except ValueError:
        raise _failed(f"'{value}' is not a valid integer value.") from None
    if bound is not None and number < bound:
        raise _failed(f"'{number}' is less than the min value of '{bound}'.")


def quota_document(specs: dict[str, str]) -> QosDocument:
    """The flavor's `quota:` specs as the vmqos model reads them: Nova's validators first, with Nova's
    words, then core.formats.nova (libvirt's ranges, the keys that must go together), whose message
    names the key, the value and the fix."""
    quota = {key: value for key, value in specs.items() if key.startswith(nova.PREFIX)}
    for key, value in quota.items():
        check_quota_spec(key, value)
    try:
        return nova.read(json.dumps({"extra_specs": quota}))
    except VmqosError as exc:
        raise _failed(str(exc)) from None
