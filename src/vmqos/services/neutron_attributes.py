"""The attribute maps of Neutron's networks and ports, as this server implements them.

Each attribute is declared as neutron-lib declares it (api/definitions/network.py, port.py,
portbindings.py, qos.py's qos_policy_id, qos_port_network_policy.py, network_mtu.py,
standard-attr description/revisions/timestamps) and read by `neutron_input.read_body`, with
neutron-lib's validators' messages. Attributes of extensions this server does not list (port
security, allowed address pairs, DNS, ...) are unknown here, so Neutron's own "Unrecognized
attribute(s)" refuses them rather than a silent drop.

`UNSET` stands for neutron-lib's `default: None` (optional, null when absent): `read_body` reads a
default of None as "required", so these attributes default to UNSET and `absent_as_none` turns it
into None after the checks.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from vmqos.core.desired.neutron_ports import profile_device
from vmqos.core.errors import InvalidValue
from vmqos.services.neutron_input import (
    DESCRIPTION_FIELD_SIZE,
    NAME_FIELD_SIZE,
    Attribute,
    check_string,
    check_unique_strings,
    check_values,
    invalid_input,
    to_boolean,
)
from vmqos.services.neutron_listing import Listing, as_integer, as_is

PROJECT_ID_FIELD_SIZE = DEVICE_ID_FIELD_SIZE = DEVICE_OWNER_FIELD_SIZE = 255  # neutron-lib db constants
VNIC_TYPES = ("normal", "direct", "macvtap", "baremetal", "direct-physical", "virtio-forwarder")  # portbindings
NETWORK_MTU = 1500  # what the networks here report (net-mtu); vmqos does not plug devices, their MTU is theirs


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def absent_as_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if v is UNSET else v) for k, v in values.items()}


def check_uuid(value: Any) -> str | None:
    """validate_uuid: oslo's is_uuid_like (any case, with or without hyphens)."""
    try:
        ok = isinstance(value, str) and str(uuid.UUID(value)).replace("-", "") == \
            value.replace("-", "").replace("{", "").replace("}", "").replace("urn:uuid:", "").lower()
    except ValueError:
        ok = False
    return None if ok else f"'{value}' is not a valid UUID"


def check_uuid_or_none(value: Any) -> str | None:
    return None if value is None or value is UNSET else check_uuid(value)


_MAC = re.compile(r"^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$")


def check_mac(value: Any) -> str | None:
    """validate_mac_address: a unicast-or-not EUI-48 that is not all zeros."""
    if not isinstance(value, str) or not _MAC.match(value) or value.replace(":", "").replace("-", "") == "0" * 12:
        return f"'{value}' is not a valid MAC address"
    return None


def check_profile(value: Any) -> str | None:
    """validate_dict_or_none, and vmqos's "device" key, if any, a device name the kernel takes."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return f"'{value}' is not a dictionary"
    try:
        profile_device(value)
    except InvalidValue as exc:
        return str(exc)
    return None


def check_list(value: Any) -> str | None:
    return None if isinstance(value, list) else f"'{value}' is not a list"


def check_uuid_list(value: Any) -> str | None:
    if not isinstance(value, list):
        return f"'{value}' is not a list"
    for item in value:
        problem = check_uuid(item)
        if problem:
            return problem
    return None


def _string(size: int) -> Any:
    return lambda v: check_string(v, size)


def _mac(value: Any) -> Any:
    return value.lower().replace("-", ":") if isinstance(value, str) else value


def _profile(value: Any) -> Any:
    return {} if value is None else dict(value) if isinstance(value, dict) else value


READ_ONLY = Attribute(False, False)

NETWORK = {
    "id": READ_ONLY,
    "name": Attribute(True, True, "", None, _string(NAME_FIELD_SIZE)),
    "subnets": READ_ONLY,
    "admin_state_up": Attribute(True, True, True, to_boolean),
    "status": READ_ONLY,
    "tenant_id": Attribute(True, False, "", None, _string(PROJECT_ID_FIELD_SIZE)),
    "project_id": Attribute(True, False, "", None, _string(PROJECT_ID_FIELD_SIZE)),
    "shared": Attribute(True, True, False, to_boolean),
    "mtu": READ_ONLY,  # net-mtu: read-only
    "qos_policy_id": Attribute(True, True, UNSET, None, check_uuid_or_none),
    "description": Attribute(True, True, "", None, _string(DESCRIPTION_FIELD_SIZE)),
    "tags": READ_ONLY,
    "revision_number": READ_ONLY,
    "created_at": READ_ONLY,
    "updated_at": READ_ONLY,
}

PORT = {
    "id": READ_ONLY,
    "name": Attribute(True, True, "", None, _string(NAME_FIELD_SIZE)),
    "network_id": Attribute(True, False, None, None, check_uuid),
    "admin_state_up": Attribute(True, True, True, to_boolean),
    "mac_address": Attribute(True, True, UNSET, _mac, lambda v: None if v is UNSET else check_mac(v)),
    "fixed_ips": Attribute(True, True, [], None, check_list),
    "device_id": Attribute(True, True, "", None, _string(DEVICE_ID_FIELD_SIZE)),
    "device_owner": Attribute(True, True, "", None, _string(DEVICE_OWNER_FIELD_SIZE)),
    "tenant_id": Attribute(True, False, "", None, _string(PROJECT_ID_FIELD_SIZE)),
    "project_id": Attribute(True, False, "", None, _string(PROJECT_ID_FIELD_SIZE)),
    "status": READ_ONLY,
    "description": Attribute(True, True, "", None, _string(DESCRIPTION_FIELD_SIZE)),
    "security_groups": Attribute(True, True, [], None, check_uuid_list),
    "binding:host_id": Attribute(True, True, "", lambda v: "" if v is None else v, _string(255)),
    "binding:profile": Attribute(True, True, {}, _profile, check_profile),
    "binding:vnic_type": Attribute(True, True, "normal", None, lambda v: check_values(v, VNIC_TYPES)),
    "binding:vif_type": READ_ONLY,
    "binding:vif_details": READ_ONLY,
    "qos_policy_id": Attribute(True, True, UNSET, None, check_uuid_or_none),
    "qos_network_policy_id": READ_ONLY,
    # tagging.py TAG_ATTRIBUTE_MAP_PORTS: a port takes its first tags in its POST (tag-ports-during-bulk-creation)
    "tags": Attribute(True, False, [], None, check_unique_strings),
    "revision_number": READ_ONLY,
    "created_at": READ_ONLY,
    "updated_at": READ_ONLY,
}

ATTRIBUTES = {"network": NETWORK, "port": PORT}


def _kvp(value: str) -> str:
    """convert_kvp_str_to_list's check of a fixed_ips filter (key=value); no port here has an address."""
    key, equals, _rest = value.partition("=")
    if not (equals and key.strip()):
        raise invalid_input(f"'{value}' is not of the form <key>=[value]")
    return value


# What a list filters and sorts on: the attributes neutron-lib declares `is_filter` / `is_sort_key`
# (network.py, port.py, project_id as tenant_id, network_mtu, portbindings' binding:host_id,
# securitygroup's security_groups, standard-attr description and revision_number, the tag filters).
# A port's or network's qos_policy_id is not one (qos.py declares no is_filter): filter-validation's 400.
NETWORK_LISTING = Listing(
    filters={"id": as_is, "name": as_is, "admin_state_up": to_boolean, "status": as_is, "tenant_id": as_is,
             "project_id": as_is, "shared": to_boolean, "mtu": as_integer, "description": as_is,
             "revision_number": as_integer},
    sort_keys=("id", "name", "admin_state_up", "status", "tenant_id", "project_id", "mtu"), tags=True)
PORT_LISTING = Listing(
    filters={"id": as_is, "name": as_is, "network_id": as_is, "admin_state_up": to_boolean, "mac_address": _mac,
             "fixed_ips": _kvp, "device_id": as_is, "device_owner": as_is, "tenant_id": as_is, "project_id": as_is,
             "status": as_is, "description": as_is, "security_groups": as_is, "binding:host_id": as_is,
             "revision_number": as_integer},
    sort_keys=("id", "name", "network_id", "admin_state_up", "mac_address", "device_id", "device_owner",
               "tenant_id", "project_id", "status"), tags=True)

# Attributes whose change needs more than the resource's own rule (neutron's default policies,
# neutron/conf/policies/network.py and port.py): admin only.
ADMIN_ONLY = {
    "network": ("shared",),
    "port": ("binding:host_id", "binding:profile"),
}
# Shown to an admin only (get_port:binding:host_id, :profile, :vif_type, :vif_details).
ADMIN_VISIBLE = ("binding:host_id", "binding:profile", "binding:vif_type", "binding:vif_details")

# The extensions these resources bring, as neutron-lib's api/definitions name them.
EXTENSIONS = (
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application",
     "2014-02-03T10:00:00-00:00"),
    ("qos-port-network-policy", "QoS port network policy ID", "Adds a the QoS network ID to the port definition",
     "2019-11-01T10:00:00-00:00"),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource.", "2015-03-25T10:00:00-00:00"),
    ("tag-ports-during-bulk-creation", "Tag Ports During Bulk Creation", "Allow to tag ports during bulk creation",
     "2019-12-29T19:00:00-00:00"),
)
