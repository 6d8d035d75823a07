"""Desired state -> plan -> observed state -> diff -> apply, per port, atomically and idempotently.

Ports are worked on together so that a change of thousands of ports costs one `ip -batch`, one
`tc -batch` and one nft transaction, in the order that never leaves a port unlimited: devices
first, then queues and classes (created or replaced in place), then the nft transaction (in
bulk, its pure additions run beside tc), then deletions, children before parents. A port
whose operation fails is restored to what was read back before the change; the others keep
their new state. Nothing to change -> nothing written.

Each applied port's plan is fingerprinted in the store (tc part and nft part): with
`verify=False` a port whose plan did not change is trusted and not even read back, which is what
makes a no-op pass over 10,000 ports cheap; `verify=True` (the CLI default) reads everything back.

What to read, what to change and in which order is decided in `vmqos.reconcile.decide` (pure);
this module reads, writes and rolls back, on the drivers it is given (`vmqos.drivers.protocols`).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from vmqos.core.errors import KernelError, ToolTimeout, VmqosError
from vmqos.core.observed import ForeignHook, NftState, TcStats
from vmqos.core.plan.diff import Operation
from vmqos.core.plan.names import ifb_name
from vmqos.core.plan.objects import IfbLink, KernelObject, NftChain, NftCounter
from vmqos.core.plan.orphans import Inventory, Orphans
from vmqos.core.plan.planner import PortPlan
from vmqos.core.plan.render import tc_commands
from vmqos.drivers.batch import run_batch
from vmqos.drivers.nft import Nft
from vmqos.drivers.protocols import (
    BatchRunner,
    Encoded,
    LineFailure,
    NftDriver,
    TcDriver,
)
from vmqos.reconcile.decide import (
    ApplyPlan,
    apply_phases,
    decide_port,
    empties_table,
    nft_by_port,
    restore_ops,
    split_policers,
    to_record,
    what_to_read,
)
from vmqos.reconcile.progress import PHASES, PhaseProgress, Progress

__all__ = ["PHASES", "PortResult", "Observed", "Progress", "Reconciler"]

LIVE_REPLACE_LIMIT = 64  # up to this many class or leaf-queue changes go over netlink, one request each
CONCURRENT_MIN_PORTS = 16  # from this many ports with new nft objects, nft runs beside ip and tc
log = logging.getLogger(__name__)


@dataclass
class PortResult:
    port: str
    ops: list[Operation] = field(default_factory=list)
    error: str | None = None
    skipped: bool = False  # trusted: plan unchanged since it was applied
    rolled_back: bool = False

    @property
    def writes(self) -> int:
        return 0 if self.error else len(self.ops)

    def as_json(self) -> dict[str, object]:
        return {"port": self.port, "operations": [op.describe() for op in self.ops], "writes": self.writes,
                "error": self.error, "rolled_back": self.rolled_back, "skipped": self.skipped}


@dataclass
class Observed:
    """What the kernel holds for some ports, with the counters read on the way."""

    objects: dict[str, list[KernelObject]]
    tc_stats: dict[str, dict[tuple[object, ...], TcStats]]
    nft: NftState | None
    missing: set[str]  # ports whose device does not exist


class Reconciler:
    """Runs what `vmqos.reconcile.decide` decides, on the drivers it is given: by default the real
    ones of `netns` (tc over netlink, `nft`, `ip`/`tc -batch`); a test gives the fake kernel's."""

    def __init__(self, netns: str | None = None, *, tc: TcDriver | None = None, nft: NftDriver | None = None,
                 batch: BatchRunner | None = None) -> None:
        self.netns = netns
        if tc is None:
            # lazy: pyroute2 costs ~65 ms, and every `vmqos` start imports this module (through
            # services); only a command that reads or writes the kernel needs it
            from vmqos.drivers.tc_netlink import TcNetlink

            tc = TcNetlink(netns)
        if nft is None:
            nft = Nft(netns)
        self.tc: TcDriver = tc
        self.nft: NftDriver = nft
        self._batch = batch  # None: this module's `run_batch`, looked up at each call

    def close(self) -> None:
        self.tc.close()

    def __enter__(self) -> "Reconciler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run_batch(self, tool: str, lines: Sequence[str]) -> list[LineFailure]:
        runner: BatchRunner = self._batch or run_batch
        return runner(tool, lines, self.netns)

    # -- reading -------------------------------------------------------------------------------

    def observe(self, ports: Sequence[str], *, tc: bool = True, nft: bool = True,
                only: Mapping[str, Sequence[str]] | None = None) -> Observed:
        """What the kernel holds for `ports`; `only`: port -> the devices of it to read (the port,
        its IFB), when the others are known to be as planned. A port not read is still looked up."""
        only = only or {}
        per_port = {p: only.get(p) or (p, ifb_name(p)) for p in ports} if tc else {}
        read = self.tc.read([d for devs in per_port.values() for d in devs])
        state = self.nft.read(ports) if nft else None
        objects: dict[str, list[KernelObject]] = {}
        stats: dict[str, dict[tuple[object, ...], TcStats]] = {}
        missing: set[str] = set()
        nft_objects = nft_by_port(ports, state) if state is not None else {}
        for port in ports:
            objs: list[KernelObject] = []
            st: dict[tuple[object, ...], TcStats] = {}
            if tc:
                if not (read[port].exists if port in read else self.tc.exists(port)):
                    missing.add(port)
                for dev in per_port[port]:
                    objs += read[dev].objects or []
                    st.update(read[dev].stats or {})
            objs += nft_objects.get(port, [])
            objects[port] = objs
            stats[port] = st
        return Observed(objects, stats, state, missing)

    # -- the reconcile loop --------------------------------------------------------------------

    def reconcile(self, plans: dict[str, PortPlan], *, applied: dict[str, str] | None = None, force: bool = False,
                  verify: bool = True, dry_run: bool = False,
                  progress: Progress | None = None) -> tuple[list[PortResult], dict[str, str | None]]:
        """Bring each port of `plans` to its plan (an empty plan clears the port).

        Returns the per-port results and the fingerprints to record (None: forget the port).
        `progress` hears each phase as it starts and ends (see `Progress`).
        """
        started_at = time.monotonic()
        wanted = what_to_read(plans, applied or {}, verify)
        results = {port: PortResult(port, skipped=port in wanted.skipped) for port in plans}
        if wanted.nothing:
            self._log_pass(plans, results, 0, started_at, dry_run)
            return list(results.values()), {}
        need_tc, need_nft = wanted.tc, list(wanted.nft)
        reading = len(set(need_tc) | set(need_nft))
        if progress:
            progress("reading back", 0, reading)
        log.debug("reconcile: reading back the queues of %d ports and the nft chains of %d", len(need_tc), len(need_nft))

        nothing = Observed({}, {}, None, set())
        if need_tc and len(need_nft) >= CONCURRENT_MIN_PORTS:  # two reads of separate subsystems, at once
            with ThreadPoolExecutor(max_workers=1) as pool:
                nft_read = pool.submit(self.observe, need_nft, tc=False)
                seen_tc = self.observe(list(need_tc), nft=False, only=need_tc)
                seen_nft = nft_read.result()
        else:
            seen_tc = self.observe(list(need_tc), nft=False, only=need_tc) if need_tc else nothing
            seen_nft = self.observe(need_nft, tc=False) if need_nft else nothing
        before: dict[str, list[KernelObject]] = {}
        hooks: dict[str, list[ForeignHook]] = {}
        for hook in seen_nft.nft.foreign if seen_nft.nft is not None else ():
            hooks.setdefault(hook.device, []).append(hook)
        for port, plan in plans.items():
            decision = decide_port(port, plan.objects, read=need_tc.get(port, ()), seen_tc=seen_tc.objects.get(port),
                                   seen_nft=seen_nft.objects.get(port), missing=port in seen_tc.missing,
                                   force=force, netns=self.netns, foreign_hooks=hooks.get(port, ()))
            results[port].ops, results[port].error = decision.ops, decision.error
            if decision.before is not None:
                before[port] = decision.before
            if decision.error:
                log.warning("port %s failed: %s (nothing was changed)", port, decision.error,
                            extra={"port": port, "rolled_back": False})
            else:
                log.debug("port %s: %d operations to match its plan", port, len(decision.ops), extra={"port": port})
        if progress:
            progress("reading back", reading, reading)

        todo = {p: r for p, r in results.items() if r.ops and not r.error}
        if not dry_run and todo:
            # Fingerprinting thousands of plans takes a while: done while nft applies in bulk.
            failed = self._apply({p: r.ops for p, r in todo.items()},
                                 meanwhile=lambda: [plans[p].fingerprint for p in todo], progress=progress)
            for port, message in failed.items():
                results[port].error = message
                results[port].rolled_back = self._rollback(port, before[port])
                log.warning("port %s failed: %s (%s)", port, message,
                            "rolled back to what it held before" if results[port].rolled_back
                            else "NOT rolled back: `vmqos check` shows what it holds",
                            extra={"port": port, "rolled_back": results[port].rolled_back})
            if empties_table(op for r in todo.values() for op in r.ops):
                self.nft.remove_table_if_empty()
        self._log_pass(plans, results, reading, started_at, dry_run)
        return list(results.values()), to_record(plans, results, dry_run)

    def _log_pass(self, plans: Mapping[str, PortPlan], results: Mapping[str, PortResult], read_back: int,
                  started_at: float, dry_run: bool) -> None:
        """One INFO line per pass, for an operator reading journalctl; its numbers as fields in JSON."""
        log.info("reconcile pass in %(where)s: %(planned)d ports planned, %(read_back)d read back, %(changed)d "
                 "changed, %(failed)d failed, %(skipped)d skipped, %(seconds).3f s%(dry)s",
                 {"where": f"netns {self.netns}" if self.netns else "this namespace", "netns": self.netns,
                  "planned": len(plans), "read_back": read_back,
                  "changed": sum(bool(r.ops and not r.error) for r in results.values()),
                  "failed": sum(bool(r.error) for r in results.values()),
                  "skipped": sum(r.skipped for r in results.values()),
                  "seconds": time.monotonic() - started_at,
                  "dry": " (dry run: nothing written)" if dry_run else "", "dry_run": dry_run})

    # -- applying ------------------------------------------------------------------------------

    def _apply(self, ops_by_port: dict[str, list[Operation]], meanwhile: Callable[[], object] | None = None,
               progress: Progress | None = None) -> dict[str, str]:
        """Run the operations phase by phase across ports; return the ports that failed, with why.

        `meanwhile` is work of the caller's that runs while a bulk nft transaction is in the kernel."""
        return self._run_phases(apply_phases(ops_by_port, CONCURRENT_MIN_PORTS), meanwhile, progress)

    def _run_phases(self, phases: ApplyPlan, meanwhile: Callable[[], object] | None = None,
                    progress: Progress | None = None) -> dict[str, str]:
        failed: dict[str, str] = {}
        tell = PhaseProgress(progress, {
            "links": [phases.links_up.ops], "queues": [phases.tc_up.ops],
            "nft": [phases.early_first.ops, phases.early_then.ops, phases.nft.ops],
            "deletions": [phases.tc_down.ops, phases.links_down.ops]})
        # Bulk work: nft objects that are only created (a port's first chains, its counters) take
        # nothing away, so they go in while ip and tc build the IFBs and queues: tc and nftables
        # are separate kernel subsystems. Two transactions: what needs no new device (counters,
        # sets, the chains towards the instances) at once, while ip creates the IFBs; the chains
        # that forward to an IFB once it exists. A change that replaces or removes rules (a
        # limiter moving from nft to tc) waits for tc, as below.
        early = phases.early
        links_done = threading.Event()
        log.debug("apply: devices to add for %d ports, queues for %d, nft for %d (%d beside tc), deletions last",
                  len(phases.links_up.ops), len(phases.tc_up.ops), len(phases.nft.ops) + len(early), len(early))

        def run_early() -> None:
            first, then = phases.early_first.ops, phases.early_then.ops
            encoding = pool.submit(lambda: self.nft.encode([op for ops in then.values() for op in ops]))
            self._run_nft(first, failed, self.nft.encode([op for ops in first.values() for op in ops]))
            tell.done("nft", first)
            payload = encoding.result()  # encoded while the first transaction ran
            links_done.wait()
            if any(p in failed for p in then):  # that port is out: the payload is stale
                self._run_nft(phases.early_then.live(failed), failed)
            else:
                self._run_nft(then, failed, payload)
            tell.done("nft", then)

        with ThreadPoolExecutor(max_workers=2) as pool:
            early_done = pool.submit(run_early) if early else None
            try:
                try:
                    self._run_tc("ip", phases.links_up.live(failed), failed)
                    self.tc.forget(_links(phases.links_up.ops))
                    tell.done("links", phases.links_up.ops)
                finally:
                    links_done.set()
                self._run_tc("tc", phases.tc_up.live(failed), failed)
                tell.done("queues", phases.tc_up.ops)
                if early_done is not None and meanwhile is not None:
                    meanwhile()
            finally:
                if early_done is not None:
                    early_done.result()
        self._run_nft(phases.nft.live(failed), failed)
        tell.done("nft", phases.nft.ops)
        self._run_tc("tc", phases.tc_down.live(failed), failed)
        tell.done("deletions", phases.tc_down.ops)
        links_down = phases.links_down.live(failed)
        self._run_tc("ip", links_down, failed)
        self.tc.forget(_links(links_down))
        tell.done("deletions", phases.links_down.ops)
        return failed

    def _run_tc(self, tool: str, ops_by_port: dict[str, list[Operation]], failed: dict[str, str]) -> None:
        rest, loads = split_policers(ops_by_port)
        self._run_tc_ops(tool, rest, failed)
        self._replace_each(loads, failed)  # policers: after the batch that makes their qdisc

    def _replace_each(self, ops_by_port: dict[str, list[Operation]], failed: dict[str, str]) -> None:
        for port, ops in ops_by_port.items():
            try:
                for op in ops if port not in failed else ():
                    self.tc.replace(op.obj)
            except VmqosError as exc:
                failed[port] = str(exc)

    def _run_tc_ops(self, tool: str, ops_by_port: dict[str, list[Operation]], failed: dict[str, str]) -> None:
        all_ops = [op for ops in ops_by_port.values() for op in ops]
        if not all_ops:
            return
        if tool == "tc" and len(all_ops) <= LIVE_REPLACE_LIMIT and all(
                op.action == "replace" and self.tc.can_replace(op.obj) for op in all_ops):
            log.debug("tc: %d replacements over netlink for %d ports", len(all_ops), len(ops_by_port))
            return self._replace_each(ops_by_port, failed)
        lines: list[str] = []
        owner: list[str] = []
        for port, ops in ops_by_port.items():
            for op in ops:
                for command in tc_commands(op):
                    lines.append(command.split(" ", 1)[1])
                    owner.append(port)
        log.debug("%s -batch: %d commands for %d ports", tool, len(lines), len(ops_by_port))
        for failure in self._run_batch(tool, lines):
            failed.setdefault(owner[failure.index], f"{tool} {lines[failure.index]}: {failure.message}")

    def _run_nft(self, ops_by_port: dict[str, list[Operation]], failed: dict[str, str],
                 encoded: Encoded | None = None) -> None:
        """One transaction for all ports (`encoded`: already built from exactly these operations);
        if it fails, one per port, to find the culprits."""
        ops_by_port = {p: ops for p, ops in ops_by_port.items() if ops}
        if not ops_by_port:
            return
        log.debug("nft: one transaction for %d ports", len(ops_by_port))
        try:
            if encoded is not None:
                self.nft.run_encoded(*encoded)
            else:
                self.nft.apply([op for ops in ops_by_port.values() for op in ops])
            return
        except ToolTimeout as exc:  # nothing was applied, and retrying port by port would take longer still
            for port in ops_by_port:
                failed.setdefault(port, str(exc))
            return
        except KernelError:
            if len(ops_by_port) == 1:
                port = next(iter(ops_by_port))
                try:
                    self.nft.apply(ops_by_port[port])
                except KernelError as exc:
                    failed[port] = str(exc)
                return
        log.debug("nft: the transaction failed; one per port to find the culprits among %d", len(ops_by_port))
        for port, ops in ops_by_port.items():  # find the culprits: one transaction per port
            try:
                self.nft.apply(ops)
            except KernelError as exc:
                failed[port] = str(exc)

    # -- what belongs to no port -----------------------------------------------------------------

    def inventory(self) -> Inventory:
        """Every object of vmqos's naming in the namespace (`vmqos.core.plan.orphans`)."""
        from vmqos.drivers.inventory import vmqos_inventory

        return vmqos_inventory(self.netns)

    def remove_loose(self, orphans: Orphans, *, dry_run: bool = False) -> list[PortResult]:
        """Delete the IFBs, chains and counters of vmqos that belong to no device, one result each
        (orphan ports, with a device, are cleared as ports by `reconcile`)."""
        ops: dict[str, list[Operation]] = {name: [Operation("delete", IfbLink(name))] for name in orphans.ifbs}
        if orphans.chains or orphans.counters:
            chains = self.nft.read().chains
            for name in orphans.chains:
                ops[name] = [Operation("delete", chains.get(name) or NftChain(name, "", "", 0, ()))]
            ops.update({name: [Operation("delete", NftCounter(name))] for name in orphans.counters})
        failed = self._apply(ops) if ops and not dry_run else {}
        if (orphans.chains or orphans.counters) and not dry_run:
            self.nft.remove_table_if_empty()
        return [PortResult(name, ops=o, error=failed.get(name)) for name, o in ops.items()]

    def _rollback(self, port: str, before: list[KernelObject]) -> bool:
        """Put back what the port held before the change (foreign objects excepted).

        Not an undo log of inverse steps (vmqos.core.undo): one batch writes many ports at once,
        and only the failed ones go back, to what is read back now diffed against the snapshot."""
        try:
            now = self.observe([port])
            ops = restore_ops(before, now.objects[port])
            failed = self._apply({port: ops}) if ops else {}
            return not failed
        except VmqosError:
            return False


def _links(ops_by_port: Mapping[str, Iterable[Operation]]) -> list[str]:
    """The link names an ip phase created or deleted (their cached ifindexes are stale)."""
    return [op.obj.name for ops in ops_by_port.values() for op in ops]  # type: ignore[attr-defined]
