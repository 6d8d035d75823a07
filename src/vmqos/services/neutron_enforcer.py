"""`vmqos server --all-in-one`: this host's desired rows on this host's kernel, as its agent would hold them.

The server keeps every host's desired state as revisioned rows (`services.fleet_desired`): the
Neutron ports bound to the host (their devices and effective QoS policies), the native ports set
with `PUT /v1/hosts/{host}/ports/{device}` (inline limits, or a typed vmqos policy by `policy_id`,
re-derived when that policy changes: `services.policy_ports`), and the host's uplink
(`services.fleet_uplinks`). The all-in-one enforcer follows its own host's rows in-process, as an
agent for that host follows them over HTTP: the same answer (`fleet_desired.snapshot`, what
`GET /v1/hosts/{host}/desired` serves), read into the agent's values (`core.fleet.desired`) and
turned into what to hold by the agent's own rule (`services.agent_cache.wanted`), then a
`services.enforcer.Enforcer` places each device's policy and the uplink in the scope's desired
state and on the kernel, and releases what is no longer wanted (see there: marks, ports left alone,
batched passes). No decision is made here that an agent would make otherwise.

Following the rows: every write of a desired row (or of an uplink) takes the next global revision;
the loop here reads that counter a few times a second (one row) and makes a pass when it moved,
plus a full pass (every port read back from the kernel, drift repaired) every RESYNC_S, and a pass
for the devices that failed (one not created yet) every RETRY_S, with one log line per device and
error. Stopping it removes nothing: a stopped or restarted server never opens a window without
limits (the agent's rule); a row that becomes a tombstone (the policy unset, the port unbound or
deleted, the native port cleared) does.

It needs root (CAP_NET_ADMIN, and CAP_SYS_ADMIN to enter --netns) for the kernel; the API beside
it needs none, and imports none of this.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from vmqos.core.desired.neutron_ports import POLICY_PREFIX as OLD_PREFIX
from vmqos.core.desired.neutron_ports import without_unused_policies
from vmqos.core.errors import VmqosError
from vmqos.core.fleet.desired import POLICY_PREFIX, page_from_wire, uplink_after
from vmqos.services import agent_cache, fleet_desired
from vmqos.services.enforcer import Enforcer, WantedPorts
from vmqos.services.fleet_wire import check_host
from vmqos.store import Store
from vmqos.store import fleet as desired_records

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often the revision counter is read
RETRY_S = 1.0  # how often a device that failed (not there yet) is tried again
RESYNC_S = 30.0  # how often every port is read back from the kernel and repaired
ACTOR = "neutron enforcer"  # the name the scope's history has always given it: kept
SOURCE = "this server"  # how the log lines name where a row comes from ("revision 7 of this server (native)")


def host_wanted(store: Store, host: str) -> WantedPorts:
    """What an agent for `host` would hold now: its live rows and its uplink, read as the agent reads
    `/v1/hosts/{host}/desired` (policies named `fleet:<device>`, the uplink None when it has none)."""
    page = page_from_wire(fleet_desired.snapshot(store, host).model_dump(mode="json"), full=True)
    uplink, _changed = uplink_after(None, page)
    return agent_cache.wanted({p.device: p for p in page.ports}, SOURCE, uplink)


class NeutronEnforcer:
    """One host's desired rows on its kernel: `enforcer.sync` makes one pass, `run` follows the rows.
    (Named for what it first followed; it now follows every row an agent for the host follows.)"""

    def __init__(self, store: Store, host: str, netns: str | None) -> None:
        self.store, self.host, self.netns = store, host, netns
        self.enforcer = Enforcer(store, netns, lambda: host_wanted(store, host), actor=ACTOR,
                                 prefix=POLICY_PREFIX, retry_s=RETRY_S)

    def preflight(self) -> None:
        """Refuse to start without the privileges or the namespace, or with a host name no row can have
        (`--host`), as one line, before serving."""
        check_host(self.host)
        self.enforcer.preflight("enforcing QoS on this host (vmqos server --all-in-one)")

    def forget_old_policies(self) -> None:
        """The scope's `neutron:<id>` policies that no port uses any more: an earlier all-in-one named the
        Neutron policies so; the first full pass moved its ports to `fleet:<device>` (same limits)."""
        scope = self.enforcer.scope
        with self.store.writer(scope):
            state = self.store.load(scope)
            pruned = without_unused_policies(state, OLD_PREFIX)
            if pruned is not state:
                self.store.save(scope, pruned, actor=ACTOR, summary="policies of an earlier all-in-one", base=state)

    def run(self, stop: threading.Event) -> None:
        """Follow the rows until `stop` is set: a pass when the revision moved, failed devices again every
        RETRY_S, everything every RESYNC_S. The first pass is a full one."""
        log.info("enforcing the desired rows of host %s (Neutron ports, native ports, its uplink) on %s", self.host,
                 f"netns {self.netns}" if self.netns else "this network namespace")
        seen: int | None = None
        next_full = next_retry = 0.0
        first = True
        while not stop.is_set():
            self.store.check_file()
            counter = desired_records.counters(self.store).revision
            now = time.monotonic()
            full = now >= next_full
            if full or counter != seen or (self.enforcer.failing and now >= next_retry):
                self.enforcer.sync(full=full)  # the counter was read first: a change during the pass makes another
                seen, next_retry = counter, now + RETRY_S
                next_full = now + RESYNC_S if full else next_full
                if first:
                    self.forget_old_policies()
                    first = False
            stop.wait(POLL_S)


class EnforcerThread:
    """The enforcer beside the API server: a thread of the same process, stopped with it.

    `on_failure` is called (from the thread) when it stops on an error, so that the server stops too
    rather than serving a state nobody enforces; `error` says why."""

    def __init__(self, url: str | None, host: str, netns: str | None,
                 on_failure: Callable[[], None] = lambda: None) -> None:
        self.store = Store(url)
        self.enforcer = NeutronEnforcer(self.store, host, netns)
        self.on_failure = on_failure
        self.error: VmqosError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="vmqos-enforcer", daemon=True)

    def start(self) -> None:
        try:
            self.enforcer.preflight()
        except BaseException:
            self.store.close()
            raise
        self._thread.start()

    def _main(self) -> None:
        try:
            self.enforcer.run(self._stop)
        except VmqosError as exc:
            self.error = exc
            log.error("the enforcer stopped: %s", exc)
            self.on_failure()
        except Exception as exc:  # a bug: the server must not go on serving what nobody enforces
            self.error = VmqosError(f"the enforcer stopped on an internal error: {type(exc).__name__}: {exc}")
            log.exception("the enforcer stopped on an internal error")
            self.on_failure()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the pass under way (a pass is bounded by the reconciler's tool timeouts)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self.store.close()
            log.info("the enforcer stopped; the limits it placed stay in place")
