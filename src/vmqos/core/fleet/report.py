"""What an agent tells the server every second (`POST /v1/hosts/{host}/reports`), as values (pure).

Per port: the revision of the desired row its status is about, and the status: `in_sync` (the
kernel holds it), `pending` (not applied yet: its device does not exist, or a pass is under way),
`drift` (the kernel holds something vmqos did not make in its way, or another manager owns the
device here) or `error` (with the message). Rates are the monitor's last interval, in whole bit/s
and packets/s, from the limiters' own counters (offered / delivered / dropped).

Per-IP usage (optional, additive: an older agent sends none) is the monitor's hour and day totals of
the current hour and day, per port: for each (direction, granularity) the USAGE_TOP address pairs
that counted the most bytes. The agent sends a port's usage only when it changed since the last one
the server took, and reads it at most once per fold of the monitor (60 s by default), so a report
holds at most 4 × USAGE_TOP lines per port and most reports none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from vmqos.core.analysis.columns import LazyRates
from vmqos.core.analysis.rates import FlowRate
from vmqos.core.analysis.samples import PortRates
from vmqos.core.analysis.usage import GRANULARITIES, UsageTotal, period_start
from vmqos.core.model.network import DIRECTIONS

STATUSES = ("in_sync", "pending", "drift", "error")
USAGE_TOP = 50  # address pairs per port, direction and window (hour, day) in a report


@dataclass(frozen=True)
class PortStatus:
    device: str
    revision: int
    status: str
    message: str = ""


@dataclass(frozen=True)
class DirectionRates:
    offered_bps: int = 0
    delivered_bps: int = 0
    dropped_bps: int = 0
    offered_pps: int = 0
    delivered_pps: int = 0
    dropped_pps: int = 0

    @classmethod
    def of(cls, rate: FlowRate | None) -> DirectionRates:
        if rate is None:
            return cls()
        return cls(round(rate.offered_bps), round(rate.delivered_bps), round(rate.dropped_bps),
                   round(rate.offered_pps), round(rate.delivered_pps), round(rate.dropped_pps))


@dataclass(frozen=True)
class RateSample:
    device: str
    at: datetime
    interval_s: float
    ingress: DirectionRates
    egress: DirectionRates

    @classmethod
    def of(cls, rates: PortRates, at: datetime) -> RateSample:
        seconds = next((r.seconds for r in rates.rates.values()), 0.0)
        ingress, egress = (DirectionRates.of(rates.rates.get(d)) for d in DIRECTIONS)
        return cls(rates.port, at, round(seconds, 3), ingress, egress)


def rate_samples(rates: Mapping[str, PortRates], at: datetime) -> tuple[RateSample, ...]:
    """A report's rates: `RateSample.of` per port, by port name. Columnar rates (issue 17) are
    rounded on the columns (numpy's rint rounds half to even, as `round` does), with no
    `PortRates` or `FlowRate` built per port."""
    if not isinstance(rates, LazyRates):
        return tuple(RateSample.of(r, at) for _, r in sorted(rates.items()))
    cols = rates.columns
    r = cols.rates
    figures = np.stack([r[:, :, 0], r[:, :, 1], np.maximum(0.0, r[:, :, 0] - r[:, :, 1]), r[:, :, 2], r[:, :, 3],
                        r[:, :, 4]], axis=2)
    has = cols.has.tolist()
    ints = np.rint(np.where(cols.has[:, :, None], figures, 0.0)).astype(np.int64).tolist()
    seconds = round(cols.seconds, 3)
    table = cols.current.table
    out = []
    for row in np.argsort(table.name_rank).tolist():
        ingress, egress = (DirectionRates(*ints[row][d]) if has[row][d] else DirectionRates() for d in (0, 1))
        out.append(RateSample(table.ports[row], at, seconds if has[row][0] or has[row][1] else 0.0, ingress, egress))
    return tuple(out)


@dataclass(frozen=True)
class ReportEvent:
    device: str
    at: datetime
    kind: str
    message: str


@dataclass(frozen=True)
class ReportQuarantine:
    device: str
    since: datetime
    reason: str
    lifted: bool = False
    qos: dict[str, Any] | None = None  # the quarantine's limits in the host file's form (the views show them)


@dataclass(frozen=True)
class UsageLine:
    """Bytes (frames, L2) and packets between the instance's address and a remote one in one window."""

    direction: str  # ingress: towards the instance; egress: sent by it
    local_ip: str
    remote_ip: str
    granularity: str  # "hour" or "day"
    period_start: datetime
    bytes: int
    packets: int


@dataclass(frozen=True)
class PortUsage:
    """A port's usage in the current hour and day, as the agent's store held it at `at`."""

    device: str
    at: datetime
    lines: tuple[UsageLine, ...]


@dataclass(frozen=True)
class AgentReport:
    applied_revision: int | None
    ports: tuple[PortStatus, ...] = ()
    samples: tuple[RateSample, ...] = ()
    events: tuple[ReportEvent, ...] = ()
    quarantines: tuple[ReportQuarantine, ...] = ()
    usage: tuple[PortUsage, ...] = ()


def port_usage(totals: Iterable[UsageTotal], at: datetime, top: int = USAGE_TOP) -> dict[str, PortUsage]:
    """Per device, the totals of the hour and the day `at` falls in, the `top` biggest (by bytes, then
    packets, then addresses: a stable choice) of each (direction, granularity); older windows are left out."""
    current = {g: period_start(at, g) for g in GRANULARITIES}
    groups: dict[tuple[str, str, str], list[UsageTotal]] = {}
    for t in totals:
        if current.get(t.granularity) == t.period_start:
            groups.setdefault((t.key.device, t.key.direction, t.granularity), []).append(t)
    lines: dict[str, list[UsageLine]] = {}
    for (device, _direction, _granularity), found in sorted(groups.items()):
        found.sort(key=lambda t: (-t.bytes, -t.packets, t.key.local_ip, t.key.remote_ip))
        lines.setdefault(device, []).extend(
            UsageLine(t.key.direction, t.key.local_ip, t.key.remote_ip, t.granularity, t.period_start, t.bytes,
                      t.packets) for t in found[:top])
    return {device: PortUsage(device, at, tuple(found)) for device, found in lines.items()}


def usage_changes(fresh: dict[str, PortUsage], sent: dict[str, PortUsage]) -> dict[str, PortUsage]:
    """The ports whose lines differ from the last ones the server took (a new window counts as a change;
    a port with no line left is not sent: the server keeps its last, dated, word)."""
    return {d: u for d, u in fresh.items() if d not in sent or sent[d].lines != u.lines}


def _at(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def to_wire(report: AgentReport) -> dict[str, Any]:
    """The body of `POST /v1/hosts/{host}/reports`."""
    return {
        "applied_revision": report.applied_revision,
        "ports": [{"device": p.device, "revision": p.revision, "status": p.status, "message": p.message}
                  for p in report.ports],
        "samples": [{"device": s.device, "at": _at(s.at), "interval_s": s.interval_s,
                     "ingress": vars(s.ingress), "egress": vars(s.egress)} for s in report.samples],
        "events": [{"device": e.device, "at": _at(e.at), "kind": e.kind, "message": e.message}
                   for e in report.events],
        "quarantines": [{"device": q.device, "since": _at(q.since), "reason": q.reason, "lifted": q.lifted,
                         "qos": q.qos} for q in report.quarantines],
        # only when there is some: a server older than the field refuses unknown fields
        **({"usage": [usage_wire(u) for u in report.usage]} if report.usage else {}),
    }


def usage_wire(usage: PortUsage) -> dict[str, Any]:
    return {"device": usage.device, "at": _at(usage.at),
            "lines": [{"direction": ln.direction, "local_ip": ln.local_ip, "remote_ip": ln.remote_ip,
                       "granularity": ln.granularity, "period_start": _at(ln.period_start), "bytes": ln.bytes,
                       "packets": ln.packets} for ln in usage.lines]}


def port_status(device: str, revision: int, *, in_sync: bool, error: str | None, missing: bool, absent: bool,
                foreign: bool) -> PortStatus:
    """A desired row's status from what the enforcer knows of its device: managed by another owner
    here (drift), its last error (a device that does not exist yet is pending, drift in its way is
    drift, anything else an error), gone since (pending), placed (in sync), else not yet (pending)."""
    if foreign:
        return PortStatus(device, revision, "drift", "a host file or `vmqos port set` manages this device on the "
                                                     "host; the agent leaves it alone (`vmqos port clear` hands "
                                                     "it over)")
    if error is not None:
        if missing:
            return PortStatus(device, revision, "pending", error)
        return PortStatus(device, revision, "drift" if error.startswith("drift:") else "error", error)
    if absent:
        return PortStatus(device, revision, "pending", f"device {device} does not exist (its instance is not running)")
    return PortStatus(device, revision, "in_sync" if in_sync else "pending")
