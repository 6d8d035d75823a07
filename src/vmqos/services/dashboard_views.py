"""The dashboard's read models: the fleet, a host, a port, as a caller may see them.

Every view is built from the fleet's own use cases (services.fleet_hosts: `list_hosts`, `list_ports`,
`show_port`, `list_events`, `list_quarantines`), so that who sees what is decided in one place
(services.fleet_access): an admin sees the whole fleet; a project's member sees its own Neutron
ports, their events and quarantines, and of the hosts only the names those ports are bound to (not
their agents' state, which is the operator's). Rates are canonical integers (bits/s, packets/s); the
page formats them.

A row is one (port, direction), as in `vmqos top`: the limit in force (the policy's, or the
quarantine's when it is stricter), the offered, delivered and dropped rates, the packet rate and the
utilisation (delivered / limit).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from vmqos.core.desired.effective import EffectiveNetwork, QosSource, combine
from vmqos.core.errors import NotFound, VmqosError
from vmqos.core.formats.hostfile.codec import from_data, policy_from_data
from vmqos.core.model.network import NetworkQos
from vmqos.services import fleet_hosts, verify_runs
from vmqos.services.dashboard_live import LiveHistory, Point
from vmqos.services.fleet_wire import Event, Port, PortUsage, Quarantine, Rates
from vmqos.services.identity import Caller
from vmqos.services.verify_wire import VerifyRun
from vmqos.store import Store

Direction = Literal["egress", "ingress"]
TOP_TALKERS = 10
PORT_EVENTS = 50


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class Who(View):
    user: str
    project: str | None
    admin: bool
    can_write: bool


class HostLine(View):
    name: str
    status: str | None  # None: not the caller's to see (a project member)
    last_seen: datetime | None
    agent_version: str | None
    ports: int
    offered_bps: int
    delivered_bps: int
    dropped_bps: int
    quarantines: int


class PortRow(View):
    host: str
    device: str
    port_id: str | None
    policy_name: str | None
    status: str
    quarantined: bool
    direction: Direction
    limit_bps: int | None
    offered_bps: int
    delivered_bps: int
    dropped_bps: int
    pps: int
    dropped_pps: int
    utilisation: float | None
    reported_at: datetime | None


class FleetView(View):
    who: Who
    hosts: list[HostLine]
    top: list[PortRow]
    events: list[Event]
    quarantines: list[Quarantine]


class HostView(View):
    who: Who
    host: HostLine
    rows: list[PortRow]


class Limit(View):
    direction: Direction
    field: str
    value: int
    source: str


class PortView(View):
    who: Who
    host: str
    device: str
    port_id: str | None
    policy_name: str | None
    source: str | None
    status: str
    message: str
    desired_revision: int | None
    applied_revision: int | None
    reported_at: datetime | None
    quarantine: Quarantine | None
    limits: list[Limit]
    rows: list[PortRow]
    history: list[Point]
    history_since: datetime
    events: list[Event]
    usage: PortUsage | None  # the port's per-IP usage of this hour and day, as its agent last reported it
    usage_note: str  # what the page says of it
    verify_runs: list[VerifyRun]  # what `vmqos verify --server` kept of the port's runs, newest first
    verify: str  # what the page says of them


class EventsView(View):
    who: Who
    events: list[Event]
    quarantines: list[Quarantine]


NO_USAGE = ("No per-IP usage reported for this port yet: the agent's monitor counts it and reports what changed "
            "once a minute (an agent without its monitor, or older than the report's `usage` field, reports none).")
USAGE_NOTE = ("Bytes (frames) and packets per address pair that passed the port's limits in the current hour and "
              "day; the agent reports the biggest pairs of each window and refreshes them once a minute.")
NO_VERIFY = ("No verify run kept for this port: `vmqos verify PORT ... --server URL --host HOST` (an admin or the "
             "host's service user) uploads each finished run with its plot.")
VERIFY_NOTE = ("Runs of `vmqos verify --server` with real traffic through this port, newest first (the server keeps "
               f"the last {verify_runs.KEEP}): the rate achieved once the burst was over, against the limit judged.")


def who(caller: Caller) -> Who:
    return Who(user=caller.user.name, project=caller.project.name if caller.project else None,
               admin=caller.is_admin, can_write=caller.can_write)


def _qos(port: Port) -> NetworkQos | None:
    if port.policy is None:
        return None
    try:
        return policy_from_data(port.policy_name or port.device, port.policy, path=("policy",)).qos
    except VmqosError:
        return None


def _quarantine_qos(port: Port) -> NetworkQos | None:
    if port.quarantine is None or port.quarantine.qos is None:
        return None
    try:
        qos: NetworkQos = from_data(NetworkQos, port.quarantine.qos, path=("quarantine",))
        return qos
    except VmqosError:
        return None


_EFFECTIVE: dict[tuple[object, ...], EffectiveNetwork] = {}
_EFFECTIVE_MAX = 200_000


def effective(port: Port) -> EffectiveNetwork:
    """The port's limits with the source of each: its policy, and the quarantine when one is in force
    (the agent adds it as one more source; the strictest value wins). Kept by the row's revision (a
    revision names one content of one row) and the quarantine: a host page's frame each second does
    not read 1,000 policies again (it halved the frame's time at 1,000 ports)."""
    held = port.quarantine
    key = (port.host, port.device, port.desired_revision, port.policy_name,
           None if held is None else (held.since, held.reason))
    found = _EFFECTIVE.get(key)
    if found is None:
        if len(_EFFECTIVE) >= _EFFECTIVE_MAX:
            _EFFECTIVE.clear()
        found = _EFFECTIVE[key] = _effective(port)
    return found


def _effective(port: Port) -> EffectiveNetwork:
    sources = []
    qos = _qos(port)
    if qos is not None:
        sources.append(QosSource(f"{port.source or 'native'} policy {port.policy_name}", qos))
    held = _quarantine_qos(port)
    if held is not None:
        sources.append(QosSource("quarantine", held))
    try:
        return combine(sources)
    except VmqosError:
        return EffectiveNetwork()


def _rows(port: Port) -> list[PortRow]:
    eff = effective(port)
    rows = []
    for direction in ("egress", "ingress"):
        limit = eff.egress if direction == "egress" else eff.ingress
        rate = limit.rate_bps.value if limit.rate_bps is not None else None
        rates = (port.rates.egress if direction == "egress" else port.rates.ingress) if port.rates else Rates()
        rows.append(PortRow(
            host=port.host, device=port.device, port_id=port.port_id, policy_name=port.policy_name,
            status=port.status, quarantined=port.quarantine is not None, direction=direction,
            limit_bps=rate, offered_bps=rates.offered_bps, delivered_bps=rates.delivered_bps,
            dropped_bps=rates.dropped_bps, pps=rates.offered_pps, dropped_pps=rates.dropped_pps,
            utilisation=(rates.delivered_bps / rate) if rate else None,
            reported_at=port.reported_at))
    return rows


def _line(name: str, status: str | None, last_seen: datetime | None, version: str | None,
          rows: list[PortRow], quarantines: int) -> HostLine:
    return HostLine(name=name, status=status, last_seen=last_seen, agent_version=version,
                    ports=len({r.device for r in rows}), offered_bps=sum(r.offered_bps for r in rows),
                    delivered_bps=sum(r.delivered_bps for r in rows), dropped_bps=sum(r.dropped_bps for r in rows),
                    quarantines=quarantines)


def fleet(store: Store, caller: Caller) -> FleetView:
    """The hosts with their agents' status (an admin's), and the fleet's top talkers right now."""
    ports = fleet_hosts.list_ports(store, caller)
    rows = [row for port in ports for row in _rows(port)]
    by_host: dict[str, list[PortRow]] = {}
    for row in rows:
        by_host.setdefault(row.host, []).append(row)
    held = fleet_hosts.list_quarantines(store, caller)
    held_by_host: dict[str, int] = {}
    for q in held:
        held_by_host[q.host] = held_by_host.get(q.host, 0) + 1
    if caller.is_admin:
        hosts = [_line(h.name, h.status, h.last_seen, h.agent_version, by_host.get(h.name, []),
                       held_by_host.get(h.name, 0)) for h in fleet_hosts.list_hosts(store, caller)]
    else:
        hosts = [_line(name, None, None, None, found, held_by_host.get(name, 0))
                 for name, found in sorted(by_host.items())]
    top = sorted((r for r in rows if r.offered_bps or r.delivered_bps),
                 key=lambda r: (-r.offered_bps, r.host, r.device))[:TOP_TALKERS]
    return FleetView(who=who(caller), hosts=hosts, top=top,
                     events=fleet_hosts.list_events(store, caller, limit=20), quarantines=held)


def host(store: Store, caller: Caller, name: str) -> HostView:
    """Every port of one host as rows; a member sees its own project's ports of it only (404 for none)."""
    ports = fleet_hosts.list_ports(store, caller, name)
    rows = [row for port in ports for row in _rows(port)]
    held = len(fleet_hosts.list_quarantines(store, caller, host=name))
    if caller.is_admin:
        h = fleet_hosts.show_host(store, caller, name)
        line = _line(name, h.status, h.last_seen, h.agent_version, rows, held)
    else:
        if not ports:
            raise NotFound(f"host {name}: none of your project's ports is bound to it (the fleet page lists the "
                           "hosts of yours)")
        line = _line(name, None, None, None, rows, held)
    return HostView(who=who(caller), host=line, rows=rows)


def port(store: Store, caller: Caller, live: LiveHistory, host_name: str, device: str,
         since: float | None = None) -> PortView:
    """One port: its limits and their sources, its status, its last minutes of samples (above `since`,
    when given: a stream sends only what is new), its events."""
    found = fleet_hosts.show_port(store, caller, host_name, device)
    usage = fleet_hosts.usage_of(store, found)
    runs = verify_runs.runs_of(store, found.host, found.device)
    eff = effective(found)
    limits = [Limit(direction=d, field=name, value=value.value, source=value.source)  # type: ignore[arg-type]
              for d, side in (("egress", eff.egress), ("ingress", eff.ingress))
              for name, value in (("rate_bps", side.rate_bps), ("peak_bps", side.peak_bps),
                                  ("burst_bytes", side.burst_bytes), ("pps", side.pps), ("min_bps", side.min_bps),
                                  ("dscp", side.dscp))
              if value is not None]
    return PortView(who=who(caller), host=found.host, device=found.device, port_id=found.port_id,
                    policy_name=found.policy_name, source=found.source, status=found.status, message=found.message,
                    desired_revision=found.desired_revision, applied_revision=found.applied_revision,
                    reported_at=found.reported_at, quarantine=found.quarantine, limits=limits, rows=_rows(found),
                    history=live.points(host_name, device, since), history_since=live.started_at,
                    events=fleet_hosts.list_events(store, caller, host=host_name, device=device, limit=PORT_EVENTS),
                    usage=usage, usage_note=USAGE_NOTE if usage is not None else NO_USAGE, verify_runs=runs,
                    verify=VERIFY_NOTE if runs else NO_VERIFY)


def events(store: Store, caller: Caller) -> EventsView:
    return EventsView(who=who(caller), events=fleet_hosts.list_events(store, caller, limit=200),
                      quarantines=fleet_hosts.list_quarantines(store, caller))
