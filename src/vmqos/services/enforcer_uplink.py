"""The host's uplink on the kernel, for an enforcer whose source wants one (the agent; issue 16).

The uplink's plan (`core.plan.uplink`, through `core.plan.host.plan_host`) joins the ports' whenever
the scope's desired state names an uplink: so holding the server's uplink is putting it in the
scope's state (`HostState.uplink`) and letting the reconciler do the rest, as a host file's uplink
is applied. That path is the host file's: replace-only live changes, and `check`, `apply --prune`
and the orphan search see the uplink as they see a port.

What this adds for a source that changes:
- ownership: the uplink's device is marked in `neutron_enforced` with the port id UPLINK_MARK before
  the kernel is touched, as the enforcer marks its ports; an uplink in the state without that mark
  is a host file's (`vmqos apply`), and is left alone (said in the uplink's status);
- refusal: guarantees that add up to more than the capacity, without `oversubscribe` (or a port
  with a guarantee towards the instance and no address), make the uplink's plan fail. Then the
  ports' own limits are still placed, the uplink is NOT planned (its tree, if one was placed, is
  removed: ports lose their marks, so an old tree would classify nothing), and the reason, one line
  naming the ports and their rates, is the uplink's status in the agent's report;
- a change of the uplink (set, changed, refused, removed) places every port again (their nft mark
  depends on it), then reconciles the uplink alone, clearing the old device's tree when the device
  changed or the uplink went.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from vmqos.core.desired.ports import PortChange, changed_port
from vmqos.core.errors import VmqosError
from vmqos.core.model.host import HostState, UplinkSpec
from vmqos.core.plan.host import plan_host
from vmqos.services.ports import reconcile_ports
from vmqos.store import neutron_ports as records

if TYPE_CHECKING:
    from vmqos.services.enforcer import Enforcer, PassResult, Wanted, WantedUplink

log = logging.getLogger(__name__)

UPLINK_MARK = "uplink"  # the port id of an uplink device's mark in neutron_enforced


def split_marks(marks: dict[str, str]) -> tuple[dict[str, str], set[str]]:
    """(the ports' marks, the uplink devices marked)."""
    return ({d: pid for d, pid in marks.items() if pid != UPLINK_MARK},
            {d for d, pid in marks.items() if pid == UPLINK_MARK})


def refusal(state: HostState) -> str | None:
    """Why the uplink of `state` cannot be planned (pure), None when it can."""
    if state.uplink is None:
        return None
    try:
        plan_host(state, [], uplink=True)
    except VmqosError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class UplinkStep:
    """What a pass does about the uplink: the state it places ports in, whether the uplink changed, and
    the device whose tree must go (an uplink removed, refused, or moved to another device)."""

    state: HostState
    changed: bool = False
    clear: str | None = None


class UplinkHolder:
    """The uplink part of one Enforcer: what is placed, the revision wanted, why it is refused."""

    def __init__(self, enforcer: Enforcer) -> None:
        self.enforcer = enforcer
        self.wanted: UplinkSpec | None = None
        self.revision: int | None = None
        self.placed: UplinkSpec | None = None  # the uplink the kernel was last brought to
        self.error: str | None = None  # why the wanted uplink is not placed (refused, failed, foreign)
        self.managed = False  # whether the source says anything of an uplink

    def decide(self, state: HostState, wanted: dict[str, Wanted], want: WantedUplink | None,
               marks: set[str]) -> UplinkStep:
        """The state with the uplink as it must be now; its intent (mark, stored state) recorded first."""
        if want is None:
            return UplinkStep(state)
        e = self.enforcer
        self.managed, self.wanted, self.revision = True, want.spec, want.revision
        ours = state.uplink if state.uplink is not None and state.uplink.device in marks else None
        if state.uplink is not None and ours is None:
            self.error = (f"uplink {state.uplink.device} is managed by a host file (`vmqos apply`) in this scope; the "
                          "server's uplink is not placed (remove the host file's uplink to hand it over)")
            e._once(self.error)
            return UplinkStep(state)
        effective, self.error = want.spec, None
        if want.spec is not None:
            future = state
            for w in wanted.values():
                if w.device not in e.foreign:
                    future, _ = changed_port(future, w.device, PortChange(policy=w.policy, addresses=w.addresses))
            reason = refusal(replace(future, uplink=want.spec))
            if reason is not None:
                effective, self.error = None, f"uplink refused: {reason}"
                e._once(f"{self.error} (the ports' own limits are placed)")
        if effective == ours:
            return UplinkStep(state)
        if effective is not None:
            records.mark_enforced(e.store, e.scope, effective.device, UPLINK_MARK)  # the intent, first
        new = replace(state, uplink=effective)
        e.store.save(e.scope, new, actor=e.actor, summary="uplink " + (
            f"{effective.device} {effective.capacity_bps} bit/s" if effective else "removed"), base=state)
        clear = ours.device if ours is not None and (effective is None or effective.device != ours.device) else None
        log.info("uplink: %s", f"placing {effective.device} ({effective.capacity_bps} bit/s)" if effective
                 else f"removing the tree of {clear}" if clear else "none")
        return UplinkStep(new, True, clear)

    def place(self, step: UplinkStep, done: PassResult) -> None:
        """Reconcile the uplink alone (its tree read back and repaired), and clear the old device's."""
        e = self.enforcer
        state = e.store.load(e.scope)  # as the ports' pass left it
        clear = [step.clear] if step.clear else []
        try:
            report = reconcile_ports(e.store, e.netns, state, [], clear=clear, kernel=e.kernel)
        except VmqosError as exc:
            self.error, self.placed = f"uplink: {exc}", None
            e._once(self.error)
            return
        errors = {r.port: r.error for r in report.results if r.error}
        up = state.uplink
        if up is not None and up.device in errors:
            self.error, self.placed = f"uplink {up.device}: {errors[up.device]}", None
            e._once(self.error)
        elif up is not None:
            self.placed = up
        else:
            self.placed = None
        if step.clear and step.clear not in errors:
            records.unmark_enforced(e.store, e.scope, step.clear)
            done.released.append(step.clear)

    def status(self) -> tuple[str, str] | None:
        """(status, message) of the wanted uplink for the agent's report; None when there is none."""
        if not self.managed or self.wanted is None:
            return None
        if self.error:
            return "error", self.error
        if self.placed == self.wanted:
            return "in_sync", ""
        return "pending", ""
