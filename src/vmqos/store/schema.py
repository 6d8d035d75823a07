"""The tables of the desired-state store (SQLAlchemy 2.0 declarative; SQLite now, PostgreSQL later).

Every row belongs to a *scope*: the network namespace that owns the ports ("" for the host's
own). Each object is a row of its own, not one blob per host, so that a control plane sharing
the database can query and change single objects. QoS values are JSON text of exactly the shape
the host file has for that object (`vmqos.core.formats.hostfile.to_data`), so there is one
serialisation to keep compatible, not two. Foreign keys keep references whole: a port cannot
name a policy, network or instance that its scope does not have.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKeyConstraint, Index, Integer, String, Table, Text, false
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite keeps no zone, so it stores naive UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


def _ref(column: str, table: str) -> ForeignKeyConstraint:
    """(scope, column) names a row of `table` in the same scope; NULL names nothing."""
    return ForeignKeyConstraint(["scope", column], [f"{table}.scope", f"{table}.name"])


class PolicyRow(Base):
    __tablename__ = "policies"

    scope: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String, primary_key=True)
    origin: Mapped[str] = mapped_column(String)  # "vmqos", "neutron", ...
    qos: Mapped[str] = mapped_column(Text)  # JSON: the host file's policy without `origin`


class FlavorRow(Base):
    __tablename__ = "flavors"

    scope: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String, primary_key=True)
    doc: Mapped[str] = mapped_column(Text)  # JSON: {extra_specs: ...} or canonical {cpu, disk, network, ...}


class NetworkRow(Base):
    __tablename__ = "networks"
    __table_args__ = (_ref("policy", "policies"),)

    scope: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String, primary_key=True)
    policy: Mapped[str | None] = mapped_column(String)


class InstanceRow(Base):
    __tablename__ = "instances"
    __table_args__ = (_ref("flavor", "flavors"),)

    scope: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String, primary_key=True)
    flavor: Mapped[str | None] = mapped_column(String)
    cpu: Mapped[str | None] = mapped_column(Text)  # JSON, NULL: the flavor's
    disks: Mapped[str] = mapped_column(Text)  # JSON: {vda: {...}}


class PortRow(Base):
    __tablename__ = "ports"
    __table_args__ = (
        ForeignKeyConstraint(["scope", "instance"], ["instances.scope", "instances.name"]),
        _ref("network", "networks"),
        _ref("policy", "policies"),
        Index("ix_ports_instance", "scope", "instance", "position"),
    )

    scope: Mapped[str] = mapped_column(String, primary_key=True)
    device: Mapped[str] = mapped_column(String, primary_key=True)  # unique in a namespace, as the kernel's
    instance: Mapped[str] = mapped_column(String)
    network: Mapped[str | None] = mapped_column(String)
    policy: Mapped[str | None] = mapped_column(String)
    limits: Mapped[str | None] = mapped_column(Text)  # JSON of the port's own limits, NULL: none
    egress_mode: Mapped[str] = mapped_column(String)
    window_clamp: Mapped[bool] = mapped_column(Boolean, server_default=false())  # false: rows before 0015
    mtu: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)  # the port's index in its instance


class PortAddressRow(Base):
    """The instance's IPs on a port (issue 16), a table of its own so that the first wave's `ports` keeps
    its shape: a port without addresses has no row."""

    __tablename__ = "port_addresses"
    __table_args__ = (ForeignKeyConstraint(["scope", "device"], ["ports.scope", "ports.device"]),)

    scope: Mapped[str] = mapped_column(String, primary_key=True)
    device: Mapped[str] = mapped_column(String, primary_key=True)
    addresses: Mapped[str] = mapped_column(Text)  # JSON list of canonical IPv4/IPv6 texts


class UplinkRow(Base):
    """The scope's shared link and its capacity (issue 16): at most one per scope."""

    __tablename__ = "uplinks"

    scope: Mapped[str] = mapped_column(String, primary_key=True)
    device: Mapped[str] = mapped_column(String)
    capacity_bps: Mapped[int] = mapped_column(BigInteger)
    oversubscribe: Mapped[bool] = mapped_column(Boolean)


class AppliedRow(Base):
    """What the reconciler last applied to a port; no foreign key: it outlives the desired port."""

    __tablename__ = "applied"

    scope: Mapped[str] = mapped_column(String, primary_key=True)
    device: Mapped[str] = mapped_column(String, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(Text)
    applied_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RevisionRow(Base):
    """One row per change of a scope's desired state; ids only grow (never reused on SQLite)."""

    __tablename__ = "revisions"
    __table_args__ = (Index("ix_revisions_scope", "scope", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String)
    summary: Mapped[str] = mapped_column(Text)


class VolumeTypeRow(Base):
    """A Cinder-style volume type with its QoS spec; its own object, outside the host's desired state."""

    __tablename__ = "volume_types"

    scope: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String, primary_key=True)
    consumer: Mapped[str] = mapped_column(String)
    specs: Mapped[str] = mapped_column(Text)  # JSON object of the specs as given (strings)
    qos_name: Mapped[str | None] = mapped_column(String)


class VolumeRow(Base):
    """A volume: its type, its size and where it is attached (instance and device; NULL: detached).

    The instance is a name, not a foreign key: `vmqos apply` replaces the host's desired state
    as a whole, and a host file knows nothing of volumes, which must survive it.
    """

    __tablename__ = "volumes"
    __table_args__ = (ForeignKeyConstraint(["scope", "type"], ["volume_types.scope", "volume_types.name"]),)

    scope: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String, primary_key=True)
    type: Mapped[str | None] = mapped_column(String)
    size_gb: Mapped[int] = mapped_column(Integer)
    instance: Mapped[str | None] = mapped_column(String)
    device: Mapped[str | None] = mapped_column(String)


metadata = Base.metadata


def table_of(row: type[Base]) -> Table:
    """A mapped class's table, as a Table: SQLAlchemy types `__table__` as the wider FromClause."""
    return cast(Table, row.__table__)


policies = table_of(PolicyRow)
flavors = table_of(FlavorRow)
networks = table_of(NetworkRow)
instances = table_of(InstanceRow)
ports = table_of(PortRow)
uplinks = table_of(UplinkRow)
port_addresses = table_of(PortAddressRow)
applied = table_of(AppliedRow)
revisions = table_of(RevisionRow)
volume_types = table_of(VolumeTypeRow)
volumes = table_of(VolumeRow)

# Parents first: the order to insert in, reversed the order to delete in.
STATE_TABLES = (policies, flavors, networks, instances, uplinks, ports, port_addresses)

