"""`vmqos server --all-in-one`: the QoS of the Neutron ports bound to this host, on this host's kernel.

What the API holds (ports bound to the host, their devices, their effective QoS policies:
`services.neutron_bindings`) becomes each device's policy in the scope's desired state, applied by
the reconciler exactly as `vmqos port set DEV --policy ...` applies it (`services.ports.set_port`),
and released as `vmqos port clear` releases it (`services.ports.clear_port`).

Following the API: every Neutron change raises a counter in the store (`neutron_changes`); the
enforcer reads it a few times a second (one row) and makes a pass when it moved, plus a full pass
(every port read back from the kernel, drift repaired) every RESYNC_S, and a pass for the devices
that failed (one not created yet) every RETRY_S, with one log line per device and error.

Its own: the devices it placed are marked (`neutron_enforced`) before the kernel is touched; it
releases only those, and a device already in the scope's desired state without its mark (a host
file's, or `vmqos port set`'s) is left alone, with one log line. Stopping it removes nothing: a
stopped or restarted server never opens a window without limits (the agent's rule); unbinding,
unsetting the policy or deleting the port does.

It needs root (CAP_NET_ADMIN, and CAP_SYS_ADMIN to enter --netns) for the kernel; the API beside
it needs none, and imports none of this.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial

from vmqos.core.desired.neutron_ports import without_unused_policies
from vmqos.core.desired.ports import PortChange, scope_of
from vmqos.core.errors import VmqosError
from vmqos.core.model.host import HostState, Policy
from vmqos.drivers.privileges import CAP_NET_ADMIN, CAP_SYS_ADMIN, missing, needs_root
from vmqos.reconcile.execute import Reconciler
from vmqos.services.neutron_bindings import PortBinding, host_bindings
from vmqos.services.ports import clear_port, set_port
from vmqos.services.results import ApplyReport
from vmqos.store import Store
from vmqos.store import neutron_ports as records
from vmqos.store.health import DatabaseGone

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often the change counter is read
RETRY_S = 1.0  # how often a device that failed (not there yet) is tried again
RESYNC_S = 30.0  # how often every port is read back from the kernel and repaired
ACTOR = "neutron enforcer"


def _errors(report: ApplyReport) -> str:
    return "; ".join(r.error for r in report.results if r.error) or "failed"


class Enforcer:
    """One host's Neutron ports on its kernel: `sync` makes one pass, `run` follows the API."""

    def __init__(self, store: Store, host: str, netns: str | None) -> None:
        self.store, self.host, self.netns = store, host, netns
        self.scope = scope_of(netns)
        self.placed: dict[str, Policy] = {}  # device -> the policy the kernel was last brought to
        self.failing: dict[str, str] = {}  # device -> its last error, logged once
        self._said: set[str] = set()  # problems already logged (a port left out, a device not ours)

    def preflight(self) -> None:
        """Refuse to start without the privileges or the namespace, as one line, before serving."""
        lacking = missing(CAP_NET_ADMIN, *((CAP_SYS_ADMIN,) if self.netns else ()))
        if lacking:
            raise needs_root("enforcing QoS on this host (vmqos server --all-in-one)", lacking)
        with Reconciler(self.netns):  # a namespace that does not exist is NotFound here
            pass

    def _once(self, message: str, level: int = logging.WARNING) -> None:
        if message not in self._said:
            self._said.add(message)
            log.log(level, "%s", message)

    def _fail(self, device: str, error: str) -> None:
        self.placed.pop(device, None)
        if self.failing.get(device) != error:
            log.warning("device %s: %s (tried again every %g s)", device, error, RETRY_S)
        self.failing[device] = error

    def _succeed(self, device: str, what: str) -> None:
        if self.failing.pop(device, None) is not None:
            log.info("device %s: %s now", device, what)

    def _place(self, binding: PortBinding, state: HostState, marks: dict[str, str]) -> None:
        device, policy = binding.device, binding.policy
        assert policy is not None
        if marks.get(device) != binding.port_id:
            records.mark_enforced(self.store, self.scope, device, binding.port_id)  # the intent, first
        stored = next((p for _, p in state.ports() if p.device == device), None)
        config = not (stored is not None and stored.policy == policy.name and state.policies.get(policy.name) == policy)
        report = set_port(self.store, self.netns, device, PortChange(policy=policy), live=True, config=config)
        if report is not None and not report.ok:
            self._fail(device, _errors(report))
            return
        if self.placed.get(device) != policy:
            log.info("device %s (port %s) holds QoS policy %s, the %s's", device, binding.port_id, binding.policy_id,
                     binding.source)
        self.placed[device] = policy
        self._succeed(device, "limited")

    def _release(self, device: str) -> None:
        report = clear_port(self.store, self.netns, device)
        if not report.ok:
            self._fail(device, _errors(report))
            return
        records.unmark_enforced(self.store, self.scope, device)
        self.placed.pop(device, None)
        self.failing.pop(device, None)
        log.info("device %s released: its port has no QoS policy on host %s any more", device, self.host)

    def sync(self, *, full: bool = True) -> None:
        """One pass; `full` reads every port back from the kernel, else only what changed or failed."""
        bindings = host_bindings(self.store, self.host)
        for problem in bindings.problems:
            self._once(problem)
        wanted = {device: b for device, b in bindings.ports.items() if b.limits}
        with self.store.writer(self.scope):  # the operator's `port set` waits for the pass, not the other way
            marks = records.enforced(self.store, self.scope)
            for device in sorted(set(marks) - set(wanted)):
                self._guard(device, partial(self._release, device))
            state = self.store.load(self.scope)
            stored = {port.device for _, port in state.ports()}
            for device, binding in sorted(wanted.items()):
                if device in stored and device not in marks:
                    self._once(f"device {device} of port {binding.port_id} is managed by a host file or `vmqos "
                               "port set`; vmqos server leaves it alone (`vmqos port clear` hands it over)")
                    continue
                if full or device in self.failing or self.placed.get(device) != binding.policy:
                    self._guard(device, partial(self._place, binding, state, marks))
            state = self.store.load(self.scope)
            pruned = without_unused_policies(state)
            if pruned is not state:
                self.store.save(self.scope, pruned, actor=ACTOR, summary="Neutron QoS policies no port uses")

    def _guard(self, device: str, step: Callable[[], None]) -> None:
        """A device's step; its failure is the device's (logged once), a lost database everyone's."""
        try:
            step()
        except DatabaseGone:
            raise
        except VmqosError as exc:
            self._fail(device, str(exc))

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
            if full or counter != seen or (self.failing and now >= next_retry):
                self.sync(full=full)  # the counter was read first: a change during the pass makes another
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
        self.enforcer = Enforcer(self.store, host, netns)
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
