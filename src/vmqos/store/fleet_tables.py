"""The fleet's tables: every host's desired rows, revisioned, and what the agents report back.

- `fleet_desired`: one row per (host, device): the policy the device must hold (JSON of the host
  file's shape, `core.formats.hostfile.policy_to_data`), or NULL: a tombstone, the device must be
  released. `revision` is the global counter's value when the row last changed (64 bits, as every
  revision here: one a millisecond would last longer than the hardware), so an agent asks
  "what changed on my host since R" with one indexed range read of (host, revision); the index on
  `revision` alone answers the long poll's ticker ("which hosts changed since R").
- `fleet_counters`: `revision`, the last revision given out, and `floor`: tombstones at or below it
  were compacted away, so a `since` below it cannot be answered (410).
- `fleet_devices`: the device every bound Neutron port names on its host, so that the ports that
  compete for one device (the first one made keeps it) are found with one indexed read instead of
  every port of the host.
- `fleet_instances`: the flavor and devices of an instance the server was told of (native API).
- `fleet_hosts`, `fleet_port_status`, `fleet_events`, `fleet_quarantines`, `fleet_port_usage`: what
  the agents register and report.

They are the server's derived state: `services.fleet_desired.refresh` rebuilds `fleet_desired` and
`fleet_devices` from the Neutron tables at every start, and every Neutron write refreshes the
rows of the ports it concerns.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vmqos.store.schema import Base, UtcDateTime, table_of

REVISION, FLOOR = "revision", "floor"  # the rows of fleet_counters


class FleetDesiredRow(Base):
    __tablename__ = "fleet_desired"
    __table_args__ = (Index("ix_fleet_desired_host_revision", "host", "revision"),)

    host: Mapped[str] = mapped_column(String, primary_key=True)
    device: Mapped[str] = mapped_column(String, primary_key=True)
    port_id: Mapped[str | None] = mapped_column(String, index=True)  # the Neutron port; NULL for a native row
    source: Mapped[str] = mapped_column(String)  # "neutron" or "native"
    policy_name: Mapped[str | None] = mapped_column(String)  # the policy's name in the agent's scope
    policy: Mapped[str | None] = mapped_column(Text)  # JSON; NULL: a tombstone
    revision: Mapped[int] = mapped_column(BigInteger, index=True)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # the vmqos policy (/v1/policies) a native row names; NULL for inline limits and Neutron rows. Its
    # index finds the rows a policy's change re-derives and the ports that keep it from being deleted.
    policy_id: Mapped[str | None] = mapped_column(String, index=True)
    addresses: Mapped[str | None] = mapped_column(Text)  # JSON list of the instance's IPs (the uplink's classes)


class FleetCounterRow(Base):
    __tablename__ = "fleet_counters"

    name: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class FleetDeviceRow(Base):
    """The device a bound Neutron port names on its host (whether or not it holds a limit)."""

    __tablename__ = "fleet_devices"
    __table_args__ = (Index("ix_fleet_devices_host_device", "host", "device"),)

    port_id: Mapped[str] = mapped_column(String, primary_key=True)
    host: Mapped[str] = mapped_column(String)
    device: Mapped[str] = mapped_column(String)


class FleetHostRow(Base):
    __tablename__ = "fleet_hosts"

    name: Mapped[str] = mapped_column(String, primary_key=True)
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    agent_version: Mapped[str] = mapped_column(String)
    netns: Mapped[str | None] = mapped_column(String)
    inventory: Mapped[str] = mapped_column(Text)  # JSON, as the agent registered it
    applied_revision: Mapped[int | None] = mapped_column(BigInteger)  # NULL until its first report


class FleetPortStatusRow(Base):
    """What the agent last said of one device: the revision applied, its status, its latest sample."""

    __tablename__ = "fleet_port_status"

    host: Mapped[str] = mapped_column(String, primary_key=True)
    device: Mapped[str] = mapped_column(String, primary_key=True)
    revision: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String)  # in_sync, drift, error, pending; unknown: samples only
    message: Mapped[str] = mapped_column(Text)
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sample: Mapped[str | None] = mapped_column(Text)  # JSON of the latest sample
    sampled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class FleetEventRow(Base):
    __tablename__ = "fleet_events"
    __table_args__ = (Index("ix_fleet_events_host_device", "host", "device", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String)
    device: Mapped[str] = mapped_column(String)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String)
    message: Mapped[str] = mapped_column(Text)
    instance: Mapped[str | None] = mapped_column(String)
    direction: Mapped[str | None] = mapped_column(String)
    detector: Mapped[str | None] = mapped_column(String)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class FleetQuarantineRow(Base):
    """A quarantine in force on a device, as its agent placed it; lifting it deletes the row."""

    __tablename__ = "fleet_quarantines"

    host: Mapped[str] = mapped_column(String, primary_key=True)
    device: Mapped[str] = mapped_column(String, primary_key=True)
    since: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(Text)
    qos: Mapped[str | None] = mapped_column(Text)  # JSON, the host file's shape of the quarantine's NetworkQos
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime)


class FleetPortUsageRow(Base):
    """A device's per-IP usage of the current hour and day as its agent last reported it (JSON of
    services.fleet_wire.PortUsage): replaced by the next, never merged (the agent sends the whole window)."""

    __tablename__ = "fleet_port_usage"

    host: Mapped[str] = mapped_column(String, primary_key=True)
    device: Mapped[str] = mapped_column(String, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)  # when the agent read it
    usage: Mapped[str] = mapped_column(Text)
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime)


class FleetInstanceRow(Base):
    """An instance the server was told of (PUT /v1/hosts/{host}/instances/{id}): the flavor it was booted
    with and the devices of its ports on the host, so that a port's effective QoS knows its flavor
    without the agent's inventory (the server has no Nova servers API)."""

    __tablename__ = "fleet_instances"

    host: Mapped[str] = mapped_column(String, primary_key=True)
    instance_id: Mapped[str] = mapped_column(String, primary_key=True)
    flavor: Mapped[str] = mapped_column(String)  # the flavor's name, as Nova's metadata names it
    devices: Mapped[str] = mapped_column(Text)  # JSON list of the devices of its ports on the host
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


fleet_desired = table_of(FleetDesiredRow)
fleet_instances = table_of(FleetInstanceRow)
fleet_counters = table_of(FleetCounterRow)
fleet_devices = table_of(FleetDeviceRow)
fleet_hosts = table_of(FleetHostRow)
fleet_port_status = table_of(FleetPortStatusRow)
fleet_events = table_of(FleetEventRow)
fleet_quarantines = table_of(FleetQuarantineRow)
fleet_port_usage = table_of(FleetPortUsageRow)
