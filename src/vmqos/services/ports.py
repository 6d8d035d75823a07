"""What the port, apply and check commands do, as functions the CLI, the demo and the tests share.

The desired state lives in the store per network namespace (the scope); every change goes
through the reconciler, so the CLI never writes to the kernel by itself.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Sequence

from vmqos.core.analysis.flows import flows
from vmqos.core.desired.effective import QosSource
from vmqos.core.desired.ports import (
    PortChange,
    _find_port,
    changed_port,
    empty_plan,
    scope_of,
    without_port,
)
from vmqos.core.errors import InvalidValue, NotFound
from vmqos.core.model.host import EgressMode, HostState
from vmqos.core.plan.diff import diff
from vmqos.core.plan.host import plan_host
from vmqos.core.plan.nft_objects import NftSet
from vmqos.core.plan.orphans import Orphans, find_orphans
from vmqos.core.plan.planner import PortPlan
from vmqos.reconcile.execute import Progress, Reconciler
from vmqos.services.results import ApplyReport, PortDesired, PortDrift, PortKernel, PortShow
from vmqos.store import Store
from vmqos.store.monitor import quarantines

PENDING = "pending"  # the `applied` row of a port whose first apply began (never a plan's fingerprint)
Kernel = Callable[[str | None], Reconciler]  # netns -> the reconciler of its kernel: a test gives the fake one

# -- kernel work ---------------------------------------------------------------------------------

def desired_plans(store: Store, scope: str, state: HostState, ports: Iterable[str] | None = None, *,
                  uplink: bool = True) -> dict[str, PortPlan]:
    """The plans the kernel must hold: the desired state, and the quarantines in force.

    A quarantined port is policed (dropped at its ingress hook, before any queue) whatever its own
    egress mode: a flood costs the least CPU there, and in a namespace lab a queue would push back
    on the flooding socket and hide the flood from the detectors (kernel-lab-facts §1).

    With `uplink` (the default) and an uplink in the state, its plan is one of them, under its device's
    name (`core.plan.uplink`): it is reconciled, checked and pruned as a port is."""
    found = quarantines(store, scope)
    sources = {dev: QosSource(f"quarantine ({q.reason})", q.qos) for dev, q in found.items()}
    return plan_host(state, ports, sources, {dev: EgressMode.POLICE for dev in found}, uplink=uplink)


class WatchedPlans:
    """A scope's plans for the readers that ask every second (the monitor, top, the exporter).

    They are planned again only when the desired state (its last revision) or the quarantines changed:
    loading and planning 1,000 ports costs more than sampling them. The same mapping comes back
    while nothing changed, which lets the sampler keep what it derived from it."""

    def __init__(self, store: Store, scope: str) -> None:
        self.store, self.scope = store, scope
        self._cached: tuple[Any, dict[str, PortPlan], dict[str, str]] | None = None

    def current(self) -> tuple[dict[str, PortPlan], dict[str, str]]:
        """(port -> plan, port -> instance)."""
        last = self.store.revisions(self.scope, limit=1)  # every change of the desired state makes one
        key = (last[0].id if last else 0, quarantines(self.store, self.scope))
        if self._cached is None or self._cached[0] != key:
            state = self.store.load(self.scope)
            instances = {port.device: inst.name for inst, port in state.ports()}
            # the samplers read ports; the uplink's tree is the host's, not an instance's
            self._cached = key, desired_plans(self.store, self.scope, state, uplink=False), instances
        return self._cached[1], self._cached[2]


def reconcile_ports(store: Store, netns: str | None, state: HostState, ports: list[str] | None = None, *,
                    clear: Sequence[str] = (), force: bool = False, verify: bool = True,
                    dry_run: bool = False, progress: Progress | None = None,
                    kernel: Kernel | None = None) -> ApplyReport:
    """Bring `ports` of `state` (all: None) and the `clear` ones to the kernel, as the scope's writer.

    Before the kernel is touched, a port vmqos never applied is recorded as pending (the intent):
    a crash in the middle leaves a row that `check` and `apply --prune` find, never an object that
    belongs to nobody. Its fingerprint replaces the row once the port is applied. `progress` hears
    the phases of a long pass: planning here, the kernel's in the reconciler."""
    scope = scope_of(netns)
    with store.writer(scope):
        if progress:
            progress("planning", 0, (len(state.ports()) if ports is None else len(ports)) + len(clear))
        plans = desired_plans(store, scope, state, ports)
        for port in clear:
            plans[port] = empty_plan(port)
        if progress:
            progress("planning", len(plans), len(plans))
        notes = [n for plan in plans.values() for n in plan.notes]
        applied = store.applied(scope)
        pending = [] if dry_run else [p for p, plan in plans.items() if plan.objects and p not in applied]
        store.record_applied_many(scope, dict.fromkeys(pending, PENDING))
        with (kernel or Reconciler)(netns) as rec:  # looked up now: a test may swap the module's Reconciler
            results, record = rec.reconcile(plans, applied=applied, force=force, verify=verify, dry_run=dry_run,
                                            progress=progress)
        failed = {r.port for r in results if r.error and (r.rolled_back or not r.ops)}
        record.update({p: None for p in pending if p in failed})  # the kernel holds what it held before
        if record:
            store.record_applied_many(scope, record)
    return ApplyReport(results, notes)


def set_port(store: Store, netns: str | None, device: str, change: PortChange, *, live: bool = True,
             config: bool = True, force: bool = False, kernel: Kernel | None = None) -> ApplyReport | None:
    if not live and not config:
        raise InvalidValue("--live/--config", "neither", "give --live, --config or neither (both)")
    scope = scope_of(netns)
    with store.writer(scope):  # load, kernel and save as one writer: no other change slips between
        state = store.load(scope)
        new_state, _ = changed_port(state, device, change)
        report = None
        if live:
            report = reconcile_ports(store, netns, new_state, [device], force=force, kernel=kernel)
            if not report.ok:
                return report  # the port was rolled back; the stored state stays as it was
        if config:
            store.save(scope, new_state, actor="port set", summary=f"port {device}", base=state)
        return report


def clear_port(store: Store, netns: str | None, device: str, *, force: bool = False,
               kernel: Kernel | None = None) -> ApplyReport:
    scope = scope_of(netns)
    with store.writer(scope):
        state = store.load(scope)
        rest = without_port(state, device)  # an uplink's classes are planned without the port
        report = reconcile_ports(store, netns, rest, [], clear=[device], force=force, kernel=kernel)
        if report.ok:
            store.save(scope, rest, actor="port clear", summary=f"port {device}", base=state)
        return report


def apply_host(store: Store, netns: str | None, state: HostState, *, prune: bool = False, force: bool = False,
               dry_run: bool = False, progress: Progress | None = None) -> ApplyReport:
    """Make the kernel match `state` and store it; `progress` hears each phase (a front end's bar)."""
    scope = scope_of(netns)
    wanted = {port.device for _, port in state.ports()} | ({state.uplink.device} if state.uplink else set())
    with store.writer(scope):
        applied = store.applied(scope)
        stale = [p for p in applied if p not in wanted] if prune else []
        orphans = Orphans()
        if prune:  # and what a crash left of vmqos that no record names
            with Reconciler(netns) as rec:
                orphans = find_orphans(rec.inventory(), wanted | set(applied) | set(quarantines(store, scope)))
            stale += orphans.ports
        report = reconcile_ports(store, netns, state, None, clear=stale, force=force, dry_run=dry_run,
                                 progress=progress)
        if orphans.loose():
            with Reconciler(netns) as rec:
                report = ApplyReport(report.results + rec.remove_loose(orphans, dry_run=dry_run), report.notes)
        if not dry_run:
            if progress:
                progress("saving", 0, len(wanted))
            store.save(scope, state, actor="apply",
                       summary=f"{len(wanted)} ports" + (f", pruned {len(stale)}" if stale else ""))
            if progress:
                progress("saving", len(wanted), len(wanted))
        return report


def check_host(store: Store, netns: str | None) -> list[PortDrift]:
    """Compare the kernel with the desired state; nothing is written."""
    scope = scope_of(netns)
    state = store.load(scope)
    plans = desired_plans(store, scope, state)
    for port in store.applied(scope):
        plans.setdefault(port, empty_plan(port))  # applied before, no longer desired: must be clean
    out: list[PortDrift] = []
    with Reconciler(netns) as rec:
        orphans = find_orphans(rec.inventory(), plans)  # what a crash left that no record names
        for port in orphans.ports:
            plans[port] = empty_plan(port)
        seen = rec.observe(sorted(plans))
        for port in sorted(plans):
            ops = [] if port in seen.missing else diff(plans[port].objects, seen.objects[port])
            hooks = [h for h in (seen.nft.foreign if seen.nft else []) if h.device == port]
            out.append(PortDrift(port, missing_device=port in seen.missing and bool(plans[port].objects),
                                 operations=[op.describe() for op in ops], foreign_hooks=hooks))
    return out + [PortDrift(name, missing_device=False, operations=[text], foreign_hooks=[])
                  for name, text in orphans.loose()]


# -- port show -----------------------------------------------------------------------------------

def show_port(store: Store, netns: str | None, device: str) -> PortShow:
    """A managed port's desired limits, what the kernel holds, and its counters; nothing is written."""
    scope = scope_of(netns)
    state = store.load(scope)
    found = _find_port(state, device)
    applied = store.applied(scope)
    if found is None and device not in applied:
        raise NotFound(f"port {device} is not managed in {'netns ' + netns if netns else 'this namespace'} "
                       f"(`vmqos port set {device} ...` manages it)")
    plan = desired_plans(store, scope, state, [device]).get(device, empty_plan(device))
    with Reconciler(netns) as rec:
        seen = rec.observe([device])
        link = rec.tc.link_stats(device) if device not in seen.missing else {}
    ops = [] if device in seen.missing else diff(plan.objects, seen.objects[device])
    counters = seen.nft.counters if seen.nft else {}
    return PortShow(
        port=device, netns=netns, instance=found[0].name if found else None,
        egress_mode=found[1].egress_mode if found else None,
        window_clamp=found[1].window_clamp if found else None,
        desired=PortDesired(plan.ingress, plan.egress),
        kernel=PortKernel(in_sync=not ops and device not in seen.missing, missing_device=device in seen.missing,
                          operations_needed=tuple(op.describe() for op in ops),
                          objects=tuple(seen.objects[device])),
        counters=flows(device, seen.tc_stats[device], counters),
        device_counters=link,
        notes=tuple(plan.notes),
    )


def device_objects(netns: str | None, device: str) -> tuple[Any, ...]:
    """What the kernel holds on a device for vmqos (its qdiscs, classes and filters, its IFB's, its nft
    chain and counters), whether a store manages it or not: how a released port is seen to be clean.
    The table's sets (per-IP accounting) are the namespace's, shared by every port: not the device's.
    Nothing is written; NotFound when the device does not exist."""
    with Reconciler(netns) as rec:
        seen = rec.observe([device])
    if device in seen.missing:
        raise NotFound(f"device {device} does not exist in {'netns ' + netns if netns else 'this namespace'}")
    return tuple(o for o in seen.objects[device] if not isinstance(o, NftSet))


def open_store(db: str | None, *, read_only: bool = False) -> Store:
    """The store named by --db, $VMQOS_DB or the default; `read_only` for a command that only reads
    (check, port show, events, top...): it never writes the database, so it needs no write access."""
    return Store(db or os.environ.get("VMQOS_DB") or None, read_only=read_only)
