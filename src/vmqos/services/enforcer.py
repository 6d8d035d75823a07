"""One host's wanted ports on its kernel, whatever says what is wanted: "device -> (port id, Policy)".

Two sources feed it, the same rows either way: `vmqos server --all-in-one` (its host's desired rows
and uplink in the server's own store, read in-process: `services.neutron_enforcer`) and `vmqos
agent` (the rows the server sent, kept in the agent's cache: `vmqos.agent`). Either way a wanted device's policy goes into the scope's desired
state and onto the kernel through the reconciler, as `vmqos port set DEV --policy ...` would put
it (`services.ports`), and a device that is no longer wanted is released as `vmqos port clear`
releases it.

Its own: the devices it placed are marked (`neutron_enforced`) before the kernel is touched; it
releases only those, and a device already in the scope's desired state without its mark (a host
file's, or `vmqos port set`'s) is left alone, with one log line. Nothing here ever removes a limit
because it stopped, started or lost its source: only a source that stops wanting a device does.

A pass places many devices with one reconciler pass (one `tc -batch`, one nft transaction), not one
per device: a resync of a host's thousand ports is one read-back and one write, and a device that
fails (not created yet, drift in its way) is rolled back alone and kept out of the stored state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import partial

from vmqos.core.desired.neutron_ports import without_unused_policies
from vmqos.core.desired.ports import PortChange, _find_port, changed_port, scope_of, without_port
from vmqos.core.errors import VmqosError
from vmqos.core.model.host import HostState, Policy, UplinkSpec
from vmqos.drivers.privileges import CAP_NET_ADMIN, CAP_SYS_ADMIN, missing, needs_root
from vmqos.reconcile.decide import missing_device
from vmqos.reconcile.execute import Reconciler
from vmqos.services.enforcer_uplink import UplinkHolder, split_marks
from vmqos.services.ports import Kernel, reconcile_ports
from vmqos.store import Store
from vmqos.store import neutron_ports as records
from vmqos.store.health import DatabaseGone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wanted:
    """A device the kernel must hold `policy` on, for a port (`port_id`, "" when it has no Neutron id);
    `origin` says where the policy comes from, for the log line."""

    device: str
    port_id: str
    policy: Policy
    origin: str = ""
    addresses: tuple[str, ...] = ()  # the instance's addresses, by which the host's uplink finds its traffic


@dataclass(frozen=True)
class WantedUplink:
    """The host's uplink a source wants (`spec` None: none), as of `revision` (services.enforcer_uplink)."""

    spec: UplinkSpec | None
    revision: int | None = None


@dataclass(frozen=True)
class WantedPorts:
    """What a source wants now, by device, and the problems it found (each logged once). `uplink` None:
    the source says nothing of the host's uplink, and it is left as it is."""

    ports: dict[str, Wanted]
    problems: tuple[str, ...] = ()
    uplink: WantedUplink | None = None


@dataclass
class PassResult:
    """What one pass did: the devices placed, released, repaired (drift found on one already placed)."""

    placed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    repaired: dict[str, int] = field(default_factory=dict)  # device -> operations that repaired it
    failed: dict[str, str] = field(default_factory=dict)
    saved: bool = False  # the scope's desired state changed


class Enforcer:
    """Brings the kernel of `netns` to what `source` wants: `sync` makes one pass.

    `actor` names it in the scope's history and `prefix` its policies' names in the scope
    (those no port uses any more are removed after a pass). `kernel` is the reconciler of a
    namespace (the fake one in tests; `privileged`, by default whether it is the real one, says
    whether `preflight` asks for root's capabilities)."""

    def __init__(self, store: Store, netns: str | None, source: Callable[[], WantedPorts], *, actor: str,
                 prefix: str, kernel: Kernel | None = None, retry_s: float = 1.0,
                 privileged: bool | None = None) -> None:
        self.store, self.netns, self.source = store, netns, source
        self.privileged = kernel is None if privileged is None else privileged  # the fake kernel needs none
        self.actor, self.prefix, self.kernel, self.retry_s = actor, prefix, kernel, retry_s
        self.scope = scope_of(netns)
        self.placed: dict[str, Policy] = {}  # device -> the policy the kernel was last brought to
        self.failing: dict[str, str] = {}  # device -> its last error, logged once
        self.foreign: set[str] = set()  # wanted devices that a host file or `vmqos port set` manages
        self._said: set[str] = set()  # problems already logged (a port left out, a device not ours)
        self.addresses: dict[str, tuple[str, ...]] = {}  # device -> the addresses placed with its policy
        self.uplink = UplinkHolder(self)  # the host's uplink, when the source wants one (services.enforcer_uplink)

    def preflight(self, what: str) -> None:
        """Refuse to start without the privileges or the namespace, as one line, before anything runs."""
        lacking = missing(CAP_NET_ADMIN, *((CAP_SYS_ADMIN,) if self.netns else ()))
        if lacking and self.privileged:
            raise needs_root(what, lacking)
        with (self.kernel or Reconciler)(self.netns):  # a namespace that does not exist is NotFound here
            pass

    def is_missing(self, device: str) -> bool:
        """Whether the device's last failure was that it does not exist (yet)."""
        return self.failing.get(device, "").startswith(missing_device(device, self.netns))

    def _once(self, message: str, level: int = logging.WARNING) -> None:
        if message not in self._said:
            self._said.add(message)
            log.log(level, "%s", message)

    def _fail(self, device: str, error: str, done: PassResult) -> None:
        self.placed.pop(device, None)
        if self.failing.get(device) != error:
            log.warning("device %s: %s (tried again every %g s)", device, error, self.retry_s)
        self.failing[device] = error
        done.failed[device] = error

    def _place(self, todo: list[Wanted], state: HostState, marks: dict[str, str], done: PassResult,
               resync: bool) -> None:
        """One reconciler pass for every device of `todo`; the stored state gains the ones that took.
        `resync`: a periodic read-back, where changes to a device already placed are drift repaired."""
        for want in todo:
            if marks.get(want.device) != want.port_id:
                records.mark_enforced(self.store, self.scope, want.device, want.port_id)  # the intent, first
        changed = state
        for want in todo:
            changed, _ = changed_port(changed, want.device, PortChange(policy=want.policy, addresses=want.addresses))
        report = reconcile_ports(self.store, self.netns, changed, [w.device for w in todo], kernel=self.kernel)
        results = {r.port: r for r in report.results}
        kept = state
        for want in todo:
            result = results.get(want.device)
            if result is not None and result.error:
                self._fail(want.device, result.error, done)
                continue
            kept, _ = changed_port(kept, want.device, PortChange(policy=want.policy, addresses=want.addresses))
            writes = result.writes if result is not None else 0
            if self.placed.get(want.device) != want.policy:
                log.info("device %s (port %s) holds %s", want.device, want.port_id or "-", want.origin or
                         f"policy {want.policy.name}")
            elif writes and resync and want.device not in self.failing:
                log.warning("device %s: drift repaired (%d changes brought it back to its policy)", want.device,
                            writes)
                done.repaired[want.device] = writes
            elif writes:
                log.info("device %s: its limits placed again (%d changes)", want.device, writes)
            self.placed[want.device] = want.policy
            self.addresses[want.device] = want.addresses
            done.placed.append(want.device)
            if self.failing.pop(want.device, None) is not None:
                log.info("device %s: limited now", want.device)
        if kept != state:
            self.store.save(self.scope, kept, actor=self.actor, summary=f"{len(done.placed)} ports", base=state)
            done.saved = True

    def _release(self, devices: list[str], state: HostState, done: PassResult) -> None:
        """One reconciler pass that clears every device of `devices`; the stored state loses those that
        were cleared (as `vmqos port clear` does, for many at once)."""
        report = reconcile_ports(self.store, self.netns, state, [], clear=devices, kernel=self.kernel)
        results = {r.port: r for r in report.results}
        kept = state
        for device in devices:
            result = results.get(device)
            if result is not None and result.error:
                self._fail(device, result.error, done)
                continue
            kept = without_port(kept, device)
            records.unmark_enforced(self.store, self.scope, device)
            self.placed.pop(device, None)
            self.failing.pop(device, None)
            done.released.append(device)
            log.info("device %s released: nothing is wanted on it any more", device)
        if kept != state:
            self.store.save(self.scope, kept, actor=self.actor, summary=f"released {len(done.released)} ports",
                            base=state)
            done.saved = True

    def sync(self, *, full: bool = True, only: Collection[str] | None = None) -> PassResult:
        """One pass. `full` reads every wanted device back from the kernel (drift repaired); else only
        what changed or failed is placed. `only`: these devices alone, read back whatever the cache
        says (a device that just appeared: its old objects went with the old device)."""
        wanted_now = self.source()
        for problem in wanted_now.problems:
            self._once(problem)
        wanted = wanted_now.ports
        done = PassResult()
        with self.store.writer(self.scope):  # the operator's `port set` waits for the pass, not the other way
            marks, uplink_marks = split_marks(records.enforced(self.store, self.scope))
            gone = sorted(set(marks) - set(wanted) if only is None else (set(marks) - set(wanted)) & set(only))
            state = self.store.load(self.scope)
            if gone:
                self._guard(gone, partial(self._release, gone, state, done), done)
                state = self.store.load(self.scope)
            step = self.uplink.decide(state, wanted, wanted_now.uplink, uplink_marks)
            state = step.state
            if step.changed:  # every port's mark follows the uplink: all of them are placed again
                only = None
            todo: list[Wanted] = []
            for device, want in sorted(wanted.items()):
                if only is not None and device not in only:
                    continue
                if device not in marks and _find_port(state, device) is not None:
                    self.foreign.add(device)
                    self._once(f"device {device} of port {want.port_id or '-'} is managed by a host file or "
                               "`vmqos port set`; vmqos leaves it alone (`vmqos port clear` hands it over)")
                    continue
                self.foreign.discard(device)
                if (full or only is not None or step.changed or device in self.failing
                        or self.placed.get(device) != want.policy or marks.get(device) != want.port_id
                        or self.addresses.get(device, ()) != want.addresses):
                    todo.append(want)
            if todo:
                self._guard([w.device for w in todo],
                            partial(self._place, todo, state, marks, done, full and only is None and not step.changed),
                            done)
            if wanted_now.uplink is not None and (step.changed or step.clear or (full and state.uplink is not None)):
                self.uplink.place(step, done)
            if done.released or done.saved:  # a device that came back as it was changes no policy
                state = self.store.load(self.scope)
                pruned = without_unused_policies(state, self.prefix)
                if pruned is not state:
                    self.store.save(self.scope, pruned, actor=self.actor, summary="policies no port uses",
                                    base=state)
        for device in set(self.foreign) - set(wanted):
            self.foreign.discard(device)
        return done

    def _guard(self, devices: list[str], step: Callable[[], None], done: PassResult) -> None:
        """A step's failure is its devices' (logged once), a lost database everyone's."""
        try:
            step()
        except DatabaseGone:
            raise
        except VmqosError as exc:
            for device in devices:
                self._fail(device, str(exc), done)
