"""What the agent says back each second: per port its status and revision, the sampled rates, the
monitor's new events and the quarantines placed and lifted, in ONE report call.

The monitor (`vmqos.monitor.daemon.Monitor`, the same one `vmqos monitor` runs) samples the ports
of the agent's scope, detects floods and quarantines their source through the reconciler; its
events and quarantines are in the agent's store, and this module reads what is new there. The
rates are its last interval's. A report the server does not take is not lost for its events and
quarantines (they go with the next one, up to MAX_PENDING of each); its rates and statuses are
simply superseded by the next second's.

Per-IP usage is read from the agent's store (where the monitor folds it) every `usage_s`, and a
port's goes in a report only when it changed since the server took the last one (core.fleet.report:
`port_usage`, `usage_changes`); a report the server refused sends it again with the next. A report
carries at most USAGE_PORTS ports' usage (the ones waiting longest first; the rest go with the next
reports, a second later), so that a host whose thousand ports all changed does not send one report of
tens of megabytes: each port's is at most 4 x USAGE_TOP lines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from vmqos.agent.feed import DesiredFeed
from vmqos.agent.watch import Reachability
from vmqos.core.analysis.usage import period_start
from vmqos.core.errors import VmqosError
from vmqos.core.formats.hostfile.codec import to_data
from vmqos.core.fleet.report import (
    AgentReport,
    PortStatus,
    PortUsage,
    RateSample,
    ReportEvent,
    ReportQuarantine,
    port_usage,
    rate_samples,
    usage_changes,
)
from vmqos.monitor.daemon import Monitor
from vmqos.services import monitoring
from vmqos.store import Store
from vmqos.store.health import DatabaseGone

log = logging.getLogger(__name__)

MAX_PENDING = 1000
USAGE_PORTS = 100  # ports' usage per report


def _placed(q: monitoring.Quarantine) -> ReportQuarantine:
    """A quarantine in force, with its limits (host file form) for the server's views."""
    return ReportQuarantine(q.device, q.since, q.reason, qos=to_data(q.qos))


class Reporter:
    """Builds and sends a report each `interval_s`; `statuses` and `applied` come from the agent."""

    def __init__(self, feed: DesiredFeed, store: Store, netns: str | None, server: str, *,
                 statuses: Callable[[], list[PortStatus]], applied: Callable[[], int | None],
                 monitor: Monitor | None, interval_s: float = 1.0, usage_s: float | None = None,
                 usage_ports: int = USAGE_PORTS,
                 on_sent: Callable[[AgentReport], None] = lambda report: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.feed, self.store, self.netns, self.on_sent = feed, store, netns, on_sent
        self.statuses, self.applied, self.monitor, self.interval_s = statuses, applied, monitor, interval_s
        self.reach = Reachability(server, "reporting")
        self.seen_event = monitoring.last_event_id(store, netns)  # events before the start were someone else's
        self.quarantined = {d: q for d, q in monitoring.quarantined(store, netns).items()}
        self.events: list[ReportEvent] = []
        self.quarantines: list[ReportQuarantine] = [_placed(q)  # in force at start
                                                    for _, q in sorted(self.quarantined.items())]
        self.sent = 0
        self._monitor_error = ""
        # read the usage as often as the monitor folds it (reading it more often finds nothing new)
        self.usage_s = usage_s if usage_s is not None else (monitor.config.usage_interval_s if monitor else 60.0)
        self.clock, self.usage_ports = clock, usage_ports
        self._next_usage = clock()
        self.usage_sent: dict[str, PortUsage] = {}
        # changed since the server took the last, the longest waiting first (an update keeps a port's place)
        self.usage: dict[str, PortUsage] = {}

    def _sample(self) -> tuple[RateSample, ...]:
        if self.monitor is None:
            return ()
        try:
            step = self.monitor.step()
        except DatabaseGone:
            raise
        except VmqosError as exc:
            if str(exc) != self._monitor_error:
                log.warning("monitor: a pass failed: %s (it goes on every %g s)", exc, self.interval_s)
            self._monitor_error = str(exc)
            return ()
        self._monitor_error = ""
        return rate_samples(step.rates, step.sample.at)  # on the columns when the monitor's rates are columnar

    def _news(self) -> None:
        for ev in monitoring.events(self.store, self.netns, after_id=self.seen_event):
            self.seen_event = ev.id
            self.events.append(ReportEvent(ev.port, ev.at, ev.kind, ev.message))
        now = monitoring.quarantined(self.store, self.netns)
        for device, q in sorted(now.items()):
            if device not in self.quarantined or self.quarantined[device].since != q.since:
                self.quarantines.append(_placed(q))
        for device, q in sorted(self.quarantined.items()):
            if device not in now:
                self.quarantines.append(ReportQuarantine(device, q.since, q.reason, lifted=True))
        self.quarantined = now
        del self.events[:-MAX_PENDING]
        del self.quarantines[:-MAX_PENDING]

    def _usage(self) -> None:
        now = self.clock()
        if now < self._next_usage:
            return
        self._next_usage = now + self.usage_s
        at = datetime.now(UTC)
        totals = [t for g in ("hour", "day")
                  for t in monitoring.usage(self.store, self.netns, granularity=g, since=period_start(at, g))]
        self.usage.update(usage_changes(port_usage(totals, at), self.usage_sent))

    def step(self) -> AgentReport:
        """Sample, gather and send one report (kept for the next one when the server does not take it)."""
        samples = self._sample()
        self._news()
        self._usage()
        usage = tuple(u for _, u in zip(range(self.usage_ports), self.usage.values()))
        report = AgentReport(self.applied(), tuple(self.statuses()), samples, tuple(self.events),
                             tuple(self.quarantines), usage)
        try:
            lift = self.feed.report(report)
        except DatabaseGone:
            raise
        except VmqosError as exc:
            self.reach.failed(exc, self.interval_s, f"{len(self.events)} events and {len(self.quarantines)} "
                                                    "quarantine changes wait for the next report")
            return report
        self.reach.ok()
        self.on_sent(report)
        self.events.clear()
        self.quarantines.clear()
        for u in usage:
            self.usage_sent[u.device] = u
            if self.usage.get(u.device) is u:
                del self.usage[u.device]
        self.sent += 1
        for device in lift or ():
            self._lift(device)
        return report

    def _lift(self, device: str) -> None:
        """Lift a quarantine an admin asked the server to lift (the dashboard's "lift"): as the monitor lifts
        one after its cool-down; the next report says it is lifted (or, if it failed, why)."""
        if device not in self.quarantined:
            return
        try:
            done = monitoring.lift(self.store, self.netns, device, verify=False, missing_ok=True)
            if done.ok:
                monitoring.add_event(self.store, self.netns, device, "lifted", "lifted: asked by the server")
            else:
                failed = "; ".join(r.error or "" for r in done.results if r.error)
                monitoring.add_event(self.store, self.netns, device, "failed", f"lift failed: {failed}")
        except DatabaseGone:
            raise
        except VmqosError as exc:
            log.warning("lifting the quarantine of %s (asked by the server) failed: %s", device, exc)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            self.step()
