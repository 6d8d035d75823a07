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
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from vmqos.core.errors import KernelError, ToolTimeout, VmqosError
from vmqos.core.observed import NftState, TcStats
from vmqos.core.plan.diff import Operation, diff
from vmqos.core.plan.names import ifb_name
from vmqos.core.plan.objects import (
    IfbLink,
    KernelObject,
    NftChain,
    NftCounter,
    is_foreign,
    is_nft,
)
from vmqos.core.plan.planner import PortPlan, fingerprint
from vmqos.drivers.batch import run_batch
from vmqos.drivers.nft import Nft, encode, transaction
from vmqos.drivers.tc_netlink import TcNetlink

__all__ = ["PortResult", "Observed", "Reconciler", "fingerprint", "nft_by_port", "plan_host"]
from vmqos.core.plan.render import tc_commands
from vmqos.reconcile.decide import _parts, nft_by_port

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
    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self.tc = TcNetlink(netns)
        self.nft = Nft(netns)

    def close(self) -> None:
        self.tc.close()

    def __enter__(self) -> "Reconciler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
                  verify: bool = True, dry_run: bool = False) -> tuple[list[PortResult], dict[str, str | None]]:
        """Bring each port of `plans` to its plan (an empty plan clears the port).

        Returns the per-port results and the fingerprints to record (None: forget the port).
        """
        applied = applied or {}
        started_at = time.monotonic()
        results: dict[str, PortResult] = {}
        planned: dict[str, tuple[KernelObject, ...]] = {}
        need_tc: dict[str, tuple[str, ...]] = {}  # port -> its devices to read back
        need_nft: list[str] = []
        for port, plan in plans.items():
            results[port] = PortResult(port)
            planned[port] = plan.objects
            if verify:  # everything is read back: the fingerprints are needed only to record
                need_tc[port] = (port, ifb_name(port))
                need_nft.append(port)
                continue
            new, old = _parts(plan.fingerprint), _parts(applied.get(port))
            devices = tuple(dev for dev, a, b in ((port, new[0], old[0]), (ifb_name(port), new[1], old[1]))
                            if a is None or a != b)
            if devices:
                need_tc[port] = devices
            if new[2] is None or new[2] != old[2]:
                need_nft.append(port)
            if not devices and port not in need_nft:
                results[port].skipped = True
        if not need_tc and not need_nft:
            log.info("reconcile pass in %(where)s: %(planned)d ports planned, %(read_back)d read back, %(changed)d changed, %(failed)d failed, %(skipped)d skipped, %(seconds).3f s%(dry)s", {"where": f"netns {self.netns}" if self.netns else "this namespace", "netns": self.netns, "planned": len(plans), "read_back": len(set(need_tc) | set(need_nft)), "changed": sum(bool(r.ops and not r.error) for r in results.values()), "failed": sum(bool(r.error) for r in results.values()), "skipped": sum(r.skipped for r in results.values()), "seconds": time.monotonic() - started_at, "dry": " (dry run: nothing written)" if dry_run else "", "dry_run": dry_run})
            return list(results.values()), {}
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
        for port in plans:
            if port in seen_tc.missing and planned[port]:  # clearing a port whose device is gone is fine
                results[port].error = f"device {port} does not exist" + (f" in netns {self.netns}" if self.netns else "")
                log.warning("port %s failed: %s (nothing was changed)", port, results[port].error, extra={"port": port, "rolled_back": False})
                continue
            objs_tc = seen_tc.objects.get(port)
            objs_nft = seen_nft.objects.get(port)
            # A part that was not read is trusted to be as planned: it is as it was applied (the
            # fingerprint's IFB part holds whatever is not on the port).
            read = need_tc.get(port, ())
            trusted_tc = [o for o in planned[port] if not is_nft(o)
                          and (port not in read if o.device == port else ifb_name(port) not in read)]
            obs = (objs_tc or []) + trusted_tc + \
                  (objs_nft if objs_nft is not None else [o for o in planned[port] if is_nft(o)])
            before[port] = obs
            ops = diff(planned[port], obs)
            blocked = [op for op in ops if op.disruptive or is_foreign(op.old or op.obj)]
            if blocked and not force:
                results[port].error = ("drift: " + "; ".join(f"{op.describe()} replaces {(op.old or op.obj).describe()}"
                                                             f" that vmqos did not make" for op in blocked)
                                       + " (run `vmqos check`; `--force` replaces it)")
                results[port].ops = ops
                log.warning("port %s failed: %s (nothing was changed)", port, results[port].error, extra={"port": port, "rolled_back": False})
                continue
            results[port].ops = ops
            log.debug("port %s: %d operations to match its plan", port, len(ops), extra={"port": port})

        todo = {p: r for p, r in results.items() if r.ops and not r.error}
        if not dry_run and todo:
            # Fingerprinting thousands of plans takes a while: done while nft applies in bulk.
            failed = self._apply({p: r.ops for p, r in todo.items()},
                                 meanwhile=lambda: [plans[p].fingerprint for p in todo])
            for port, message in failed.items():
                results[port].error = message
                results[port].rolled_back = self._rollback(port, before[port])
                log.warning("port %s failed: %s (%s)", port, message, "rolled back to what it held before" if results[port].rolled_back else "NOT rolled back: `vmqos check` shows what it holds", extra={"port": port, "rolled_back": results[port].rolled_back})
            if any(isinstance(op.obj, (NftChain, NftCounter)) and op.action == "delete"
                   for r in todo.values() for op in r.ops):
                self.nft.remove_table_if_empty()

        record: dict[str, str | None] = {}
        for port, result in results.items():
            if result.error or result.skipped or dry_run:
                continue
            record[port] = plans[port].fingerprint if planned[port] else None
        log.info("reconcile pass in %(where)s: %(planned)d ports planned, %(read_back)d read back, %(changed)d changed, %(failed)d failed, %(skipped)d skipped, %(seconds).3f s%(dry)s", {"where": f"netns {self.netns}" if self.netns else "this namespace", "netns": self.netns, "planned": len(plans), "read_back": len(set(need_tc) | set(need_nft)), "changed": sum(bool(r.ops and not r.error) for r in results.values()), "failed": sum(bool(r.error) for r in results.values()), "skipped": sum(r.skipped for r in results.values()), "seconds": time.monotonic() - started_at, "dry": " (dry run: nothing written)" if dry_run else "", "dry_run": dry_run})
        return list(results.values()), record

    # -- applying ------------------------------------------------------------------------------

    def _apply(self, ops_by_port: dict[str, list[Operation]],
               meanwhile: Callable[[], object] | None = None) -> dict[str, str]:
        """Run the operations phase by phase across ports; return the ports that failed, with why.

        `meanwhile` is work of the caller's that runs while a bulk nft transaction is in the kernel."""
        failed: dict[str, str] = {}

        def phase(pick) -> dict[str, list[Operation]]:  # type: ignore[no-untyped-def]
            return {p: [op for op in ops if pick(op)] for p, ops in ops_by_port.items() if p not in failed}

        link_up = phase(lambda op: isinstance(op.obj, IfbLink) and op.action != "delete")
        tc_up = phase(lambda op: not is_nft(op.obj) and not isinstance(op.obj, IfbLink) and op.action != "delete")
        nft_up = {p: o for p, o in phase(lambda op: is_nft(op.obj)).items() if o}
        # Bulk work: nft objects that are only created (a port's first chains, its counters) take
        # nothing away, so they go in while ip and tc build the IFBs and queues: tc and nftables
        # are separate kernel subsystems. Two transactions: what needs no new device (counters,
        # sets, the chains towards the instances) at once, while ip creates the IFBs; the chains
        # that forward to an IFB once it exists. A change that replaces or removes rules (a
        # limiter moving from nft to tc) waits for tc, as below.
        early = {p: o for p, o in nft_up.items() if all(op.action == "create" for op in o)} \
            if len(nft_up) >= CONCURRENT_MIN_PORTS else {}
        links_done = threading.Event()
        log.debug("apply: %d ports; devices to add for %d, queues to add or change for %d, nft changes for %d (%d of them beside tc), deletions last", len(ops_by_port), sum(map(bool, link_up.values())), sum(map(bool, tc_up.values())), len(nft_up), len(early))

        def run_early() -> None:
            first: dict[str, list[Operation]] = {}
            then: dict[str, list[Operation]] = {}
            for port, ops in early.items():
                for op in ops:
                    forwards = isinstance(op.obj, NftChain) and op.obj.forwards_to()
                    (then if forwards else first).setdefault(port, []).append(op)
            encoding = pool.submit(lambda: encode(transaction([op for ops in then.values() for op in ops])))
            self._run_nft(first, failed, encode(transaction([op for ops in first.values() for op in ops])))
            payload = encoding.result()  # encoded while the first transaction ran
            links_done.wait()
            if any(p in failed for p in then):  # that port is out: the payload is stale
                self._run_nft({p: o for p, o in then.items() if p not in failed}, failed)
            else:
                self._run_nft(then, failed, payload)

        with ThreadPoolExecutor(max_workers=2) as pool:
            early_done = pool.submit(run_early) if early else None
            try:
                try:
                    self._run_tc("ip", link_up, failed)
                    self.tc.forget(op.obj.name for ops in link_up.values() for op in ops)  # type: ignore[attr-defined]
                finally:
                    links_done.set()
                self._run_tc("tc", {p: o for p, o in tc_up.items() if p not in failed}, failed)
                if early_done is not None and meanwhile is not None:
                    meanwhile()
            finally:
                if early_done is not None:
                    early_done.result()
        self._run_nft({p: o for p, o in nft_up.items() if p not in early and p not in failed}, failed)
        self._run_tc("tc", phase(lambda op: not is_nft(op.obj) and not isinstance(op.obj, IfbLink)
                                 and op.action == "delete"), failed)
        link_down = phase(lambda op: isinstance(op.obj, IfbLink) and op.action == "delete")
        self._run_tc("ip", link_down, failed)
        self.tc.forget(op.obj.name for ops in link_down.values() for op in ops)  # type: ignore[attr-defined]
        return failed

    def _run_tc(self, tool: str, ops_by_port: dict[str, list[Operation]], failed: dict[str, str]) -> None:
        ops_by_port = {p: ops for p, ops in ops_by_port.items() if ops}
        if not ops_by_port:
            return
        all_ops = [op for ops in ops_by_port.values() for op in ops]
        if tool == "tc" and len(all_ops) <= LIVE_REPLACE_LIMIT and all(
                op.action == "replace" and self.tc.can_replace(op.obj) for op in all_ops):
            log.debug("tc: %d replacements over netlink for %d ports", len(all_ops), len(ops_by_port))
            for port, ops in ops_by_port.items():
                try:
                    for op in ops:
                        self.tc.replace(op.obj)
                except VmqosError as exc:
                    failed[port] = str(exc)
            return
        lines: list[str] = []
        owner: list[str] = []
        for port, ops in ops_by_port.items():
            for op in ops:
                for command in tc_commands(op):
                    lines.append(command.split(" ", 1)[1])
                    owner.append(port)
        log.debug("%s -batch: %d commands for %d ports", tool, len(lines), len(ops_by_port))
        for failure in run_batch(tool, lines, self.netns):
            port = owner[failure.index]
            failed.setdefault(port, f"{tool} {lines[failure.index]}: {failure.message}")

    def _run_nft(self, ops_by_port: dict[str, list[Operation]], failed: dict[str, str],
                 encoded: tuple[str, int] | None = None) -> None:
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

    def _rollback(self, port: str, before: list[KernelObject]) -> bool:
        """Put back what the port held before the change (foreign objects excepted)."""
        try:
            now = self.observe([port])
            ops = diff([o for o in before if not is_foreign(o)], now.objects[port])
            ops = [op for op in ops if not is_foreign(op.obj)]
            failed = self._apply({port: ops}) if ops else {}
            return not failed
        except VmqosError:
            return False

