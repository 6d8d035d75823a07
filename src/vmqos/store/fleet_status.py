"""What the agents register and report: hosts, each device's status and latest sample, events, quarantines.

A report is one transaction per host (its own writer lock, so a thousand hosts reporting each
second do not queue behind each other on PostgreSQL, nor behind the Neutron writers). Status rows
are replaced, not merged: the agent's last word on a device is the truth.

Events are history, not state: a report that brings events also prunes them, in its own
transaction, to the newest EVENTS_KEPT and to those received in the last EVENT_DAYS (a flooded fleet
must not grow the table without end). Both cuts are one range of ids below a bound found from the
primary key (ids grow with the time of receipt), so a prune reads only what it deletes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, Table, delete, func, insert, select, tuple_, update

from vmqos.core.errors import NotFound
from vmqos.store.fleet import Key, chunks
from vmqos.store.fleet_tables import (
    fleet_desired,
    fleet_events,
    fleet_hosts,
    fleet_port_status,
    fleet_port_usage,
    fleet_quarantines,
)
from vmqos.store.neutron_tables import neutron_ports
from vmqos.store.store import Store

_HOST = ("name", "registered_at", "last_seen", "agent_version", "netns", "inventory", "applied_revision")
_STATUS = ("host", "device", "revision", "status", "message", "reported_at", "sample", "sampled_at")
_EVENT = ("id", "host", "device", "at", "kind", "message", "instance", "direction", "detector")
_QUARANTINE = ("host", "device", "since", "reason", "qos")
EVENTS_KEPT = 10_000  # the newest events the server keeps, all hosts together
EVENT_DAYS = 7  # and none received longer ago than this


@dataclass(frozen=True)
class HostRecord:
    name: str
    registered_at: datetime
    last_seen: datetime
    agent_version: str
    netns: str | None
    inventory: str  # JSON
    applied_revision: int | None


@dataclass(frozen=True)
class HostSummary:
    """What the desired rows and the status rows say of one host."""

    desired_revision: int  # the highest revision among its rows, 0 without any
    live: int  # its live rows
    statuses: dict[str, int]  # status -> how many of its devices reported it


@dataclass(frozen=True)
class StatusRecord:
    host: str
    device: str
    revision: int | None
    status: str
    message: str
    reported_at: datetime
    sample: str | None  # JSON
    sampled_at: datetime | None


@dataclass(frozen=True)
class EventRecord:
    id: int
    host: str
    device: str
    at: datetime
    kind: str
    message: str
    instance: str | None
    direction: str | None
    detector: str | None


@dataclass(frozen=True)
class QuarantineRecord:
    host: str
    device: str
    since: datetime
    reason: str
    qos: str | None  # JSON


@dataclass(frozen=True)
class ReportRows:
    """One report, as rows: status rows to write, devices whose status is forgotten, samples (device,
    JSON, at), events, quarantines placed and devices whose quarantine was lifted."""

    applied_revision: int | None
    statuses: Sequence[StatusRecord] = ()
    forget: Sequence[str] = ()
    samples: Sequence[tuple[str, str, datetime]] = ()
    events: Sequence[dict[str, Any]] = ()
    quarantines: Sequence[QuarantineRecord] = ()
    lifted: Sequence[str] = ()
    usage: Sequence[tuple[str, str, datetime]] = ()  # (device, JSON, when the agent read it)


def _project_keys(project_id: str) -> Any:
    """The (host, device) of the desired rows of a project's Neutron ports, as a subquery."""
    d = fleet_desired.c
    return select(d.host, d.device).where(d.port_id.in_(select(neutron_ports.c.id)
                                                        .where(neutron_ports.c.project_id == project_id)))


# ------------------------------------------------------------------ hosts


def register(store: Store, host: HostRecord) -> None:
    """Record (or record again) a host as its agent describes it; its last applied revision is kept."""
    h = fleet_hosts.c
    with store._tx(f"registering host {host.name}", write=f"fleet-host:{host.name}") as conn:
        values = {c: getattr(host, c) for c in _HOST if c not in ("name", "applied_revision")}
        if not conn.execute(update(fleet_hosts).where(h.name == host.name).values(**values)).rowcount:
            conn.execute(insert(fleet_hosts).values(name=host.name, applied_revision=None, **values))


def hosts(store: Store, name: str | None = None) -> list[HostRecord]:
    h = fleet_hosts.c
    query = select(*(h[c] for c in _HOST)).order_by(h.name)
    if name is not None:
        query = query.where(h.name == name)
    with store._tx("reading the fleet's hosts") as conn:
        return [HostRecord(*row) for row in conn.execute(query)]


def summaries(store: Store, name: str | None = None) -> dict[str, HostSummary]:
    """Per host with desired rows or reported statuses: its revision, live rows and status counts."""
    d, s = fleet_desired.c, fleet_port_status.c
    rows_q = select(d.host, func.max(d.revision), func.count(d.policy)).group_by(d.host)
    status_q = select(s.host, s.status, func.count()).group_by(s.host, s.status)
    if name is not None:
        rows_q, status_q = rows_q.where(d.host == name), status_q.where(s.host == name)
    with store._tx("reading the fleet's hosts") as conn:
        revisions = {host: (int(top), int(live)) for host, top, live in conn.execute(rows_q)}
        statuses: dict[str, dict[str, int]] = {}
        for host, status, count in conn.execute(status_q):
            statuses.setdefault(host, {})[status] = int(count)
    return {host: HostSummary(*revisions.get(host, (0, 0)), statuses.get(host, {}))
            for host in set(revisions) | set(statuses)}


# ------------------------------------------------------------------ reports


def _write_statuses(conn: Connection, host: str, report: ReportRows, at: datetime) -> None:
    s = fleet_port_status.c
    gone = {r.device for r in report.statuses} | set(report.forget)
    kept = {}
    for batch in chunks(sorted(gone)):
        kept.update({row[0]: row[1:] for row in conn.execute(
            select(s.device, s.sample, s.sampled_at).where(s.host == host, s.device.in_(batch)))})
        conn.execute(delete(fleet_port_status).where(s.host == host, s.device.in_(batch)))
    rows = {r.device: {c: getattr(r, c) for c in _STATUS} for r in report.statuses}
    for device, row in rows.items():  # a status replaces the last one; the latest sample stays
        row["sample"], row["sampled_at"] = kept.get(device, (None, None))
    samples = {device: (sample, when) for device, sample, when in report.samples}
    for device, (sample, when) in samples.items():
        if device in rows:
            rows[device]["sample"], rows[device]["sampled_at"] = sample, when
    if rows:
        conn.execute(insert(fleet_port_status), list(rows.values()))
    for device, (sample, when) in samples.items():  # a sample of a device with no status yet: "unknown"
        if device not in rows and not conn.execute(update(fleet_port_status).where(
                s.host == host, s.device == device).values(sample=sample, sampled_at=when)).rowcount:
            conn.execute(insert(fleet_port_status).values(host=host, device=device, revision=None, status="unknown",
                                                          message="", reported_at=at, sample=sample,
                                                          sampled_at=when))


def _prune_events(conn: Connection, at: datetime) -> int:
    """Delete the events beyond the newest EVENTS_KEPT or received before `at` - EVENT_DAYS; how many.

    Both bounds come from the primary key: the highest id, and the first id (walking up from the
    oldest) received within the window; everything below the higher of the two goes."""
    e = fleet_events.c
    top = conn.execute(select(func.max(e.id))).scalar()
    if top is None:
        return 0
    first_recent = conn.execute(select(e.id).where(e.received_at >= at - timedelta(days=EVENT_DAYS))
                                .order_by(e.id).limit(1)).scalar()
    cut = max(int(top) - EVENTS_KEPT + 1, int(top) + 1 if first_recent is None else int(first_recent))
    return int(conn.execute(delete(fleet_events).where(e.id < cut)).rowcount or 0)


LIFT_REQUESTED = "lift_requested"  # the event kind of a lift asked from the dashboard


def save_report(store: Store, host: str, report: ReportRows, at: datetime) -> list[str]:
    """One report of a registered host (NotFound otherwise: the agent registers first); answered with the
    devices of the host whose quarantine someone asked to lift (`request_lift`) and is still in force."""
    h, q = fleet_hosts.c, fleet_quarantines.c
    with store._tx(f"recording a report of host {host}", write=f"fleet-host:{host}") as conn:
        values: dict[str, Any] = {"last_seen": at}
        if report.applied_revision is not None:
            values["applied_revision"] = report.applied_revision
        if not conn.execute(update(fleet_hosts).where(h.name == host).values(**values)).rowcount:
            raise NotFound(f"host {host} is not registered: PUT /v1/hosts/{host} first (an agent registers "
                           "again whenever a report answers 404)")
        _write_statuses(conn, host, report, at)
        for batch in chunks(sorted(report.forget)):  # a released device's usage goes with its status
            conn.execute(delete(fleet_port_usage).where(fleet_port_usage.c.host == host,
                                                        fleet_port_usage.c.device.in_(batch)))
        if report.events:
            conn.execute(insert(fleet_events), [{**e, "host": host, "received_at": at} for e in report.events])
            _prune_events(conn, at)
        lifted = {r.device for r in report.quarantines} | set(report.lifted)
        for batch in chunks(sorted(lifted)):
            conn.execute(delete(fleet_quarantines).where(q.host == host, q.device.in_(batch)))
        if report.quarantines:
            conn.execute(insert(fleet_quarantines), [{**{c: getattr(r, c) for c in _QUARANTINE},
                                                      "reported_at": at} for r in report.quarantines])
        _write_usage(conn, host, report.usage, at)
        return _lifts_asked(conn, host)


def _write_usage(conn: Connection, host: str, usage: Sequence[tuple[str, str, datetime]], at: datetime) -> None:
    """Each reported device's usage replaces its last (the last one sent for a device wins)."""
    rows = {device: {"host": host, "device": device, "usage": data, "at": when, "reported_at": at}
            for device, data, when in usage}
    u = fleet_port_usage.c
    for batch in chunks(sorted(rows)):
        conn.execute(delete(fleet_port_usage).where(u.host == host, u.device.in_(batch)))
    if rows:
        conn.execute(insert(fleet_port_usage), list(rows.values()))


def port_usage(store: Store, host: str, device: str) -> str | None:
    """The device's last reported usage (JSON), None when its agent reported none."""
    u = fleet_port_usage.c
    with store._tx("reading a port's usage") as conn:
        found: str | None = conn.execute(select(u.usage).where(u.host == host, u.device == device)).scalar()
    return found


def _lifts_asked(conn: Connection, host: str) -> list[str]:
    """The host's quarantines with a lift asked since they were placed (a quarantine placed again after
    the lift was asked is a new one: not lifted by the old request)."""
    q, e = fleet_quarantines.c, fleet_events.c
    asked = select(e.id).where(e.host == q.host, e.device == q.device, e.kind == LIFT_REQUESTED, e.at >= q.since)
    return list(conn.execute(select(q.device).where(q.host == host, asked.exists()).order_by(q.device)).scalars())


def request_lift(store: Store, host: str, device: str, message: str, at: datetime) -> bool:
    """Record that someone asked to lift the device's quarantine (an event the next report of the host is
    answered with); False when no quarantine is in force there."""
    q = fleet_quarantines.c
    with store._tx(f"asking to lift the quarantine of {device} on host {host}", write=f"fleet-host:{host}") as conn:
        if conn.execute(select(q.device).where(q.host == host, q.device == device)).first() is None:
            return False
        conn.execute(insert(fleet_events), [{"host": host, "device": device, "at": at, "kind": LIFT_REQUESTED,
                                             "message": message, "instance": None, "direction": None,
                                             "detector": None, "received_at": at}])
        return True


# ------------------------------------------------------------------ views


def _select(table: Table, columns: Sequence[str], host: str | None, device: str | None,
            project_id: str | None) -> Select[Any]:
    """The rows of a table keyed by (host, device) of one host, one device, or one project's Neutron ports."""
    c = table.c
    query = select(*(c[name] for name in columns))
    for column, value in (("host", host), ("device", device)):
        if value is not None:
            query = query.where(c[column] == value)
    if project_id is not None:
        query = query.where(tuple_(c.host, c.device).in_(_project_keys(project_id)))
    return query


def statuses(store: Store, *, host: str | None = None, device: str | None = None,
             project_id: str | None = None) -> dict[Key, StatusRecord]:
    with store._tx("reading the ports' statuses") as conn:
        found = [StatusRecord(*row) for row in conn.execute(_select(fleet_port_status, _STATUS, host, device,
                                                                    project_id))]
    return {(r.host, r.device): r for r in found}


def quarantines(store: Store, *, host: str | None = None, device: str | None = None,
                project_id: str | None = None) -> list[QuarantineRecord]:
    q = fleet_quarantines.c
    query = _select(fleet_quarantines, _QUARANTINE, host, device, project_id).order_by(q.host, q.device)
    with store._tx("reading the fleet's quarantines") as conn:
        return [QuarantineRecord(*row) for row in conn.execute(query)]


def events(store: Store, *, host: str | None = None, device: str | None = None, project_id: str | None = None,
           limit: int = 100, after: int | None = None) -> list[EventRecord]:
    """The newest `limit` events (newest first); with `after`, the oldest `limit` above that id (oldest first:
    what a follower reads next)."""
    query = _select(fleet_events, _EVENT, host, device, project_id)
    if after is not None:
        query = query.where(fleet_events.c.id > after).order_by(fleet_events.c.id).limit(limit)
    else:
        query = query.order_by(fleet_events.c.id.desc()).limit(limit)
    with store._tx("reading the fleet's events") as conn:
        return [EventRecord(*row) for row in conn.execute(query)]
