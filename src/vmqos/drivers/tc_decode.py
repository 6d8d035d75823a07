"""tc's answers decoded into plain values: netlink messages and `tc -j` JSON alike.

Split from the netlink reader (`tc_netlink`) so that what the kernel's structures mean (qdisc
options, counters, u32 keys, errnos) is read in one place, apart from how they are fetched.
Nothing here opens a socket or starts a process, except `ticks_per_usec` reading /proc.
"""

from __future__ import annotations

import errno as errnos
import functools
import struct
from dataclasses import dataclass
from typing import Any

from vmqos.core.errors import KernelError
from vmqos.core.observed import TcStats
from vmqos.core.plan.handles import TC_H_INGRESS, TC_H_ROOT, handle_int, handle_str
from vmqos.core.plan.objects import HtbClass, KernelObject, Policer, Qdisc
from vmqos.core.plan.tc_objects import live_replaceable
from vmqos.drivers.privileges import CAP_NET_ADMIN, refused

ETH_P = {0x0003: "all", 0x0800: "ip", 0x86DD: "ipv6", 0x0806: "arp"}
_PSCHED = "/proc/net/psched"

# What an errno means for the operator, for the kernel's answers to tc requests.
ERRNO_HINTS = {
    errnos.ENOENT: "the object or its parent does not exist (changed by someone else meanwhile?)",
    errnos.ENODEV: "the device does not exist in this network namespace (--netns?)",
    errnos.EEXIST: "an object with this handle already exists (run `vmqos check` to see the drift)",
    errnos.EINVAL: "the kernel rejected the parameters",
    errnos.EOPNOTSUPP: "this kernel lacks the feature (a qdisc, classifier or action that is not built in)",
    errnos.EPERM: "not permitted, although vmqos has CAP_NET_ADMIN (a security module or a read-only object?)",
    errnos.EBUSY: "the device is busy (being changed by another process)",
    errnos.ENOMEM: "the kernel is out of memory",
    errnos.ENOSPC: "the kernel has no room for another object of this kind",
}


def kernel_error(what: str, code: int, detail: str = "") -> KernelError:
    """A netlink refusal as one line; EPERM/EACCES without CAP_NET_ADMIN says that root is needed."""
    lacking = refused(what, code, CAP_NET_ADMIN)
    if lacking is not None:
        return lacking
    hint = ERRNO_HINTS.get(code, "")
    reason = detail or errnos.errorcode.get(code, str(code))
    return KernelError(f"{what}: {reason}" + (f": {hint}" if hint else ""), errno=code)


def _stats(msg: Any) -> TcStats:
    stats2 = msg.get_attr("TCA_STATS2")
    basic = queue = None
    if stats2 is not None:
        basic = stats2.get_attr("TCA_STATS_BASIC")
        queue = stats2.get_attr("TCA_STATS_QUEUE")
    old = msg.get_attr("TCA_STATS") or {}
    basic = basic or old
    queue = queue or old
    return TcStats(bytes=basic.get("bytes", 0), packets=basic.get("packets", 0), drops=queue.get("drops", 0),
                   overlimits=queue.get("overlimits", 0), backlog_bytes=queue.get("backlog", 0),
                   qlen=queue.get("qlen", 0))


def _stats_json(item: dict[str, Any]) -> TcStats:
    return TcStats(bytes=item.get("bytes", 0), packets=item.get("packets", 0), drops=item.get("drops", 0),
                   overlimits=item.get("overlimits", 0), backlog_bytes=item.get("backlog", 0),
                   qlen=item.get("qlen", 0))


@dataclass(frozen=True)
class RawQdisc:
    """One qdisc as the kernel reports it, whether read over netlink or from `tc -j qdisc show`."""

    handle: int
    parent: int
    kind: str
    stats: TcStats
    default_minor: int | None = None  # htb
    limit_bytes: int | None = None  # bfifo, tbf
    rate_bytes: int | None = None  # tbf, bytes/s
    burst_bytes: int | None = None  # tbf


def _raw_from_msg(msg: Any) -> RawQdisc:
    kind = msg.get_attr("TCA_KIND") or "?"
    opts = msg.get_attr("TCA_OPTIONS")
    default = limit = None
    if kind == "htb" and opts is not None:
        init = opts.get_attr("TCA_HTB_INIT")
        default = init["defcls"] if init else None
    elif kind == "bfifo" and opts:
        limit = opts["limit"]
    elif kind == "tbf" and opts is not None:
        parms = opts.get_attr("TCA_TBF_PARMS")
        if parms is not None:
            rate = parms["rate"]
            return RawQdisc(msg["handle"], msg["parent"], kind, _stats(msg), limit_bytes=parms["limit"],
                            rate_bytes=rate, burst_bytes=tbf_burst_bytes(parms["buffer"], rate))
    return RawQdisc(msg["handle"], msg["parent"], kind, _stats(msg), default, limit)


def _raw_from_json(item: dict[str, Any]) -> RawQdisc:
    kind = item.get("kind", "?")
    opts = item.get("options") or {}
    default = limit = None
    if kind == "htb" and "default" in opts:
        default = int(str(opts["default"]), 0)
    elif kind == "bfifo" and "limit" in opts:
        limit = int(opts["limit"])
    parent = TC_H_ROOT if item.get("root") else handle_int(item.get("parent", "0:"))
    if kind == "tbf" and "rate" in opts:
        rate = int(opts["rate"])
        if "burst_raw" in opts and "limit" in opts:  # `tc -r`: what the kernel holds, as netlink gives it
            burst, queue = tbf_burst_bytes(int(str(opts["burst_raw"]), 16), rate), int(opts["limit"])
        else:
            # Without -r iproute2 prints the bucket cut to whole microseconds at the rate (its
            # tc_core_tick2time and tc_calc_xmitsize truncate: 37,462 bytes for a kernel's 37,498) and
            # the queue as the time it takes after the bucket (`lat`); both only near what it holds.
            burst = int(opts.get("burst", 0))
            queue = round(int(opts.get("lat", 0)) * rate / 1_000_000) + burst
        return RawQdisc(handle_int(item.get("handle", "0:")), parent, kind, _stats_json(item),
                        limit_bytes=queue, rate_bytes=rate, burst_bytes=burst)
    return RawQdisc(handle_int(item.get("handle", "0:")), parent, kind, _stats_json(item), default, limit)


def tbf_burst_bytes(ticks: int, rate_bytes: int) -> int:
    """A TBF's bucket, kept by the kernel as psched ticks of transmission time at its rate, in bytes.

    Rounded, as `tc_netlink._bytes` does for HTB's buckets, not cut to whole microseconds as
    iproute2's plain print does: both read paths (netlink, `tc -j -r`) give the same number, within
    a 64 ns tick of what the plan asked for."""
    return round(ticks / ticks_per_usec() * rate_bytes / 1_000_000)


@functools.cache
def ticks_per_usec() -> float:
    """psched ticks per microsecond on this kernel (15.625 with high-resolution timers)."""
    with open(_PSCHED) as f:
        t2us, us2t = (int(word, 16) for word in f.read().split()[:2])
    return t2us / us2t


def qdisc_object(dev: str, raw: RawQdisc) -> Qdisc | None:
    """The plan object of a qdisc the kernel reported; None for the kernel's defaults."""
    handle, parent, kind = raw.handle, raw.parent, raw.kind
    if parent == TC_H_ROOT and handle == 0:
        return None  # the kernel's default (noqueue, pfifo_fast, mq): nothing configured
    if parent == TC_H_INGRESS:
        return Qdisc(dev, "ingress", "ffff:", kind)
    if handle == 0:
        return None  # children of a default mq
    where = "root" if parent == TC_H_ROOT else handle_str(parent)
    if kind == "htb":
        return Qdisc(dev, where, handle_str(handle), "htb", default_minor=raw.default_minor)
    if kind == "bfifo":
        return Qdisc(dev, where, handle_str(handle), "bfifo", limit_bytes=raw.limit_bytes)
    if kind == "tbf":
        return Qdisc(dev, where, handle_str(handle), "tbf", limit_bytes=raw.limit_bytes,
                     rate_bps=raw.rate_bytes * 8 if raw.rate_bytes is not None else None, burst_bytes=raw.burst_bytes)
    return Qdisc(dev, where, handle_str(handle), kind)


def _u32_keys(sel: Any) -> list[tuple[int, int, int]]:
    # pyroute2 0.9.7 decodes tc_u32_key four bytes off, so read the raw attribute: a 16-byte
    # tc_u32_sel header, then nkeys x (be32 mask, be32 val, int off, int offmask).
    raw = bytes(sel.data[sel.offset + 4:sel.offset + sel.length])
    nkeys = raw[2]
    keys = []
    for i in range(nkeys):
        mask, val = struct.unpack_from(">II", raw, 16 + 16 * i)
        off, _offmask = struct.unpack_from("=ii", raw, 24 + 16 * i)
        keys.append((val, mask, off))
    return sorted(keys)
