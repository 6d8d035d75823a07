"""What the watching commands do with the store: events, usage per address, quarantines.

Front ends (the CLI now; the API and the dashboard later) read and change these only here, so a
quarantine set by hand, by the monitor or through an API is stored, enforced and recorded the same
way: stored first, then enforced through the reconciler; one the kernel did not take is removed
again, so that the store never says a port is quarantined while its traffic is not.
"""

from __future__ import annotations

from datetime import UTC, datetime

from vmqos.core.analysis.usage import UsageTotal
from vmqos.core.desired.ports import scope_of
from vmqos.core.errors import NotFound
from vmqos.core.model.network import NetworkQos
from vmqos.services.ports import reconcile_ports
from vmqos.services.results import ApplyReport
from vmqos.store import Store
from vmqos.store import monitor as records
from vmqos.store.monitor import Event, Quarantine

__all__ = ["Event", "Quarantine", "add_event", "events", "last_event_id", "lift", "quarantine", "quarantined",
           "usage"]


def _where(netns: str | None) -> str:
    return f"netns {netns}" if netns else "this namespace"


def events(store: Store, netns: str | None, *, after_id: int = 0, since: datetime | None = None,
           port: str | None = None, limit: int = 1000) -> list[Event]:
    """The scope's events in the order they happened, at most `limit`."""
    return records.events(store, scope_of(netns), after_id=after_id, since=since, port=port, limit=limit)


def last_event_id(store: Store, netns: str | None) -> int:
    """Where a follower starts: the id of the newest event, 0 when there is none."""
    last = records.events(store, scope_of(netns), limit=1)
    return last[-1].id if last else 0


def add_event(store: Store, netns: str | None, port: str, kind: str, message: str,
              at: datetime | None = None) -> None:
    records.add_event(store, scope_of(netns), at or datetime.now(UTC), port, kind, message)


def usage(store: Store, netns: str | None, *, granularity: str = "hour", since: datetime | None = None,
          port: str | None = None, min_bytes: int = 0) -> list[UsageTotal]:
    """Bytes and packets per port and address pair, per hour or day, at least `min_bytes` each."""
    found = records.usage(store, scope_of(netns), granularity=granularity, since=since, port=port)
    return [t for t in found if t.bytes >= min_bytes]


def quarantined(store: Store, netns: str | None) -> dict[str, Quarantine]:
    return records.quarantines(store, scope_of(netns))


def quarantine(store: Store, netns: str | None, device: str, qos: NetworkQos, reason: str, *,
               at: datetime | None = None, verify: bool = True, managed_only: bool = True) -> ApplyReport:
    """Police `device` to `qos` on top of its own limits (the most restrictive value wins).

    Stored, then enforced; when the reconciler fails the quarantine is removed again and the report
    says why (the port itself was rolled back by the reconciler)."""
    scope = scope_of(netns)
    with store.writer(scope):  # one writer: the stored quarantine and the kernel agree
        state = store.load(scope)
        if managed_only and device not in {p.device for _, p in state.ports()}:
            raise NotFound(f"port {device} is not managed in {_where(netns)}")
        records.put_quarantine(store, scope, Quarantine(device, qos, reason, at or datetime.now(UTC)))
        report = reconcile_ports(store, netns, state, [device], verify=verify)
        if not report.ok:
            records.lift_quarantine(store, scope, device)
        return report


def lift(store: Store, netns: str | None, device: str, *, verify: bool = True,
         missing_ok: bool = False) -> ApplyReport:
    """End a quarantine: removed from the store, the port back to its own limits."""
    scope = scope_of(netns)
    with store.writer(scope):
        if not records.lift_quarantine(store, scope, device) and not missing_ok:
            raise NotFound(f"port {device} is not quarantined in {_where(netns)}")
        return reconcile_ports(store, netns, store.load(scope), [device], verify=verify)
