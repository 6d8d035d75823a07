"""The fleet's hosts as their agents describe them, and each device's view: desired joined with reported.

An agent registers its host (`register`), then reports every second (`report`): the revision it
applied, each device's status, samples, events and quarantines. A host's status is derived:

- unreachable: nothing heard from its agent for `UNREACHABLE_S` (it reports every second);
- unknown: it never reported (or never registered: a host that only has desired rows);
- error / drift: a device reported so (drift also while a device is `pending`, or while the agent
  has applied less than the host's newest row: the kernel is behind what is wanted);
- in_sync otherwise.

A device that reports `in_sync` with a tombstone (or with no row at all) is released: its status is
forgotten, so the views show what is wanted and what went wrong, not every device ever limited.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from vmqos.core.errors import NotFound
from vmqos.core.formats.hostfile import policy_from_data
from vmqos.core.model.host import check_addresses
from vmqos.services import fleet_access as access
from vmqos.services import fleet_desired, policy_ports
from vmqos.services.fleet_desired import NATIVE, Expect, desired
from vmqos.services.fleet_wire import (
    Event,
    Host,
    Inventory,
    NativePort,
    Port,
    PortUsage,
    Quarantine,
    Registration,
    Report,
    ReportAnswer,
    Sample,
    UsageAnswer,
    check_host,
)
from vmqos.services.identity import Caller
from vmqos.store import Store
from vmqos.store import fleet as desired_records
from vmqos.store import fleet_status as records
from vmqos.store import fleet_uplinks as uplink_records
from vmqos.store.fleet import DesiredRow, Key
from vmqos.store.fleet_status import HostRecord, HostSummary, QuarantineRecord, ReportRows, StatusRecord

UNREACHABLE_S = 30.0
EVENTS_LIMIT = 1000


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _status(record: HostRecord | None, summary: HostSummary, now: datetime, unreachable_s: float) -> str:
    if record is None or record.applied_revision is None:
        return "unknown"
    if now - record.last_seen > timedelta(seconds=unreachable_s):
        return "unreachable"
    if summary.statuses.get("error"):
        return "error"
    if summary.statuses.get("drift") or summary.statuses.get("pending") \
            or record.applied_revision < summary.desired_revision:
        return "drift"
    return "in_sync"


def _host(name: str, record: HostRecord | None, summary: HostSummary, now: datetime, unreachable_s: float) -> Host:
    return Host(name=name, registered_at=record.registered_at if record else None,
                last_seen=record.last_seen if record else None,
                agent_version=record.agent_version if record else None, netns=record.netns if record else None,
                status=_status(record, summary, now, unreachable_s),  # type: ignore[arg-type]
                desired_revision=summary.desired_revision,
                applied_revision=record.applied_revision if record else None, ports=summary.live,
                inventory=Inventory.model_validate_json(record.inventory) if record else None)


def register(store: Store, caller: Caller, host: str, registration: Registration,
             *, now: datetime | None = None, unreachable_s: float = UNREACHABLE_S) -> Host:
    """Record the host as its agent found it; answered with the host's record."""
    access.check_host(caller, check_host(host), "registering a host")
    at = _now(now)
    records.register(store, HostRecord(host, at, at, registration.agent_version, registration.netns,
                                       registration.inventory.model_dump_json(), None))
    return show_host(store, caller, host, now=at, unreachable_s=unreachable_s)


def show_host(store: Store, caller: Caller, host: str, *, now: datetime | None = None,
              unreachable_s: float = UNREACHABLE_S) -> Host:
    access.check_host(caller, check_host(host), "reading a host")
    found = records.hosts(store, host)
    summary = records.summaries(store, host).get(host)
    if not found and summary is None:
        raise NotFound(f"host {host}: no agent registered it and no port is bound to it (GET /v1/hosts lists "
                       "the hosts)")
    return _host(host, found[0] if found else None, summary or HostSummary(0, 0, {}), _now(now), unreachable_s)


def list_hosts(store: Store, caller: Caller, *, now: datetime | None = None,
               unreachable_s: float = UNREACHABLE_S) -> list[Host]:
    """Every registered host and every host with desired rows, by name."""
    access.check_admin(caller, "listing the fleet's hosts")
    found = {r.name: r for r in records.hosts(store)}
    summaries = records.summaries(store)
    at = _now(now)
    return [_host(name, found.get(name), summaries.get(name, HostSummary(0, 0, {})), at, unreachable_s)
            for name in sorted(set(found) | set(summaries))]


def report(store: Store, caller: Caller, host: str, body: Report, *, now: datetime | None = None) -> ReportAnswer:
    """Record one report of a registered host (404 otherwise: the agent registers again); answered with the
    quarantines someone asked to lift (`request_lift`), which the agent lifts."""
    access.check_host(caller, check_host(host), "reporting")
    at = _now(now)
    reported = {p.device for p in body.ports} | {s.device for s in body.samples} | {u.device for u in body.usage}
    rows = {key[1]: row for key, row in desired_records.rows_at(store, [(host, d) for d in reported]).items()}
    live = {device for device, row in rows.items() if row.policy is not None}
    if any(p.status == "in_sync" and p.device not in live for p in body.ports):  # a release, or the uplink's
        live |= set(uplink_records.live_devices(store, [host]).values())  # status is kept (issue 16)
    released = {p.device for p in body.ports if p.status == "in_sync" and p.device not in live}
    statuses = [StatusRecord(host, p.device, p.revision, p.status, p.message, at, None, None)
                for p in body.ports if p.device not in released]
    status_devices = {s.device for s in statuses}
    samples = [(s.device, s.model_dump_json(), s.at) for s in body.samples
               if s.device in live or s.device in status_devices]
    events = [{"device": e.device, "at": e.at, "kind": e.kind, "message": e.message, "instance": e.instance,
               "direction": e.direction, "detector": e.detector} for e in body.events]
    placed = [QuarantineRecord(host, q.device, q.since, q.reason, None if q.qos is None else json.dumps(q.qos))
              for q in body.quarantines if not q.lifted]
    lifted = [q.device for q in body.quarantines if q.lifted]
    usage = [(u.device, u.model_dump_json(), u.at) for u in body.usage  # kept as the samples are
             if u.device in live or u.device in status_devices]
    asked = records.save_report(store, host, ReportRows(body.applied_revision, statuses, sorted(released), samples,
                                                        events, placed, lifted, usage), at)
    return ReportAnswer(lift=asked)


def request_lift(store: Store, caller: Caller, host: str, device: str, *, now: datetime | None = None) -> None:
    """Ask the host's agent to lift the device's quarantine now (admin only): recorded as an event, and
    answered to the agent's next report (within a second); the agent lifts it and reports it lifted. A
    flood that still goes on is detected again and quarantined again, as after a cool-down."""
    access.check_admin(caller, "lifting a quarantine")
    check_host(host)
    message = f"lift asked by {caller.user.name}"
    if not records.request_lift(store, host, device, message, _now(now)):
        raise NotFound(f"device {device} on host {host} is not quarantined (GET /v1/quarantines lists those in "
                       "force)")


# ------------------------------------------------------------------ ports


def _quarantine(record: QuarantineRecord) -> Quarantine:
    return Quarantine(host=record.host, device=record.device, since=record.since, reason=record.reason,
                      qos=None if record.qos is None else json.loads(record.qos))


def _port(key: Key, row: DesiredRow | None, status: StatusRecord | None,
          quarantine: QuarantineRecord | None) -> Port:
    want = desired(row) if row is not None else None
    return Port(host=key[0], device=key[1], port_id=row.port_id if row else None,
                source=want.source if want else None, policy_name=want.policy_name if want else None,
                policy=want.policy if want else None, policy_id=row.policy_id if row else None,
                desired_revision=row.revision if row else None,
                applied_revision=status.revision if status else None,
                status=status.status if status else "unknown",  # type: ignore[arg-type]
                message=status.message if status else "", reported_at=status.reported_at if status else None,
                rates=Sample.model_validate_json(status.sample) if status and status.sample else None,
                quarantine=_quarantine(quarantine) if quarantine else None,
                addresses=want.addresses if want else [])


def _views(rows: Iterable[DesiredRow], statuses: dict[Key, StatusRecord],
           quarantines: Iterable[QuarantineRecord]) -> list[Port]:
    by_key = {r.key: r for r in rows}
    held = {(q.host, q.device): q for q in quarantines}
    keys = set(by_key) | {k for k, s in statuses.items() if k not in by_key and s.status != "unknown"}
    return [_port(k, by_key.get(k), statuses.get(k), held.get(k)) for k in sorted(keys)]


def list_ports(store: Store, caller: Caller, host: str | None = None) -> list[Port]:
    """The devices a caller may see: every live row, and the devices whose agent reported a problem with
    no live row (a release that failed), by host and device."""
    scope = access.read_scope(caller, None if host is None else check_host(host), "listing the fleet's ports")
    rows = desired_records.rows(store, host=scope.host, project_id=scope.project_id)
    statuses = records.statuses(store, host=scope.host, project_id=scope.project_id)
    live = {r.key for r in rows}
    problems = {k: s for k, s in statuses.items() if k in live or s.status != "in_sync"}
    return _views(rows, problems, records.quarantines(store, host=scope.host, project_id=scope.project_id))


def show_port(store: Store, caller: Caller, host: str, device: str) -> Port:
    """One device of a host: its row (live or a tombstone), its status, its quarantine; 404 when the server
    knows nothing of it, or it is not the caller's project's."""
    scope = access.read_scope(caller, check_host(host), "reading a port")
    key = (host, device)
    row = next(iter(desired_records.rows(store, host=host, device=device, live=False,
                                         project_id=scope.project_id)), None)
    status = records.statuses(store, host=host, device=device, project_id=scope.project_id).get(key)
    held = records.quarantines(store, host=host, device=device, project_id=scope.project_id)
    if row is None and status is None and not held:
        raise NotFound(f"device {device} on host {host}: the server wants nothing of it and its agent reported "
                       "nothing (GET /v1/ports?host=HOST lists the host's)")
    return _port(key, row, status, held[0] if held else None)


def port_usage(store: Store, caller: Caller, host: str, device: str) -> UsageAnswer:
    """A device's per-IP usage (the current hour and day, as its agent last reported it), to whoever may
    read the port (`show_port`: 404 otherwise)."""
    return UsageAnswer(usage=usage_of(store, show_port(store, caller, host, device)))


def usage_of(store: Store, port: Port) -> PortUsage | None:
    """The usage of a port its caller was shown (`show_port` decided that they may read it)."""
    found = records.port_usage(store, port.host, port.device)
    return None if found is None else PortUsage.model_validate_json(found)


def set_native(store: Store, caller: Caller, host: str, device: str, body: NativePort,
               expect: Expect = Expect()) -> Port:
    """Give a device of a host its limits with the native API (admin only; 409 when a Neutron port names it,
    412 when the row is not as `expect` says: a conditional write, see fleet_desired.Expect)."""
    access.check_admin(caller, "setting a port's limits with the native API")
    check_host(host)
    addresses = check_addresses("addresses", body.addresses)
    if body.policy_id is not None:  # a vmqos policy the device follows (services.policy_ports)
        policy_ports.attach(store, caller, host, device, body.policy_id, expect, addresses)
        return show_port(store, caller, host, device)
    assert body.policy is not None  # NativePort holds exactly one of the two
    name = body.policy_name or f"{NATIVE}:{device}"
    fleet_desired.set_port(store, host, device, policy_from_data(name, body.policy, path=("policy",)), expect,
                           addresses)
    return show_port(store, caller, host, device)


def clear_native(store: Store, caller: Caller, host: str, device: str) -> None:
    """Release a device's native limits (admin only)."""
    access.check_admin(caller, "clearing a port's limits with the native API")
    fleet_desired.clear_port(store, host, device)


def list_events(store: Store, caller: Caller, *, host: str | None = None, device: str | None = None,
                limit: int = 100, after: int | None = None) -> list[Event]:
    """The newest `limit` events (at most EVENTS_LIMIT) the caller may see, newest first; with `after` (an
    event id), the oldest `limit` above it, oldest first (`vmqos events --follow --server`)."""
    scope = access.read_scope(caller, None if host is None else check_host(host), "reading the fleet's events")
    found = records.events(store, host=scope.host, device=device, project_id=scope.project_id,
                           limit=max(1, min(limit, EVENTS_LIMIT)), after=after)
    return [Event(**asdict(e)) for e in found]


def list_quarantines(store: Store, caller: Caller, *, host: str | None = None) -> list[Quarantine]:
    scope = access.read_scope(caller, None if host is None else check_host(host), "reading the fleet's quarantines")
    return [_quarantine(q) for q in records.quarantines(store, host=scope.host, project_id=scope.project_id)]
