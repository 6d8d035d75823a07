"""Neutron ports as a project's callers see and change them: bound to a host, with a QoS policy.

The use cases behind the API server's `/v2.0/ports`. What vmqos reads of a port: its host
(`binding:host_id`), its device there (Nova's tap name, or `binding:profile` {"device": NAME}), its
`qos_policy_id`, and its network's (`qos_network_policy_id`, which applies when the port has none).
The all-in-one enforcer (`services.neutron_enforcer`) turns them into limits on the host's kernel.

A bound port answers `binding:vif_type` "tap" and names its device in `binding:vif_details`
({"device": NAME}); an unbound one "unbound" and {}, as Neutron does. vmqos wires nothing, so a
port's `status` stays DOWN. There are no subnets and vmqos allocates no address, but a port's
`fixed_ips` may name the instance's addresses (`{"ip_address": IP}`, at most Neutron's
max_fixed_ips_per_port): the host's uplink classifies the traffic towards the instance by them,
to hold its guaranteed minimum (issue 16). They answer as Neutron's, with a null `subnet_id`.
"""

from __future__ import annotations

import ipaddress
import secrets
import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

from vmqos.core.desired.neutron_ports import device_name
from vmqos.services import fleet_desired
from vmqos.services.identity import Caller
from vmqos.services.neutron_access import (
    check_admin_attributes,
    check_policy_change,
    check_write,
    forbidden,
    now_utc,
    owns,
    policy_not_found,
    project_for,
    time_text,
)
from vmqos.services.neutron_attributes import ADMIN_VISIBLE, PORT, PORT_LISTING, UNSET, absent_as_none
from vmqos.services.neutron_input import NeutronError, bad_request, invalid_input, read_body
from vmqos.services.neutron_listing import Page, read_query, select
from vmqos.services.neutron_tags import Taggable, check_limit
from vmqos.services.networks import get_network, network_not_found, show_subnet
from vmqos.store import Store
from vmqos.store import neutron_ports as records
from vmqos.store.neutron_ports import MacAddressInUse, NetworkGone, PolicyGone, StoredNetwork, StoredPort

MAX_FIXED_IPS = 5  # neutron's max_fixed_ips_per_port
BASE_MAC = "fa:16:3e"  # neutron's base_mac: the first three octets of the MAC addresses it makes
MAC_GENERATION_RETRIES = 16  # neutron's mac_generation_retries
# A port's body attribute -> the stored field
_FIELDS = {"name": "name", "description": "description", "admin_state_up": "admin_state_up",
           "mac_address": "mac_address", "device_id": "device_id", "device_owner": "device_owner",
           "binding:host_id": "host_id", "binding:profile": "profile", "binding:vnic_type": "vnic_type",
           "qos_policy_id": "qos_policy_id"}


def port_view(port: StoredPort, network_policy: str | None, *, admin: bool) -> dict[str, Any]:
    """The port as Neutron shows it; a non-admin does not see where it is bound."""
    bound = bool(port.host_id)
    view = {"id": port.id, "name": port.name, "network_id": port.network_id, "tenant_id": port.project_id,
            "project_id": port.project_id, "mac_address": port.mac_address, "admin_state_up": port.admin_state_up,
            "status": "DOWN", "device_id": port.device_id, "device_owner": port.device_owner,
            "fixed_ips": [{"subnet_id": None, "ip_address": ip} for ip in port.fixed_ips],
            "security_groups": [], "description": port.description, "binding:host_id": port.host_id,
            "binding:profile": dict(port.profile), "binding:vnic_type": port.vnic_type,
            "binding:vif_type": "tap" if bound else "unbound",
            "binding:vif_details": {"device": device_name(port.id, port.profile)} if bound else {},
            "qos_policy_id": port.qos_policy_id, "qos_network_policy_id": network_policy, "tags": list(port.tags),
            "revision_number": port.revision_number, "created_at": time_text(port.created_at),
            "updated_at": time_text(port.updated_at)}
    return view if admin else without_binding(view)


def without_binding(view: dict[str, Any]) -> dict[str, Any]:
    """A port's view as a non-admin sees it: without where it is bound."""
    return {k: v for k, v in view.items() if k not in ADMIN_VISIBLE}


def port_not_found(port_id: str) -> NeutronError:
    return NeutronError(404, "PortNotFound", f"Port {port_id} could not be found.")


def visible(caller: Caller, port: StoredPort) -> bool:
    return caller.is_admin or owns(caller, port.project_id)


def _network_policies(store: Store) -> dict[str, str | None]:
    return {n.id: n.qos_policy_id for n in records.list_networks(store)}


def _view(store: Store, caller: Caller, port: StoredPort) -> dict[str, Any]:
    network = records.list_networks(store, port.network_id)
    return port_view(port, network[0].qos_policy_id if network else None, admin=caller.is_admin)


def _get(store: Store, caller: Caller, port_id: str) -> StoredPort:
    found = records.list_ports(store, port_id)
    if not found or not visible(caller, found[0]):
        raise port_not_found(port_id)
    return found[0]


def _writable(store: Store, caller: Caller, port_id: str, action: str) -> StoredPort:
    port = _get(store, caller, port_id)
    if not caller.can_write:
        raise forbidden(action)
    return port


def _check_addresses(caller: Caller, values: dict[str, Any]) -> tuple[str, ...] | None:
    """The instance's addresses `fixed_ips` names (None: the body does not say). There are no subnets nor
    security groups here: naming one is naming what does not exist, and an address must be given."""
    fixed_ips = values.get("fixed_ips", UNSET)
    found: list[str] = []
    for fixed_ip in fixed_ips if isinstance(fixed_ips, list) else []:
        if not isinstance(fixed_ip, dict):
            raise NeutronError(400, "HTTPBadRequest", f"Invalid input for fixed_ips. Reason: Invalid data format "
                                                      f"for fixed IP: '{fixed_ip}'.")
        if "subnet_id" in fixed_ip:
            show_subnet(caller, str(fixed_ip["subnet_id"]))
        if "ip_address" not in fixed_ip:
            raise invalid_input("the network has no subnet to allocate an address from: give the instance's "
                                "address in fixed_ips as {\"ip_address\": \"10.0.0.5\"}")
        try:
            found.append(str(ipaddress.ip_address(str(fixed_ip["ip_address"]))))
        except ValueError:
            raise invalid_input(f"'{fixed_ip['ip_address']}' is not a valid IP address.") from None
    if len(found) > MAX_FIXED_IPS:
        raise invalid_input("Exceeded maximum amount of fixed ips per port.")
    if len(set(found)) != len(found):
        raise invalid_input("Duplicate IP address in fixed_ips: give each address once")
    for group in values.get("security_groups") or []:
        raise NeutronError(404, "SecurityGroupNotFound", f"Security group {group} does not exist")
    return tuple(found) if isinstance(fixed_ips, list) else None


def _save(store: Store, port: StoredPort, replaces: int | None) -> StoredPort:
    """Store the port and, in the same transaction, its desired rows (its binding, device or policy may
    have changed)."""
    try:
        records.save_port(store, port, replaces=replaces, then=fleet_desired.then_ports([port.id]))
    except PolicyGone as exc:
        raise policy_not_found(exc.policy_id) from None
    except NetworkGone as exc:
        raise network_not_found(exc.network_id) from None
    except MacAddressInUse as exc:
        raise NeutronError(409, "MacAddressInUse", str(exc)) from None
    return port


def random_mac() -> str:
    return BASE_MAC + "".join(f":{b:02x}" for b in secrets.token_bytes(3))


# ------------------------------------------------------------------ the use cases


def list_ports(store: Store, caller: Caller, params: list[tuple[str, str]]) -> Page:
    """The ports the caller sees that the query's filters match, sorted and paged as Neutron does.

    Filtered on every filterable attribute, binding:host_id too, as Neutron filters in its query; shown
    without what the caller may not see."""
    query = read_query(params, PORT_LISTING)
    policies = _network_policies(store)
    views = [port_view(p, policies.get(p.network_id), admin=True) for p in records.list_ports(store)
             if visible(caller, p)]
    return select(views, query, shown=None if caller.is_admin else without_binding)


def show_port(store: Store, caller: Caller, port_id: str) -> dict[str, Any]:
    return _view(store, caller, _get(store, caller, port_id))


def _usable_network(store: Store, caller: Caller, network_id: str, project: str) -> StoredNetwork:
    """The network a port is made on: one the caller sees, and, for a non-admin, its project's or shared
    (neutron's _validate_network_tenant_ownership: a 404 that hides the network)."""
    network = get_network(store, caller, network_id)
    if not (caller.is_admin or network.shared or network.project_id == project):
        raise NeutronError(404, "HTTPNotFound", "The resource could not be found.")
    return network


def _new_port(store: Store, caller: Caller, values: dict[str, Any], body: Any,
              at: datetime) -> tuple[StoredPort, StoredNetwork]:
    """The port a create's checked attributes make, after Neutron's checks of who may make it where."""
    check_admin_attributes(caller, "port", "create_port", values, body, create=True)
    project = project_for(caller, values)
    network = _usable_network(store, caller, values["network_id"], project)
    addresses = _check_addresses(caller, values)
    check_policy_change(store, caller, None, values["qos_policy_id"])
    check_limit("ports", values["tags"])
    values = absent_as_none(values)
    port = StoredPort(str(uuid.uuid4()), project, network.id, values["name"], values["description"],
                      values["admin_state_up"], values["mac_address"] or random_mac(), values["device_id"],
                      values["device_owner"], values["binding:host_id"], values["binding:vnic_type"],
                      values["qos_policy_id"], 1, at, at, values["binding:profile"], tuple(values["tags"]),
                      addresses or ())
    return port, network


def create(store: Store, caller: Caller, body: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """`POST /v2.0/ports`: one port ({"port": {...}}) or, as Neutron's controller reads a body with the
    collection's key, several ({"ports": [...]}), answered under the same key."""
    if isinstance(body, dict) and "ports" in body:
        return {"ports": create_ports(store, caller, body, now=now)}
    return {"port": create_port(store, caller, body, now=now)}


def create_port(store: Store, caller: Caller, body: Any, *, now: datetime | None = None) -> dict[str, Any]:
    check_write(caller, "create_port")
    values = read_body(body, "port", PORT, create=True)
    port, network = _new_port(store, caller, values, body, now_utc(now))
    for _attempt in range(MAC_GENERATION_RETRIES):
        try:
            return port_view(_save(store, port, None), network.qos_policy_id, admin=caller.is_admin)
        except NeutronError as exc:
            if exc.type != "MacAddressInUse" or values["mac_address"]:
                raise
            port = replace(port, mac_address=random_mac())
    raise NeutronError(503, "MacAddressGenerationFailure",
                       f"Unable to generate unique mac on network {network.id}.")


def _bulk_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The items of {"ports": [...]}, each as a single create's body: an item is {"port": {...}} or the
    port's attributes alone (neutron's prepare_request_body); none is "Resources required"."""
    items = body["ports"]
    if not items:
        raise bad_request("Resources required")
    if not isinstance(items, list):
        raise bad_request("Body contains invalid data")
    return [item if isinstance(item, dict) and "port" in item else {"port": item} for item in items]


def create_ports(store: Store, caller: Caller, body: dict[str, Any],
                 *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Neutron's bulk create: every item read and checked as a single create is, in the order Neutron
    checks them (all bodies first, then each item's authorization), then all stored in one transaction —
    one refused item, and none is made. A generated MAC address that is taken is drawn again."""
    check_write(caller, "create_port")
    items = _bulk_items(body)
    read = [(read_body(item, "port", PORT, create=True), item) for item in items]
    at = now_utc(now)
    made = [_new_port(store, caller, values, item, at) for values, item in read]
    ports = [port for port, _network in made]
    generated = [not values["mac_address"] for values, _item in read]
    for _attempt in range(MAC_GENERATION_RETRIES):
        try:
            records.create_ports(store, ports, then=fleet_desired.then_ports([p.id for p in ports]))
        except PolicyGone as exc:
            raise policy_not_found(exc.policy_id) from None
        except NetworkGone as exc:
            raise network_not_found(exc.network_id) from None
        except MacAddressInUse as exc:
            taken = [i for i, p in enumerate(ports) if generated[i] and p.mac_address == exc.mac
                     and p.network_id == exc.network_id]
            if not taken:
                raise NeutronError(409, "MacAddressInUse", str(exc)) from None
            ports = [replace(p, mac_address=random_mac()) if i in taken else p for i, p in enumerate(ports)]
            continue
        return [port_view(p, network.qos_policy_id, admin=caller.is_admin)
                for p, (_port, network) in zip(ports, made)]
    raise NeutronError(503, "MacAddressGenerationFailure", "Unable to generate unique mac on network "
                       f"{made[0][1].id}.")


def update_port(store: Store, caller: Caller, port_id: str, body: Any,
                *, now: datetime | None = None) -> dict[str, Any]:
    port = _writable(store, caller, port_id, "update_port")
    values = read_body(body, "port", PORT, create=False)
    check_admin_attributes(caller, "port", "update_port", values, body, create=False)
    addresses = _check_addresses(caller, values)
    check_policy_change(store, caller, port.qos_policy_id, values.get("qos_policy_id", UNSET))
    updated = replace(port, **{_FIELDS[k]: v for k, v in values.items() if k in _FIELDS})
    if addresses is not None:
        updated = replace(updated, fixed_ips=addresses)
    if updated == port:
        return _view(store, caller, port)
    updated = replace(updated, revision_number=port.revision_number + 1, updated_at=now_utc(now))
    return _view(store, caller, _save(store, updated, port.revision_number))


def _retag(store: Store, port: StoredPort, tags: tuple[str, ...], at: datetime | None) -> None:
    _save(store, replace(port, tags=tags, revision_number=port.revision_number + 1, updated_at=now_utc(at)),
          port.revision_number)


# a port the caller sees is its project's (or it is an admin): it may change it if its role writes
TAGGABLE: Taggable[StoredPort] = Taggable("ports", "port", _get, lambda caller, port: True,
                                          lambda port: port.tags, _retag)


def delete_port(store: Store, caller: Caller, port_id: str) -> None:
    _writable(store, caller, port_id, "delete_port")
    if not records.delete_port(store, port_id, then=fleet_desired.then_ports([port_id])):  # its rows: tombstones
        raise port_not_found(port_id)
