"""`vmqos server --all-in-one`: the QoS of the Neutron ports bound to this host, on this host's kernel.

What the API holds (ports bound to the host, their devices, their effective QoS policies:
`services.neutron_bindings`) is the source of a `services.enforcer.Enforcer`, which places each
device's policy in the scope's desired state and on the kernel, and releases it when the port no
longer holds one (see there: marks, ports left alone, batched passes).

Following the API: every Neutron change raises a counter in the store (`neutron_changes`); the
loop here reads it a few times a second (one row) and makes a pass when it moved, plus a full pass
(every port read back from the kernel, drift repaired) every RESYNC_S, and a pass for the devices
that failed (one not created yet) every RETRY_S, with one log line per device and error. Stopping
it removes nothing: a stopped or restarted server never opens a window without limits (the agent's
rule); unbinding, unsetting the policy or deleting the port does.

It needs root (CAP_NET_ADMIN, and CAP_SYS_ADMIN to enter --netns) for the kernel; the API beside
it needs none, and imports none of this.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from vmqos.core.desired.neutron_ports import POLICY_PREFIX
from vmqos.core.errors import VmqosError
from vmqos.services.enforcer import Enforcer, Wanted, WantedPorts
from vmqos.services.neutron_bindings import host_bindings
from vmqos.store import Store
from vmqos.store import neutron_ports as records

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often the change counter is read
RETRY_S = 1.0  # how often a device that failed (not there yet) is tried again
RESYNC_S = 30.0  # how often every port is read back from the kernel and repaired
ACTOR = "neutron enforcer"


def neutron_wanted(store: Store, host: str) -> WantedPorts:
    """The devices of the ports bound to `host` that hold a limit, with their effective policies."""
    bindings = host_bindings(store, host)
    wanted = {device: Wanted(device, b.port_id, b.policy, f"QoS policy {b.policy_id}, the {b.source}'s")
              for device, b in bindings.ports.items() if b.limits and b.policy is not None}
    return WantedPorts(wanted, bindings.problems)


class NeutronEnforcer:
    """One host's Neutron ports on its kernel: `enforcer.sync` makes one pass, `run` follows the API."""

    def __init__(self, store: Store, host: str, netns: str | None) -> None:
        self.store, self.host, self.netns = store, host, netns
        self.enforcer = Enforcer(store, netns, lambda: neutron_wanted(store, host), actor=ACTOR,
                                 prefix=POLICY_PREFIX, retry_s=RETRY_S)

    def preflight(self) -> None:
        """Refuse to start without the privileges or the namespace, as one line, before serving."""
        self.enforcer.preflight("enforcing QoS on this host (vmqos server --all-in-one)")

    def run(self, stop: threading.Event) -> None:
        """Follow the API until `stop` is set: a pass when the counter moved, failed devices again every
        RETRY_S, everything every RESYNC_S. The first pass is a full one."""
        log.info("enforcing the QoS of the Neutron ports bound to host %s on %s", self.host,
                 f"netns {self.netns}" if self.netns else "this network namespace")
        seen: int | None = None
        next_full = next_retry = 0.0
        while not stop.is_set():
            self.store.check_file()
            counter = records.changes(self.store)
            now = time.monotonic()
            full = now >= next_full
            if full or counter != seen or (self.enforcer.failing and now >= next_retry):
                self.enforcer.sync(full=full)  # the counter was read first: a change during the pass makes another
                seen, next_retry = counter, now + RETRY_S
                next_full = now + RESYNC_S if full else next_full
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
