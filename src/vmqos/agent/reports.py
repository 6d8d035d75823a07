"""What the agent says back each second: per port its status and revision, the sampled rates, the
monitor's new events and the quarantines placed and lifted, in ONE report call.

The monitor (`vmqos.monitor.daemon.Monitor`, the same one `vmqos monitor` runs) samples the ports
of the agent's scope, detects floods and quarantines their source through the reconciler; its
events and quarantines are in the agent's store, and this module reads what is new there. The
rates are its last interval's. A report the server does not take is not lost for its events and
quarantines (they go with the next one, up to MAX_PENDING of each); its rates and statuses are
simply superseded by the next second's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from vmqos.agent.feed import DesiredFeed
from vmqos.agent.watch import Reachability
from vmqos.core.errors import VmqosError
from vmqos.core.formats.hostfile.codec import to_data
from vmqos.core.fleet.report import AgentReport, PortStatus, RateSample, ReportEvent, ReportQuarantine
from vmqos.monitor.daemon import Monitor
from vmqos.services import monitoring
from vmqos.store import Store
from vmqos.store.health import DatabaseGone

log = logging.getLogger(__name__)

MAX_PENDING = 1000


def _placed(q: monitoring.Quarantine) -> ReportQuarantine:
    """A quarantine in force, with its limits (host file form) for the server's views."""
    return ReportQuarantine(q.device, q.since, q.reason, qos=to_data(q.qos))


class Reporter:
    """Builds and sends a report each `interval_s`; `statuses` and `applied` come from the agent."""

    def __init__(self, feed: DesiredFeed, store: Store, netns: str | None, server: str, *,
                 statuses: Callable[[], list[PortStatus]], applied: Callable[[], int | None],
                 monitor: Monitor | None, interval_s: float = 1.0,
                 on_sent: Callable[[AgentReport], None] = lambda report: None) -> None:
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
        return tuple(RateSample.of(r, step.sample.at) for _, r in sorted(step.rates.items()))

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

    def step(self) -> AgentReport:
        """Sample, gather and send one report (kept for the next one when the server does not take it)."""
        samples = self._sample()
        self._news()
        report = AgentReport(self.applied(), tuple(self.statuses()), samples, tuple(self.events),
                             tuple(self.quarantines))
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
