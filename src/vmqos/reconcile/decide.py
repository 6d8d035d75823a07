"""The reconciler's decisions, pure: what to read back, what to change, in which order.

Everything here is a function of values (plans, recorded fingerprints, what was read back) and
returns values; `vmqos.reconcile.execute` does the reading and writing these decisions call for.
Kept apart so that the rules that make a reconcile safe (what is trusted without reading, what
counts as drift, the order that never leaves a port unlimited) can be read and tested on their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Mapping, Protocol, Sequence

from vmqos.core.observed import ForeignHook, NftState
from vmqos.core.plan.diff import Operation, contains, diff
from vmqos.core.plan.names import chain_owners, counter_port, ifb_name
from vmqos.core.plan.objects import (
    IfbLink,
    KernelObject,
    NftChain,
    NftCounter,
    NftLimit,
    Qdisc,
    is_foreign,
    is_nft,
    is_program,
)
from vmqos.core.plan.planner import PortPlan


def _parts(fp: str | None) -> tuple[str | None, str | None, str | None]:
    """(the port's queues, its IFB's, its nft chains) of a fingerprint; None: unknown, read it back."""
    if not fp or ";" not in fp:
        return None, None, None
    tc, nft = fp.split(";", 1)
    own, comma, ifb = tc.partition(",")
    return (own, ifb, nft) if comma else (None, None, nft)  # recorded before the tc part was split


def nft_by_port(ports: Iterable[str], state: NftState) -> dict[str, list[KernelObject]]:
    """vmqos's chains and counters grouped by the port they belong to, in one pass over each."""
    owner = chain_owners(ports)
    out: dict[str, list[KernelObject]] = {port: [] for port in ports}
    for name in state.counters:
        port = counter_port(name, owner)
        if port is not None:
            out[port].append(NftCounter(name))
    for name, limit in state.limits.items():  # named as counters are: `<chain>_police_<rate>_<burst>`
        port = counter_port(name, owner)
        if port is not None:
            out[port].append(limit)
    for name, chain in state.chains.items():
        port = owner.get(name)
        if port is not None:
            out[port].append(chain if chain.dev else replace(chain, dev=port))
    for shared in state.sets.values():  # every port's chains may feed the table's sets
        for objs in out.values():
            objs.append(shared)
    return out


# -- what to read back -------------------------------------------------------------------------

@dataclass(frozen=True)
class ReadPlan:
    """What a reconcile reads back: per port the devices whose queues are not trusted, the ports
    whose nft chains are not, and the ports trusted whole (skipped: nothing read, nothing written)."""

    tc: dict[str, tuple[str, ...]] = field(default_factory=dict)  # port -> its devices to read back
    nft: tuple[str, ...] = ()
    skipped: frozenset[str] = frozenset()

    @property
    def nothing(self) -> bool:
        return not self.tc and not self.nft


def what_to_read(plans: Mapping[str, PortPlan], applied: Mapping[str, str], verify: bool) -> ReadPlan:
    """With `verify`, everything (the fingerprints are needed only to record); otherwise only the
    parts (the port's queues, its IFB's, its chains) whose fingerprint changed since it was applied."""
    need_tc: dict[str, tuple[str, ...]] = {}
    need_nft: list[str] = []
    skipped: set[str] = set()
    for port, plan in plans.items():
        if verify:
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
            skipped.add(port)
    return ReadPlan(need_tc, tuple(need_nft), frozenset(skipped))


# -- what to change ----------------------------------------------------------------------------

@dataclass(frozen=True)
class PortDecision:
    """One port's verdict: the operations that bring it to its plan, or why it is left alone.

    `before` is what the port holds (read back, or trusted to be as planned): what a failed
    change is rolled back to. None when nothing is to be written."""

    port: str
    ops: list[Operation] = field(default_factory=list)
    error: str | None = None
    before: list[KernelObject] | None = None


def missing_device(port: str, netns: str | None) -> str:
    return f"device {port} does not exist" + (f" in netns {netns}" if netns else "")


def drift_message(blocked: Sequence[Operation], before: Sequence[KernelObject] = ()) -> str:
    def one(op: Operation) -> str:
        taken = [o.describe() for o in before if _foreign_inside(op, o)]
        if taken:
            return f"{op.describe()} would take {', '.join(taken)} that vmqos did not make with it"
        return f"{op.describe()} replaces {(op.old or op.obj).describe()} that vmqos did not make"
    return "drift: " + "; ".join(one(op) for op in blocked) + " (run `vmqos check`; `--force` replaces it)"


def hooks_message(port: str, hooks: Sequence[ForeignHook]) -> str:
    return (f"drift: {'; '.join(f'{h.family} table {h.table} chain {h.chain} hooks {h.hook} of {port}' for h in hooks)}"
            ", which vmqos did not make and which may divert the port's traffic past its limits (run `vmqos "
            "check`; `--force` applies the limits beside it, leaving it in place)")


def _foreign_inside(op: Operation, obj: KernelObject) -> bool:
    gone = op.old if op.action == "recreate" else op.obj if op.action == "delete" else None
    return (isinstance(gone, Qdisc) and gone.parent == "ingress" and is_foreign(obj) and contains(gone, obj))


def holds_foreign(op: Operation, before: Sequence[KernelObject]) -> bool:
    """Whether deleting (or recreating) the port's ingress-hook qdisc (a clsact, police mode's ingress
    qdisc) would take filters vmqos did not make with it: that hook is where other tools hang their
    programs, and a clsact is one of vmqos's kinds since the window clamp."""
    return any(_foreign_inside(op, o) for o in before)


def decide_port(port: str, planned: Sequence[KernelObject], *, read: Sequence[str],
                seen_tc: list[KernelObject] | None, seen_nft: list[KernelObject] | None, missing: bool,
                force: bool, netns: str | None, foreign_hooks: Sequence[ForeignHook] = ()) -> PortDecision:
    """The diff of one port against what it holds: `read` are the port's devices that were read back
    (`seen_tc` their objects), `seen_nft` its chains (None: not read, trusted as planned).

    `foreign_hooks`: other tables' base chains on the port. vmqos cannot vouch for a port's limits
    while a chain it did not make sees its packets first (one `fwd` and they skip vmqos's chain and
    IFB), and it does not delete another table's chain: a port to be limited is refused, as drift,
    unless forced; clearing a port is not held up by them."""
    if missing and planned:  # clearing a port whose device is gone is fine
        return PortDecision(port, error=missing_device(port, netns))
    if foreign_hooks and planned and not force:
        return PortDecision(port, error=hooks_message(port, foreign_hooks))
    # A part that was not read is trusted to be as planned: it is as it was applied (the
    # fingerprint's IFB part holds whatever is not on the port).
    trusted_tc = [o for o in planned if not is_nft(o)
                  and (port not in read if o.device == port else ifb_name(port) not in read)]
    before = (seen_tc or []) + trusted_tc + \
        (seen_nft if seen_nft is not None else [o for o in planned if is_nft(o)])
    ops = diff(planned, before)
    blocked = [op for op in ops if op.disruptive or is_foreign(op.old or op.obj) or holds_foreign(op, before)]
    if blocked and not force:
        return PortDecision(port, ops, drift_message(blocked, before), before)
    return PortDecision(port, ops, None, before)


def restore_ops(before: Iterable[KernelObject], now: Iterable[KernelObject]) -> list[Operation]:
    """What puts a port back to what it held (foreign objects are neither restored nor removed)."""
    ops = diff([o for o in before if not is_foreign(o)], now)
    return [op for op in ops if not is_foreign(op.obj)]


def empties_table(ops: Iterable[Operation]) -> bool:
    """Whether a change deletes chains or counters, after which vmqos's table may be empty."""
    return any(isinstance(op.obj, (NftChain, NftCounter, NftLimit)) and op.action == "delete" for op in ops)


# -- in which order ----------------------------------------------------------------------------

PortOps = dict[str, list[Operation]]


@dataclass(frozen=True)
class Phase:
    """One step of an apply across ports, run by one tool: `ip` (links), `tc` (queues) or `nft`.

    `skip_failed`: ports that failed in an earlier step are left out of this one."""

    name: str
    tool: str
    ops: PortOps
    skip_failed: bool = True

    def ports(self) -> list[str]:
        return list(self.ops)

    def live(self, failed: Mapping[str, str]) -> PortOps:
        """The operations still to run, given the ports that failed so far."""
        return {p: o for p, o in self.ops.items() if not self.skip_failed or p not in failed}


@dataclass(frozen=True)
class ApplyPlan:
    """The phases of an apply, in the order that never leaves a port unlimited: links, then queues
    (created or replaced in place), then nft, then tc deletions, children before parents, then links.

    In bulk, nft objects that are only created take nothing away: they go in beside ip and tc
    (`early_first` at once, `early_then`, the chains that forward to an IFB, once the links exist);
    `nft` holds the rest, which waits for tc."""

    links_up: Phase
    tc_up: Phase
    early_first: Phase
    early_then: Phase
    nft: Phase
    tc_down: Phase
    links_down: Phase

    @property
    def early(self) -> set[str]:
        return set(self.early_first.ops) | set(self.early_then.ops)

    def ordered(self) -> tuple[Phase, ...]:
        """The phases as they run: the early nft ones beside the first two, the rest one by one."""
        return (self.early_first, self.links_up, self.early_then, self.tc_up, self.nft, self.tc_down,
                self.links_down)


def _pick(ops_by_port: Mapping[str, Sequence[Operation]], pick: Callable[[Operation], bool]) -> PortOps:
    out: PortOps = {}
    for port, ops in ops_by_port.items():
        chosen = [op for op in ops if pick(op)]
        if chosen:
            out[port] = chosen
    return out


def _is_link(op: Operation) -> bool:
    return isinstance(op.obj, IfbLink)


def _is_tc(op: Operation) -> bool:
    return not is_nft(op.obj) and not isinstance(op.obj, IfbLink)


def _is_load(op: Operation) -> bool:
    return is_program(op.obj) and op.action != "delete"  # the police program, the AQM


def split_policers(ops_by_port: Mapping[str, Sequence[Operation]]) -> tuple[PortOps, PortOps]:
    """(what tc's batch or netlink runs, the policers to load or change): tc cannot load police mode's
    program, so the driver does it over bpf(2) and netlink, once the batch made its ingress qdisc;
    an existing policer's rate is changed in its map, which keeps its bucket."""
    return _pick(ops_by_port, lambda op: not _is_load(op)), _pick(ops_by_port, _is_load)


def apply_phases(ops_by_port: Mapping[str, Sequence[Operation]], concurrent_min: int) -> ApplyPlan:
    """Split every port's operations into the phases of an apply (`concurrent_min`: from this many
    ports with nft changes, their pure creations run beside ip and tc)."""
    nft_up = _pick(ops_by_port, lambda op: is_nft(op.obj))
    early = {p: o for p, o in nft_up.items() if all(op.action == "create" for op in o)} \
        if len(nft_up) >= concurrent_min else {}
    first: PortOps = {}
    then: PortOps = {}
    for port, ops in early.items():
        for op in ops:
            forwards = isinstance(op.obj, NftChain) and op.obj.forwards_to()
            (then if forwards else first).setdefault(port, []).append(op)
    return ApplyPlan(
        links_up=Phase("links up", "ip", _pick(ops_by_port, lambda op: _is_link(op) and op.action != "delete"),
                       skip_failed=False),
        tc_up=Phase("tc up", "tc", _pick(ops_by_port, lambda op: _is_tc(op) and op.action != "delete")),
        early_first=Phase("nft early", "nft", first, skip_failed=False),
        early_then=Phase("nft forwarding", "nft", then),
        nft=Phase("nft", "nft", {p: o for p, o in nft_up.items() if p not in early}),
        tc_down=Phase("tc down", "tc", _pick(ops_by_port, lambda op: _is_tc(op) and op.action == "delete")),
        links_down=Phase("links down", "ip", _pick(ops_by_port, lambda op: _is_link(op) and op.action == "delete")),
    )


class Outcome(Protocol):
    """What `to_record` needs of a port's result (PortResult has it)."""

    error: str | None
    skipped: bool


def to_record(plans: Mapping[str, PortPlan], results: Mapping[str, Outcome], dry_run: bool) -> dict[str, str | None]:
    """The fingerprints to store after a reconcile (None: forget the port, its plan is empty)."""
    record: dict[str, str | None] = {}
    if dry_run:
        return record
    for port, outcome in results.items():
        if outcome.error or outcome.skipped:
            continue
        record[port] = plans[port].fingerprint if plans[port].objects else None
    return record

