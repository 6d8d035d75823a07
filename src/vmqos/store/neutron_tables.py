"""The tables of the API's Neutron networks and ports, the change counter, and the enforcer's marks.

Four tables, on the same metadata as the rest (the Store creates what is missing; the Alembic
migration names them): `neutron_networks`, `neutron_ports`, `neutron_changes` (one counter the
all-in-one enforcer polls) and `neutron_enforced` (the devices the enforcer placed in a scope's
desired state, so that it removes only its own). They are not the desired state's `networks` and
`ports`: those belong to a scope that `vmqos apply` replaces as a whole; these are Neutron's
objects, changed one at a time by a project through the API.

This module imports no other table module: `store.qos` counts its changes here and asks whether a
policy is still attached (`policy_user`) inside its own transactions.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Boolean, Connection, ForeignKey, Integer, String, Text, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from vmqos.store.schema import Base, UtcDateTime, table_of
from vmqos.store.store import Store

WRITER = "qos"  # the writer lock of every Neutron change: one with the QoS policies', so that
# attaching a policy and deleting it take turns on PostgreSQL too (SQLite serializes writers anyway)
COUNTER = "neutron"  # the counter's row
Then = Callable[[Connection], None]  # what a write implies, run in its transaction (the fleet's desired rows)


class NeutronNetworkRow(Base):
    __tablename__ = "neutron_networks"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    project_id: Mapped[str] = mapped_column(String, index=True)
    name: Mapped[str] = mapped_column(String)
    description: Mapped[str] = mapped_column(String)
    admin_state_up: Mapped[bool] = mapped_column(Boolean)
    shared: Mapped[bool] = mapped_column(Boolean)
    mtu: Mapped[int] = mapped_column(Integer)
    qos_policy_id: Mapped[str | None] = mapped_column(String, index=True)
    revision_number: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    tags: Mapped[str] = mapped_column(Text)  # standard-attr-tag: a JSON list of strings, as a QoS policy's


class NeutronPortRow(Base):
    __tablename__ = "neutron_ports"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    project_id: Mapped[str] = mapped_column(String, index=True)
    network_id: Mapped[str] = mapped_column(String, ForeignKey("neutron_networks.id"), index=True)
    name: Mapped[str] = mapped_column(String)
    description: Mapped[str] = mapped_column(String)
    admin_state_up: Mapped[bool] = mapped_column(Boolean)
    mac_address: Mapped[str] = mapped_column(String)
    device_id: Mapped[str] = mapped_column(String)
    device_owner: Mapped[str] = mapped_column(String)
    host_id: Mapped[str] = mapped_column(String, index=True)  # binding:host_id, "" when unbound
    profile: Mapped[str] = mapped_column(Text)  # binding:profile, a JSON object
    vnic_type: Mapped[str] = mapped_column(String)
    qos_policy_id: Mapped[str | None] = mapped_column(String, index=True)
    revision_number: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    tags: Mapped[str] = mapped_column(Text)  # standard-attr-tag: a JSON list of strings
    fixed_ips: Mapped[str | None] = mapped_column(Text)  # JSON list of the port's IP addresses; NULL: none


class NeutronChangeRow(Base):
    """A counter raised by every change of a network, a port, a QoS policy or a rule: the enforcer
    reads it a few times a second (one indexed row) and reads the whole state only when it moved."""

    __tablename__ = "neutron_changes"

    name: Mapped[str] = mapped_column(String, primary_key=True)
    counter: Mapped[int] = mapped_column(Integer)


class NeutronEnforcedRow(Base):
    """A device the all-in-one enforcer placed in a scope's desired state, for a port; written before
    the kernel is touched, so that a crash never leaves one it would not recognise as its own."""

    __tablename__ = "neutron_enforced"

    scope: Mapped[str] = mapped_column(String, primary_key=True)
    device: Mapped[str] = mapped_column(String, primary_key=True)
    port_id: Mapped[str] = mapped_column(String)


neutron_networks = table_of(NeutronNetworkRow)
neutron_ports = table_of(NeutronPortRow)
neutron_changes = table_of(NeutronChangeRow)
neutron_enforced = table_of(NeutronEnforcedRow)


def bump(conn: Connection) -> None:
    """Count one change, inside the caller's write transaction (which holds the writer lock, so two
    first bumps never both insert)."""
    c = neutron_changes.c
    if not conn.execute(update(neutron_changes).where(c.name == COUNTER).values(counter=c.counter + 1)).rowcount:
        conn.execute(insert(neutron_changes).values(name=COUNTER, counter=1))


def policy_user(conn: Connection, policy_id: str) -> tuple[str, str] | None:
    """("port" | "network", its id) of one object the QoS policy is attached to, or None."""
    for kind, table in (("port", neutron_ports), ("network", neutron_networks)):
        found = conn.execute(select(table.c.id).where(table.c.qos_policy_id == policy_id)
                             .order_by(table.c.id).limit(1)).scalar()
        if found is not None:
            return kind, str(found)
    return None


def policy_users(store: Store, policy_id: str) -> list[tuple[str, str, str]]:
    """("port" | "network", its id, its project) of every object the QoS policy is attached to: who
    would lose the policy if the sharing that lets them use it went away."""
    found: list[tuple[str, str, str]] = []
    with store._tx(f"reading the users of QoS policy {policy_id}") as conn:
        for kind, table in (("port", neutron_ports), ("network", neutron_networks)):
            rows = conn.execute(select(table.c.id, table.c.project_id).where(table.c.qos_policy_id == policy_id)
                                .order_by(table.c.id))
            found.extend((kind, str(object_id), str(project)) for object_id, project in rows)
    return found
