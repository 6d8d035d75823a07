"""Operations as the exact `ip`, `tc` and `nft` commands that carry them out.

This is what `vmqos plan` prints and what an operator can paste; the drivers apply the same
objects over netlink and nft's JSON API. nftables changes that follow each other are grouped
into one `nft -f` script, which the kernel applies as one atomic transaction.
"""

from __future__ import annotations

import shlex
from typing import Sequence

from vmqos.core.plan.diff import Operation
from vmqos.core.plan.objects import (
    NFT_FAMILY,
    NFT_TABLE,
    HtbClass,
    IfbLink,
    NftChain,
    NftCounter,
    NftLimit,
    NftSet,
    Aqm,
    Policer,
    WindowClamp,
    Qdisc,
    TcFilter,
    U32Filter,
    is_nft,
)
from vmqos.core.units import format_rate, format_size

_T = f"{NFT_FAMILY} {NFT_TABLE}"


def _q(text: str) -> str:
    return shlex.quote(text)


def _qdisc(op: str, q: Qdisc) -> str:
    where = {"root": "root", "ingress": "handle ffff: ingress"}.get(q.parent, f"parent {q.parent}")
    if q.qdisc_kind == "clsact":
        return f"tc qdisc {op} dev {_q(q.dev)} clsact"
    if q.parent == "ingress":
        return f"tc qdisc {op} dev {_q(q.dev)} {where}"
    if op == "del":
        return f"tc qdisc del dev {_q(q.dev)} {where}" + ("" if q.parent == "root" else f" handle {q.handle}")
    if q.qdisc_kind == "htb":
        opts = f"htb default {q.default_minor:x}"
    elif q.qdisc_kind == "tbf":
        opts = (f"tbf rate {format_rate(q.rate_bps or 0)} burst {format_size(q.burst_bytes or 0)} "
                f"limit {q.limit_bytes}")
    else:
        opts = f"bfifo limit {q.limit_bytes}"
    return f"tc qdisc {op} dev {_q(q.dev)} {where} handle {q.handle} {opts}"


def _class(c: HtbClass) -> str:
    return (f"tc class replace dev {_q(c.dev)} parent {c.parent} classid {c.classid} htb "
            f"rate {format_rate(c.rate_bps)} ceil {format_rate(c.ceil_bps)} "
            f"burst {format_size(c.burst_bytes)} cburst {format_size(c.cburst_bytes)} quantum {c.quantum}"
            + (f" prio {c.prio}" if c.prio else ""))


def _filter(op: str, f: TcFilter) -> str:
    head = f"tc filter {op} dev {_q(f.dev)} parent {f.parent} protocol {f.protocol} prio {f.prio}"
    if op == "del":
        return head
    assert isinstance(f, U32Filter)
    handle = f" handle {f.handle}" if op == "replace" and f.handle else ""
    body = " ".join(f"match {m}" for m in f.matches_)
    action = f"flowid {f.flowid}" if f.flowid else f"action mirred egress redirect dev {_q(f.redirect_to or '')}"
    return f"{head}{handle} u32 {body} {action}"


def _chain_decl(c: NftChain) -> str:
    return (f"add chain {_T} {c.name} {{ type filter hook {c.hook} device \"{c.dev}\" "
            f"priority {c.priority}; policy accept; }}")


def _nft(op: Operation) -> list[str]:
    obj = op.obj
    if isinstance(obj, NftSet):
        if op.action == "delete":
            return [f"delete set {_T} {obj.name}"]
        return [f"add set {_T} {obj.name} {{ type {' . '.join(obj.key_types)}; flags dynamic,timeout; "
                f"timeout {obj.timeout_s}s; size {obj.size}; counter; }}"]
    if isinstance(obj, NftCounter):
        return [f"delete counter {_T} {obj.name}"] if op.action == "delete" else [f"add counter {_T} {obj.name}"]
    if isinstance(obj, NftLimit):
        return [f"delete limit {_T} {obj.name}"] if op.action == "delete" else \
            [f"add limit {_T} {obj.name} {{ {obj.text()} }}"]
    assert isinstance(obj, NftChain)
    if op.action == "delete":
        return [f"delete chain {_T} {obj.name}"]
    lines: list[str] = []
    old = op.old
    if op.action == "create":
        lines.append(_chain_decl(obj))
    elif isinstance(old, NftChain) and (old.hook, old.dev, old.priority) != (obj.hook, obj.dev, obj.priority):
        lines += [f"delete chain {_T} {obj.name}", _chain_decl(obj)]  # one transaction: no gap
    else:
        lines.append(f"flush chain {_T} {obj.name}")
    lines += [f"add rule {_T} {obj.name} {rule.text()}" for rule in obj.rules]
    return lines


POLICER_COMMENT = "#"


def policer_line(p: Policer) -> str:
    """What `vmqos plan` shows for police mode's bucket. Not a tc command: tc cannot load a program
    without an object file, so vmqos loads it over bpf(2) and netlink (`drivers/bpf_police`), and
    changes an existing one's rate in its map, keeping the bucket's state."""
    return (f"{POLICER_COMMENT} vmqos police program on {_q(p.dev)} ingress (tc filter parent ffff: prio {p.prio} bpf "
            f"direct-action): rate {p.rate_bytes} bytes/s, burst {p.burst_bytes} bytes, bucket {p.bucket_bytes} bytes")


def aqm_line(a: Aqm) -> str:
    """What `vmqos plan` shows for a shaped direction's AQM; loaded as the police program is."""
    return (f"{POLICER_COMMENT} vmqos aqm program on {_q(a.dev)} (tc filter parent {a.parent} prio {a.prio} bpf "
            f"direct-action): CE marks over a virtual queue draining {a.rate_bytes} bytes/s, credit "
            f"{a.bucket_bytes} bytes, target {a.target_ns / 1e6:g} ms, interval {a.interval_ns / 1e6:g} ms, no drops")


def clamp_line(c: WindowClamp) -> str:
    """What `vmqos plan` shows for one hook of a port's window clamp; loaded as the police program is."""
    rate = (f"windows lowered to {c.rate_bytes} bytes/s x (handshake RTT + {c.target_ns / 1e6:g} ms), at least "
            f"{c.kmin} segments") if c.rate_bytes else "handshakes timed, windows left alone"
    return (f"{POLICER_COMMENT} vmqos window clamp program on {_q(c.dev)} (tc filter parent {c.parent} prio {c.prio} bpf "
            f"direct-action): {rate}")


def tc_commands(op: Operation) -> list[str]:
    """The `ip`/`tc` commands of one operation on a device or its queues."""
    obj = op.obj
    if isinstance(obj, IfbLink):
        if op.action == "delete":
            return [f"ip link del {_q(obj.name)}"]
        # No IPv6 on an IFB (it only re-queues what it is given): each IPv6 device adds itself to
        # the host's shared fe80::/64 route list, which makes bringing up the next one and every
        # link-local lookup slower as ports grow (kernel-lab notes in docs/benchmarks.md).
        return [f"ip link add {_q(obj.name)} mtu {obj.mtu} type ifb", f"ip link set {_q(obj.name)} addrgenmode none",
                f"ip link set {_q(obj.name)} up"]
    if isinstance(obj, Qdisc):
        if op.action == "delete":
            return [_qdisc("del", obj)]
        if op.action == "recreate":
            assert isinstance(op.old, Qdisc)
            return [_qdisc("del", op.old), _qdisc("add", obj)]
        return [_qdisc("add" if obj.parent == "ingress" else "replace", obj)]
    if isinstance(obj, HtbClass):
        return [f"tc class del dev {_q(obj.dev)} classid {obj.classid}"] if op.action == "delete" else [_class(obj)]
    if isinstance(obj, Policer) and op.action != "delete":
        return [policer_line(obj)]
    if isinstance(obj, Aqm) and op.action != "delete":
        return [aqm_line(obj)]
    if isinstance(obj, WindowClamp) and op.action != "delete":
        return [clamp_line(obj)]
    if isinstance(obj, TcFilter):
        if op.action == "delete":
            return [_filter("del", obj)]
        if op.action == "replace" and isinstance(op.old, U32Filter) and op.old.handle:
            return [_filter("replace", U32Filter(**{**obj.__dict__, "handle": op.old.handle}))]
        if op.action == "replace":
            return [_filter("del", obj), _filter("add", obj)]
        return [_filter("add", obj)]
    raise TypeError(f"cannot render {obj!r}")


def nft_script(ops: Sequence[Operation]) -> str:
    """One nft transaction for consecutive nft operations."""
    lines = [f"add table {_T}"]
    for op in ops:
        for line in _nft(op):
            if line.startswith("add set ") and line in lines:
                continue  # a shared set, listed by every port's plan
            lines.append(line)
    return "\n".join(lines) + "\n"


def render(ops: Sequence[Operation]) -> list[str]:
    commands: list[str] = []
    batch: list[Operation] = []
    for op in [*ops, None]:
        if op is not None and is_nft(op.obj):
            batch.append(op)
            continue
        if batch:
            commands.append(f"nft -f - <<'EOF'\n{nft_script(batch)}EOF")
            batch = []
        if op is not None:
            commands += tc_commands(op)
    return commands
