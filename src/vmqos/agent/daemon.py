"""The agent's threads and how they start and stop.

Order at start, for fail-static: the link watcher's socket is bound first (a device created from
then on is heard), then the cache is enforced at once, before the server is asked anything (a
host that reboots while the server is down gets its limits back), then the threads start:

- enforcer: every kernel change of the agent, one pass at a time (`services.enforcer.Enforcer`):
  the devices someone asked for at once (a link appeared, a libvirt domain started, the server
  changed them), the failed ones again every `retry_s`, everything read back every `resync_s`;
- links: netlink's link events in the namespace; a wanted device that appears (created, renamed,
  moved in) is a targeted pass for that device alone;
- libvirt (when it answers): a domain that starts or resumes is a pass for its interfaces;
- follower: the server's changes into the cache (`agent.watch`), then to the enforcer;
- reporter: once a second, the monitor's pass and one report (`agent.reports`);
- the Prometheus exporter, when asked for.

Stopping (SIGTERM, SIGINT) ends the passes after the one under way and removes nothing: the
kernel keeps every limit, and the next start adopts them. A kill -9 is the same, as far as the
kernel goes: the marks and pending rows are written before the kernel is touched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vmqos.agent.feed import DesiredFeed
from vmqos.agent.inventory import gather
from vmqos.agent.reports import Reporter
from vmqos.agent.watch import BACKOFF_MAX_S, Follower
from vmqos.core.errors import VmqosError
from vmqos.core.fleet.desired import POLICY_PREFIX
from vmqos.core.fleet.report import AgentReport, PortStatus, port_status
from vmqos.drivers.libvirt_events import DomainEvent, LifecycleWatcher
from vmqos.drivers.link_events import LinkWatcher
from vmqos.monitor.daemon import Monitor, MonitorConfig
from vmqos.services import agent_cache
from vmqos.services.agent_cache import Kept
from vmqos.services.enforcer import Enforcer, WantedPorts
from vmqos.reconcile.execute import Reconciler
from vmqos.drivers.tc_netlink import TcNetlink
from vmqos.services.ports import Kernel
from vmqos.store import Store

if TYPE_CHECKING:
    from vmqos.monitor.exporter import Exporter

log = logging.getLogger(__name__)
ACTOR = "vmqos agent"


@dataclass(frozen=True)
class AgentSettings:
    server: str
    host: str
    netns: str | None = None
    resync_s: float = 30.0
    retry_s: float = 1.0
    wait_s: float = 30.0  # the long poll's wait (the protocol allows up to 60 s)
    backoff_max_s: float = BACKOFF_MAX_S
    report_s: float = 1.0
    usage_s: float | None = None  # how often per-IP usage is read for the reports; None: the monitor's fold
    metrics_listen: str | None = None
    libvirt: str | None = None  # a URI; None: libvirt's default, tried quietly
    use_libvirt: bool = True
    watch_links: bool = True
    monitor: MonitorConfig | None = field(default_factory=MonitorConfig)


class Wake:
    """Work for the enforcer thread: devices to place at once, a flag for a full pass, and the server's
    revision that the work brings the kernel to (the report's applied revision, once it is done)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._devices: set[str] = set()
        self._full = False
        self._revision: int | None = None

    def devices(self, devices: Collection[str], revision: int | None = None) -> None:
        with self._cond:
            self._devices |= set(devices)
            if revision is not None:
                self._revision = revision
            self._cond.notify()

    def full(self) -> None:
        with self._cond:
            self._full = True
            self._cond.notify()

    def take(self, timeout: float) -> tuple[set[str], bool, int | None]:
        with self._cond:
            if not self._devices and not self._full and self._revision is None:
                self._cond.wait(max(0.0, timeout))
            taken = self._devices, self._full, self._revision
            self._devices, self._full, self._revision = set(), False, None
            return taken


class HeldKernel:
    """The agent's reconciler, kept from pass to pass: opening a namespace's netlink socket costs pyroute2
    a helper process (about 30 ms, more than half of a tap's first pass). Its caches of link indexes
    are dropped at each pass (a tap deleted and made again has a new index). Only the enforcer's
    thread uses it (and `start`, before that thread exists)."""

    def __init__(self) -> None:
        self.reconciler: _Kept | None = None

    def __call__(self, netns: str | None) -> Reconciler:
        if self.reconciler is None or self.reconciler.netns != netns:
            self.reconciler = _Kept(netns)
        tc = self.reconciler.tc
        if isinstance(tc, TcNetlink):
            tc.forget_all()
        return self.reconciler

    def close(self) -> None:
        if self.reconciler is not None:
            Reconciler.close(self.reconciler)
            self.reconciler = None


class _Kept(Reconciler):
    def close(self) -> None:  # the end of a pass: kept for the next one (HeldKernel.close ends it)
        pass


class Agent:
    """One host's agent over its cache store; `start()`, then `stop()` (or `run(stop)`)."""

    def __init__(self, settings: AgentSettings, feed: DesiredFeed, store: Store, *,
                 kernel: Kernel | None = None) -> None:
        self.settings, self.feed, self.store = settings, feed, store
        s = settings
        self.stop_event = threading.Event()
        self.wake = Wake()
        self.absent: set[str] = set()  # wanted devices the link watcher saw go
        self.released: dict[str, int] = {}  # device -> tombstone revision, reported once
        self._lock = threading.Lock()  # `released`: the follower, the reporter
        self.applied_revision: int | None = None
        self.links: LinkWatcher | None = None
        self.libvirt: LifecycleWatcher | None = None
        self.follower = Follower(feed, store, s.host, s.server, on_change=self._changed,
                                 inventory=lambda: gather(s.netns, store, self.libvirt), wait_s=s.wait_s,
                                 backoff_max_s=s.backoff_max_s)
        self.held = HeldKernel() if kernel is None else None
        self.enforcer = Enforcer(store, s.netns, self._wanted, actor=ACTOR, prefix=POLICY_PREFIX,
                                 kernel=kernel or self.held, retry_s=s.retry_s, privileged=kernel is None)
        self.monitor = Monitor(store, s.netns, s.monitor) if s.monitor is not None else None
        self.reporter = Reporter(feed, store, s.netns, s.server, statuses=self.statuses,
                                 applied=lambda: self.applied_revision, monitor=self.monitor, interval_s=s.report_s,
                                 usage_s=s.usage_s, on_sent=self._reported)
        self.exporter: Exporter | None = None
        self.passes = 0
        self._threads: list[threading.Thread] = []
        self.error: BaseException | None = None

    # -- what is wanted, and how each port stands --------------------------------------------------

    def _wanted(self) -> WantedPorts:
        return agent_cache.wanted(self.follower.rows, self.settings.server, self.follower.uplink)

    def _changed(self, kept: Kept) -> None:
        with self._lock:
            for change in kept.changes:
                if change.tombstone:
                    self.released[change.device] = change.revision
                else:
                    self.released.pop(change.device, None)
            old = self.enforcer.uplink.wanted
            if kept.uplink_changed and old is not None and (kept.uplink is None or kept.uplink.spec != old):
                self.released[old.device] = kept.revision  # reported once, as a tombstone's device is
        if kept.uplink_changed:
            self.wake.full()  # every port's mark follows the uplink
        self.wake.devices([c.device for c in kept.changes], kept.revision)

    def statuses(self) -> list[PortStatus]:
        e = self.enforcer
        out = [port_status(device, row.revision, in_sync=e.placed.get(device) == row.policy,
                           error=e.failing.get(device), missing=e.is_missing(device), absent=device in self.absent,
                           foreign=device in e.foreign)
               for device, row in sorted(self.follower.rows.items())]
        uplink, wanted_uplink = e.uplink.status(), self.follower.uplink
        if uplink is not None and wanted_uplink is not None and wanted_uplink.spec is not None:
            out.append(PortStatus(wanted_uplink.spec.device, wanted_uplink.revision, *uplink))
        with self._lock:
            released = dict(self.released)
            if wanted_uplink is not None and wanted_uplink.spec is not None:
                released.pop(wanted_uplink.spec.device, None)
        out += [PortStatus(device, revision, "in_sync", "released") for device, revision in sorted(released.items())
                if device not in self.follower.rows and device not in e.placed]
        return out

    def _reported(self, report: AgentReport) -> None:
        """A release the server took is not reported again."""
        with self._lock:
            for port in report.ports:
                if self.released.get(port.device) == port.revision and port.device not in self.follower.rows:
                    del self.released[port.device]

    # -- the threads -------------------------------------------------------------------------------

    def _enforce(self) -> None:
        s = self.settings
        next_full = time.monotonic() + s.resync_s
        next_retry = time.monotonic() + s.retry_s
        while not self.stop_event.is_set():
            now = time.monotonic()
            until = next_full if not self.enforcer.failing else min(next_full, next_retry)
            devices, full, revision = self.wake.take(until - now)
            if self.stop_event.is_set():
                return
            now = time.monotonic()
            if devices:
                self.enforcer.sync(full=False, only=devices)
                self.passes += 1
            if full or now >= next_full:
                self.enforcer.sync(full=True)
                self.passes += 1
                next_full = now + s.resync_s
            elif self.enforcer.failing and now >= next_retry:
                self.enforcer.sync(full=False)
                self.passes += 1
            if self.enforcer.failing and now >= next_retry:
                next_retry = now + s.retry_s
            if revision is not None:  # every change up to it went through a pass
                self.applied_revision = revision

    def _watch_links(self, links: LinkWatcher) -> None:
        while not self.stop_event.is_set():
            events = links.events(0.5)
            if links.overflows:
                log.warning("link events were lost (the socket overflowed): a full pass follows")
                links.overflows = 0
                self.wake.full()
            wanted = self.follower.rows
            appeared = []
            for event in events:
                name = event.link.name
                if name not in wanted:
                    continue
                if event.what == "appeared":
                    self.absent.discard(name)
                    appeared.append(name)
                else:
                    self.absent.add(name)
                    log.info("device %s is gone (its instance stopped, rebooted or migrated away); its limits "
                             "come back with it", name)
            if appeared:
                log.info("device %s appeared: placing its limits", ", ".join(appeared))
                self.wake.devices(appeared)

    def _domain_event(self, event: DomainEvent) -> None:
        if event.event not in ("started", "resumed"):
            return
        wanted = [d for d in event.devices if d in self.follower.rows]
        log.info("libvirt domain %s %s: %s", event.domain, event.event,
                 f"placing the limits of {', '.join(wanted)}" if wanted else "none of its interfaces is wanted here")
        if wanted:
            self.wake.devices(wanted)

    def _thread(self, name: str, target: Callable[[], None]) -> None:
        def main() -> None:
            try:
                target()
            except BaseException as exc:  # a dead thread must stop the agent, not leave it half-running
                self.error = exc
                if isinstance(exc, VmqosError):
                    log.error("the agent stops: %s: %s", name, exc)
                else:
                    log.exception("the agent stops on an internal error in its %s", name)
                self.stop_event.set()
                self.wake.full()

        thread = threading.Thread(target=main, name=f"vmqos-agent-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _open_libvirt(self) -> None:
        s = self.settings
        if not s.use_libvirt:
            return
        try:
            self.libvirt = LifecycleWatcher(s.libvirt, self._domain_event).start()
            log.info("following libvirt's domain events at %s", self.libvirt.uri)
        except VmqosError as exc:
            level = logging.WARNING if s.libvirt else logging.INFO  # asked for: say it louder
            log.log(level, "libvirt: not followed (%s); taps are still followed through netlink", exc)

    def start(self) -> Agent:
        s = self.settings
        self.enforcer.preflight(f"enforcing QoS on this host (vmqos agent --host {s.host})")
        if s.watch_links:
            self.links = LinkWatcher(s.netns)
            self.links.links()  # what exists now is not news
        cached = self.follower.revision
        log.info("agent of host %s on %s: enforcing the cached revision %s (%d ports) before asking %s",
                 s.host, f"netns {s.netns}" if s.netns else "this namespace",
                 cached if cached is not None else "(none)", len(self.follower.rows), s.server)
        done = self.enforcer.sync(full=True)
        self.applied_revision = cached
        log.info("cache enforced: %d placed, %d released, %d failing", len(done.placed), len(done.released),
                 len(self.enforcer.failing))
        self._open_libvirt()
        if s.metrics_listen:
            from vmqos.monitor.exporter import Exporter  # lazy: prometheus_client

            self.exporter = Exporter(self.store, s.netns, s.metrics_listen).start()
        self._thread("enforcer", self._enforce)
        if self.links is not None:
            links = self.links
            self._thread("links", lambda: self._watch_links(links))
        self._thread("follower", lambda: self.follower.run(self.stop_event))
        self._thread("reporter", lambda: self.reporter.run(self.stop_event))
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the pass under way; every limit stays in place."""
        self.stop_event.set()
        self.wake.full()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            # the follower may sit in a long poll: it holds nothing, and its thread is a daemon
            thread.join(1.0 if thread.name.endswith("follower") else max(0.0, deadline - time.monotonic()))
        if self.libvirt is not None:
            self.libvirt.stop()
        if self.exporter is not None:
            self.exporter.stop()
        if self.links is not None:
            self.links.close()
        if self.monitor is not None:
            self.monitor.close()
        if self.held is not None and not any(t.is_alive() for t in self._threads if t.name.endswith("enforcer")):
            self.held.close()
        log.info("agent of host %s stopped; the limits it placed stay in place", self.settings.host)

    def run(self, stop: threading.Event) -> None:
        """Start, wait for `stop` (or a thread's failure), stop; the failure, if one stopped it, raised."""
        self.start()
        try:
            while not stop.is_set() and not self.stop_event.is_set():
                stop.wait(0.2)
        finally:
            self.stop()
        if self.error is not None:
            if isinstance(self.error, VmqosError):
                raise self.error
            raise VmqosError(f"the agent stopped on an internal error: {type(self.error).__name__}: {self.error}")


def serve(settings: AgentSettings, feed: DesiredFeed, cache: str, stop: threading.Event) -> None:
    """`vmqos agent`: the agent over the cache at URL `cache`, until `stop` is set."""
    with Store(cache) as store:
        Agent(settings, feed, store).run(stop)
