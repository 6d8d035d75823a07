"""The API's Neutron networks and ports, one row each, and the all-in-one enforcer's bookkeeping.

Each change is one transaction that also counts itself (`neutron_tables.bump`), so a watcher that
reads the counter and then the state never misses one. What must hold between objects is checked
in the same transaction as the write: the QoS policy a port or network names exists, a MAC address
is unique in its network, a network with ports is not deleted. Who may do what is the services'.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, delete, insert, select, update

from vmqos.core.errors import ConflictError, NotFound
from vmqos.store.neutron_tables import (
    COUNTER,
    WRITER,
    Then,
    bump,
    neutron_changes,
    neutron_enforced,
    neutron_networks,
    neutron_ports,
)
from vmqos.store.qos import qos_policies
from vmqos.store.store import Store


class PolicyGone(NotFound):
    """The QoS policy to attach was deleted meanwhile (Neutron's QosPolicyNotFound)."""

    def __init__(self, policy_id: str) -> None:
        self.policy_id = policy_id
        super().__init__(f"QoS policy {policy_id} could not be found.")


class NetworkGone(NotFound):
    """The port's network was deleted meanwhile (Neutron's NetworkNotFound)."""

    def __init__(self, network_id: str) -> None:
        self.network_id = network_id
        super().__init__(f"Network {network_id} could not be found.")


class NetworkInUse(ConflictError):
    """Neutron's NetworkInUse: a network with ports is not deleted."""

    def __init__(self, network_id: str) -> None:
        self.network_id = network_id
        super().__init__(f"Unable to complete operation on network {network_id}. There are one or more ports "
                         "still in use on the network.")


class MacAddressInUse(ConflictError):
    """Neutron's MacAddressInUse: a MAC address is unique in its network."""

    def __init__(self, network_id: str, mac: str) -> None:
        self.network_id, self.mac = network_id, mac
        super().__init__(f"Unable to complete operation for network {network_id}. The mac address {mac} is in use.")


@dataclass(frozen=True)
class StoredNetwork:
    id: str
    project_id: str
    name: str
    description: str
    admin_state_up: bool
    shared: bool
    mtu: int
    qos_policy_id: str | None
    revision_number: int
    created_at: datetime
    updated_at: datetime
    tags: tuple[str, ...] = ()  # standard-attr-tag


@dataclass(frozen=True)
class StoredPort:
    id: str
    project_id: str
    network_id: str
    name: str
    description: str
    admin_state_up: bool
    mac_address: str
    device_id: str
    device_owner: str
    host_id: str  # binding:host_id, "" when unbound
    vnic_type: str
    qos_policy_id: str | None
    revision_number: int
    created_at: datetime
    updated_at: datetime
    profile: dict[str, Any] = field(default_factory=dict)  # binding:profile
    tags: tuple[str, ...] = ()  # standard-attr-tag
    fixed_ips: tuple[str, ...] = ()  # the ip_address of each of Neutron's fixed_ips (the instance's addresses)


_NETWORK_COLUMNS = tuple(StoredNetwork.__dataclass_fields__)
_PORT_COLUMNS = tuple(StoredPort.__dataclass_fields__)


def read_networks(conn: Connection, *where: ColumnElement[bool]) -> list[StoredNetwork]:
    """The networks `where` selects, in creation order, inside the caller's transaction."""
    query = select(*(neutron_networks.c[c] for c in _NETWORK_COLUMNS)).where(*where)
    found = []
    for row in conn.execute(query.order_by(neutron_networks.c.created_at, neutron_networks.c.id)):
        values = dict(zip(_NETWORK_COLUMNS, row))
        values["tags"] = tuple(json.loads(values["tags"]))
        found.append(StoredNetwork(**values))
    return found


def read_ports(conn: Connection, *where: ColumnElement[bool]) -> list[StoredPort]:
    """The ports `where` selects, in creation order, inside the caller's transaction."""
    query = select(*(neutron_ports.c[c] for c in _PORT_COLUMNS)).where(*where)
    found = []
    for row in conn.execute(query.order_by(neutron_ports.c.created_at, neutron_ports.c.id)):
        values = dict(zip(_PORT_COLUMNS, row))
        values["profile"] = json.loads(values["profile"])
        values["tags"] = tuple(json.loads(values["tags"]))
        values["fixed_ips"] = tuple(json.loads(values["fixed_ips"] or "[]"))
        found.append(StoredPort(**values))
    return found


def list_networks(store: Store, network_id: str | None = None) -> list[StoredNetwork]:
    """Every network (or the one with `network_id`), in creation order."""
    where = () if network_id is None else (neutron_networks.c.id == network_id,)
    with store._tx("reading networks") as conn:
        return read_networks(conn, *where)


def list_ports(store: Store, port_id: str | None = None, *, host_id: str | None = None) -> list[StoredPort]:
    """Every port (or the one with `port_id`, or those bound to `host_id`), in creation order."""
    p = neutron_ports.c
    where = [clause for value, clause in ((port_id, p.id == port_id), (host_id, p.host_id == host_id))
             if value is not None]
    with store._tx("reading ports") as conn:
        return read_ports(conn, *where)


def _check_policy(conn: Connection, policy_id: str | None) -> None:
    if policy_id is not None and conn.execute(select(qos_policies.c.id).where(qos_policies.c.id == policy_id)).first() \
            is None:
        raise PolicyGone(policy_id)


def _write(conn: Connection, table: Table, row: dict[str, Any], replaces: int | None, what: str) -> None:
    """Insert `row`, or replace the one at revision `replaces` (a ConflictError when it moved)."""
    if replaces is None:
        conn.execute(insert(table).values(**row))
        return
    c = table.c
    if not conn.execute(update(table).where(c.id == row["id"], c.revision_number == replaces).values(**row)).rowcount:
        raise ConflictError(f"{what} {row['id']} was changed or deleted by another request meanwhile; read it "
                            "again and retry")


def save_network(store: Store, network: StoredNetwork, *, replaces: int | None = None,
                 then: Then | None = None) -> None:
    """Create the network (`replaces` None) or replace the one at revision `replaces`; `then` in the same
    transaction (what the change implies, e.g. the fleet's rows of its ports)."""
    with store._tx(f"saving network {network.id}", write=WRITER) as conn:
        _check_policy(conn, network.qos_policy_id)
        _write(conn, neutron_networks, asdict(network) | {"tags": json.dumps(list(network.tags))}, replaces,
               "network")
        bump(conn)
        if then is not None:
            then(conn)


def delete_network(store: Store, network_id: str) -> bool:
    """False when it does not exist; NetworkInUse while a port is on it."""
    with store._tx(f"deleting network {network_id}", write=WRITER) as conn:
        if conn.execute(select(neutron_ports.c.id).where(neutron_ports.c.network_id == network_id)).first():
            raise NetworkInUse(network_id)
        gone = bool(conn.execute(delete(neutron_networks).where(neutron_networks.c.id == network_id)).rowcount)
        if gone:
            bump(conn)
        return gone


def save_port(store: Store, port: StoredPort, *, replaces: int | None = None, then: Then | None = None) -> None:
    """Create the port (`replaces` None) or replace the one at revision `replaces`; `then` in the same
    transaction."""
    with store._tx(f"saving port {port.id}", write=WRITER) as conn:
        _write_port(conn, port, replaces)
        bump(conn)
        if then is not None:
            then(conn)


def create_ports(store: Store, ports: Sequence[StoredPort], *, then: Then | None = None) -> None:
    """Create every port or none (Neutron's bulk create, which ML2 makes in one transaction); `then` in
    the same transaction. A MAC address is checked against the ports written before it in the batch too."""
    with store._tx(f"creating {len(ports)} ports", write=WRITER) as conn:
        for port in ports:
            _write_port(conn, port, None)
        bump(conn)
        if then is not None:
            then(conn)


def _write_port(conn: Connection, port: StoredPort, replaces: int | None) -> None:
    p = neutron_ports.c
    row = asdict(port) | {"profile": json.dumps(port.profile, sort_keys=True), "tags": json.dumps(list(port.tags)),
                          "fixed_ips": json.dumps(list(port.fixed_ips)) if port.fixed_ips else None}
    if conn.execute(select(neutron_networks.c.id).where(neutron_networks.c.id == port.network_id)).first() is None:
        raise NetworkGone(port.network_id)
    _check_policy(conn, port.qos_policy_id)
    if conn.execute(select(p.id).where(p.network_id == port.network_id, p.mac_address == port.mac_address,
                                       p.id != port.id)).first():
        raise MacAddressInUse(port.network_id, port.mac_address)
    _write(conn, neutron_ports, row, replaces, "port")


def delete_port(store: Store, port_id: str, *, then: Then | None = None) -> bool:
    """False when it does not exist; `then` in the same transaction when it did."""
    with store._tx(f"deleting port {port_id}", write=WRITER) as conn:
        gone = bool(conn.execute(delete(neutron_ports).where(neutron_ports.c.id == port_id)).rowcount)
        if gone:
            bump(conn)
            if then is not None:
                then(conn)
        return gone


def changes(store: Store) -> int:
    """How many Neutron changes were made so far (0 before the first): one indexed row, cheap to poll."""
    with store._tx("reading the Neutron change counter") as conn:
        found = conn.execute(select(neutron_changes.c.counter).where(neutron_changes.c.name == COUNTER)).scalar()
    return int(found or 0)


# ------------------------------------------------------------------ the enforcer's marks


def enforced(store: Store, scope: str) -> dict[str, str]:
    """Device -> port id, for the devices the enforcer placed in `scope`'s desired state."""
    e = neutron_enforced.c
    with store._tx(f"reading the enforced ports of scope {scope!r}") as conn:
        return dict(conn.execute(select(e.device, e.port_id).where(e.scope == scope)).tuples().all())


def mark_enforced(store: Store, scope: str, device: str, port_id: str) -> None:
    e = neutron_enforced.c
    with store._tx(f"marking {device} as enforced in scope {scope!r}", write=WRITER) as conn:
        conn.execute(delete(neutron_enforced).where(e.scope == scope, e.device == device))
        conn.execute(insert(neutron_enforced).values(scope=scope, device=device, port_id=port_id))


def unmark_enforced(store: Store, scope: str, device: str) -> None:
    e = neutron_enforced.c
    with store._tx(f"forgetting {device} in scope {scope!r}", write=WRITER) as conn:
        conn.execute(delete(neutron_enforced).where(e.scope == scope, e.device == device))
