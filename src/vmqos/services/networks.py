"""Neutron networks as a project's callers see and change them, with the QoS policy they carry.

The use cases behind the API server's `/v2.0/networks`. A network's `qos_policy_id` applies to
its ports that have none of their own (and are not network devices: `core.desired.neutron_ports`);
that is all a network means to vmqos, which plugs nothing: `subnets` stays empty, `mtu` says
1500, `status` ACTIVE. Subnets and security groups are answered as a Neutron without any: empty
lists, and "not found" for an id, which is what the openstack CLI asks when it resolves a name.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

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
from vmqos.services.neutron_attributes import NETWORK, NETWORK_LISTING, NETWORK_MTU, UNSET, absent_as_none
from vmqos.services.neutron_input import NeutronError, read_body
from vmqos.services.neutron_listing import Page, read_query, select
from vmqos.services.neutron_tags import Taggable
from vmqos.store import Store
from vmqos.store import neutron_ports as records
from vmqos.store.neutron_ports import NetworkInUse, PolicyGone, StoredNetwork
from vmqos.store.neutron_tables import Then


def network_view(network: StoredNetwork) -> dict[str, Any]:
    return {"id": network.id, "name": network.name, "tenant_id": network.project_id,
            "project_id": network.project_id, "admin_state_up": network.admin_state_up, "status": "ACTIVE",
            "shared": network.shared, "subnets": [], "mtu": network.mtu, "qos_policy_id": network.qos_policy_id,
            "description": network.description, "tags": list(network.tags),
            "revision_number": network.revision_number, "created_at": time_text(network.created_at),
            "updated_at": time_text(network.updated_at)}


def visible(caller: Caller, network: StoredNetwork) -> bool:
    return caller.is_admin or network.shared or owns(caller, network.project_id)


def network_not_found(network_id: str) -> NeutronError:
    return NeutronError(404, "NetworkNotFound", f"Network {network_id} could not be found.")


def get_network(store: Store, caller: Caller, network_id: str) -> StoredNetwork:
    """The network if the caller sees it; Neutron's NetworkNotFound otherwise."""
    found = records.list_networks(store, network_id)
    if not found or not visible(caller, found[0]):
        raise network_not_found(network_id)
    return found[0]


def _may_change(caller: Caller, network: StoredNetwork) -> bool:
    """Beyond the role's right to write: an admin, or the network's own project."""
    return caller.is_admin or owns(caller, network.project_id)


def _writable(store: Store, caller: Caller, network_id: str, action: str) -> StoredNetwork:
    network = get_network(store, caller, network_id)
    if not caller.can_write or not _may_change(caller, network):
        raise forbidden(action)
    return network


def _save(store: Store, network: StoredNetwork, replaces: int | None, then: Then | None = None) -> StoredNetwork:
    try:
        records.save_network(store, network, replaces=replaces, then=then)
    except PolicyGone as exc:
        raise policy_not_found(exc.policy_id) from None
    return network


def list_networks(store: Store, caller: Caller, params: list[tuple[str, str]]) -> Page:
    """The networks the caller sees that the query's filters match, sorted and paged as Neutron does."""
    query = read_query(params, NETWORK_LISTING)
    return select([network_view(n) for n in records.list_networks(store) if visible(caller, n)], query)


def show_network(store: Store, caller: Caller, network_id: str) -> dict[str, Any]:
    return network_view(get_network(store, caller, network_id))


def create_network(store: Store, caller: Caller, body: Any, *, now: datetime | None = None) -> dict[str, Any]:
    check_write(caller, "create_network")
    values = read_body(body, "network", NETWORK, create=True)
    check_admin_attributes(caller, "network", "create_network", values, body, create=True)
    project = project_for(caller, values)
    check_policy_change(store, caller, None, values["qos_policy_id"])
    values = absent_as_none(values)
    at = now_utc(now)
    network = StoredNetwork(str(uuid.uuid4()), project, values["name"], values["description"],
                            values["admin_state_up"], values["shared"], NETWORK_MTU, values["qos_policy_id"], 1,
                            at, at)
    return network_view(_save(store, network, None))


def update_network(store: Store, caller: Caller, network_id: str, body: Any,
                   *, now: datetime | None = None) -> dict[str, Any]:
    network = _writable(store, caller, network_id, "update_network")
    values = read_body(body, "network", NETWORK, create=False)
    check_admin_attributes(caller, "network", "update_network", values, body, create=False)
    check_policy_change(store, caller, network.qos_policy_id, values.get("qos_policy_id", UNSET))
    changes = {k: v for k, v in values.items()
               if k in ("name", "description", "admin_state_up", "shared", "qos_policy_id")}
    updated = replace(network, **changes)
    if updated == network:
        return network_view(network)
    updated = replace(updated, revision_number=network.revision_number + 1, updated_at=now_utc(now))
    moved = updated.qos_policy_id != network.qos_policy_id  # its ports without a policy of their own follow it
    return network_view(_save(store, updated, network.revision_number,
                              then=fleet_desired.then_network(network.id) if moved else None))


def _retag(store: Store, network: StoredNetwork, tags: tuple[str, ...], at: datetime | None) -> None:
    _save(store, replace(network, tags=tags, revision_number=network.revision_number + 1, updated_at=now_utc(at)),
          network.revision_number)


TAGGABLE: Taggable[StoredNetwork] = Taggable("networks", "network", get_network, _may_change,
                                              lambda network: network.tags, _retag)


def delete_network(store: Store, caller: Caller, network_id: str) -> None:
    _writable(store, caller, network_id, "delete_network")
    try:
        deleted = records.delete_network(store, network_id)
    except NetworkInUse as exc:
        raise NeutronError(409, "NetworkInUse", str(exc)) from None
    if not deleted:
        raise network_not_found(network_id)


# ------------------------------------------------------------------ what the CLI asks while resolving names


def list_subnets(caller: Caller) -> list[dict[str, Any]]:
    """No subnets here: vmqos allocates no addresses."""
    return []


def show_subnet(caller: Caller, subnet_id: str) -> dict[str, Any]:
    raise NeutronError(404, "SubnetNotFound", f"Subnet {subnet_id} could not be found.")


def list_security_groups(caller: Caller) -> list[dict[str, Any]]:
    """No security groups here: vmqos filters no traffic."""
    return []


def show_security_group(caller: Caller, group_id: str) -> dict[str, Any]:
    raise NeutronError(404, "SecurityGroupNotFound", f"Security group {group_id} does not exist")

