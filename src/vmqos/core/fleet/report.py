"""What an agent tells the server every second (`POST /v1/hosts/{host}/reports`), as values (pure).

Per port: the revision of the desired row its status is about, and the status: `in_sync` (the
kernel holds it), `pending` (not applied yet: its device does not exist, or a pass is under way),
`drift` (the kernel holds something vmqos did not make in its way, or another manager owns the
device here) or `error` (with the message). Rates are the monitor's last interval, in whole bit/s
and packets/s, from the limiters' own counters (offered / delivered / dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vmqos.core.analysis.rates import FlowRate
from vmqos.core.analysis.samples import PortRates
from vmqos.core.model.network import DIRECTIONS

STATUSES = ("in_sync", "pending", "drift", "error")


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
class AgentReport:
    applied_revision: int | None
    ports: tuple[PortStatus, ...] = ()
    samples: tuple[RateSample, ...] = ()
    events: tuple[ReportEvent, ...] = ()
    quarantines: tuple[ReportQuarantine, ...] = ()


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
    }


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
