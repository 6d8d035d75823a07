"""tc over netlink (pyroute2): read qdiscs, classes, filters and their counters back as plan objects.

Reading goes through netlink because iproute2 6.1 prints `tc -j class show` as text and `tc -j
filter show` with duplicate keys; one dump per device costs well under a millisecond. The one
write done here is an HTB class change, the live change an operator makes most (a new rate on a
running port): one netlink request instead of a `tc` process that first dumps every link.
"""

from __future__ import annotations

import errno as errnos
import struct
from dataclasses import dataclass
from typing import Any, Iterable

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.tcmsg import plugins as _tc_plugins
from pyroute2.netlink.rtnl.tcmsg import sched_pfifo

from vmqos.errors import KernelError, NotFound
from vmqos.drivers.process import check_netns
from vmqos.plan.objects import ForeignFilter, HtbClass, IfbLink, KernelObject, Qdisc, U32Filter
from vmqos.plan.u32 import key_selector

# bfifo's options are pfifo's struct (tc_fifo_qopt); pyroute2 only registers the latter.
_tc_plugins.setdefault("bfifo", sched_pfifo)

TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1
ETH_P = {0x0003: "all", 0x0800: "ip", 0x86DD: "ipv6", 0x0806: "arp"}
_PSCHED = "/proc/net/psched"

# What an errno means for the operator, for the kernel's answers to tc requests.
ERRNO_HINTS = {
    errnos.ENOENT: "the object or its parent does not exist (changed by someone else meanwhile?)",
    errnos.ENODEV: "the device does not exist in this network namespace (--netns?)",
    errnos.EEXIST: "an object with this handle already exists (run `vmqos check` to see the drift)",
    errnos.EINVAL: "the kernel rejected the parameters",
    errnos.EOPNOTSUPP: "this kernel lacks the feature (a qdisc, classifier or action that is not built in)",
    errnos.EPERM: "not permitted: vmqos needs root (CAP_NET_ADMIN)",
    errnos.EBUSY: "the device is busy (being changed by another process)",
    errnos.ENOMEM: "the kernel is out of memory",
    errnos.ENOSPC: "the kernel has no room for another object of this kind",
}


def kernel_error(what: str, code: int, detail: str = "") -> KernelError:
    hint = ERRNO_HINTS.get(code, "")
    reason = detail or errnos.errorcode.get(code, str(code))
    return KernelError(f"{what}: {reason}" + (f": {hint}" if hint else ""), errno=code)


def handle_str(handle: int) -> str:
    major, minor = handle >> 16, handle & 0xFFFF
    return f"{major:x}:" if minor == 0 else f"{major:x}:{minor:x}"


def handle_int(text: str) -> int:
    major, _, minor = text.partition(":")
    return (int(major or "0", 16) << 16) | int(minor or "0", 16)


@dataclass(frozen=True)
class TcStats:
    """Counters of one qdisc or class: bytes and packets it sent, what it dropped, what it holds."""

    bytes: int = 0
    packets: int = 0
    drops: int = 0
    overlimits: int = 0
    backlog_bytes: int = 0
    qlen: int = 0


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


def ticks_per_usec() -> float:
    """psched ticks per microsecond on this kernel (15.625 with high-resolution timers)."""
    with open(_PSCHED) as f:
        t2us, us2t = (int(word, 16) for word in f.read().split()[:2])
    return t2us / us2t


@dataclass
class DeviceTc:
    """What one device holds: vmqos-shaped objects (foreign ones included) and their counters."""

    device: str
    exists: bool = True
    objects: list[KernelObject] | None = None
    stats: dict[tuple[Any, ...], TcStats] | None = None


class TcNetlink:
    """One netlink socket in one network namespace; use as a context manager."""

    def __init__(self, netns: str | None = None) -> None:
        check_netns(netns)
        self.netns = netns
        self._ipr = IPRoute(netns=netns) if netns else IPRoute()
        self._ticks = ticks_per_usec()
        self._index: dict[str, int | None] = {}
        self._names: dict[int, str] = {}

    def __enter__(self) -> "TcNetlink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._ipr.close()

    def forget(self, devices: Iterable[str] = ()) -> None:
        """Drop cached ifindexes (after devices were created or deleted)."""
        for device in devices:
            self._index.pop(device, None)

    def index(self, device: str) -> int | None:
        """One RTM_GETLINK by name, cached: never a dump of every link on a host with thousands."""
        if device not in self._index:
            found = self._ipr.link_lookup(ifname=device)
            self._index[device] = found[0] if found else None
            if found:
                self._names[found[0]] = device
        return self._index[device]

    def name(self, index: int) -> str:
        if index not in self._names:
            try:
                self._names[index] = self._ipr.get_links(index)[0].get_attr("IFLA_IFNAME")
            except NetlinkError:
                return f"ifindex {index}"
        return self._names[index]

    def link_stats(self, device: str) -> dict[str, int]:
        """The device's own counters: what the port saw, before any tc or nft drop."""
        idx = self._require(device)
        link = self._ipr.get_links(idx)[0]
        stats = link.get_attr("IFLA_STATS64") or {}
        return {key: stats.get(key, 0) for key in ("rx_bytes", "rx_packets", "tx_bytes", "tx_packets",
                                                    "rx_dropped", "tx_dropped")}

    def _require(self, device: str) -> int:
        idx = self.index(device)
        if idx is None:
            where = f" in network namespace {self.netns}" if self.netns else ""
            raise NotFound(f"device {device!r} does not exist{where}")
        return idx

    # -- reading -------------------------------------------------------------------------------

    def read(self, devices: Iterable[str]) -> dict[str, DeviceTc]:
        devices = list(devices)
        indexes = {device: self.index(device) for device in devices}
        # The kernel dumps the qdiscs of every device in the namespace whatever index is asked
        # for: one dump for all devices, grouped here, keeps the read linear in the port count.
        qdiscs: dict[int, list[Any]] = {}
        if any(idx is not None for idx in indexes.values()):
            wanted = set(indexes.values())
            for msg in self._ipr.get_qdiscs():
                if msg["index"] in wanted:
                    qdiscs.setdefault(msg["index"], []).append(msg)
        out: dict[str, DeviceTc] = {}
        for device, idx in indexes.items():
            if idx is None:
                out[device] = DeviceTc(device, exists=False, objects=[], stats={})
                continue
            objects: list[KernelObject] = []
            stats: dict[tuple[Any, ...], TcStats] = {}
            if device.startswith("vqi"):
                objects.append(IfbLink(device, self._mtu(idx)))
            try:
                self._read_device(device, idx, qdiscs.get(idx, []), objects, stats)
            except NetlinkError as exc:
                if exc.code in (errnos.ENODEV, errnos.ENOENT):  # removed while we read
                    out[device] = DeviceTc(device, exists=False, objects=[], stats={})
                    continue
                raise kernel_error(f"reading tc state of {device}", exc.code) from None
            out[device] = DeviceTc(device, True, objects, stats)
        return out

    def _mtu(self, idx: int) -> int:
        return self._ipr.get_links(idx)[0].get_attr("IFLA_MTU")

    def _read_device(self, dev: str, idx: int, qdiscs: list[Any], objects: list[KernelObject],
                     stats: dict[tuple[Any, ...], TcStats]) -> None:
        filter_parents: list[int] = []
        for msg in qdiscs:
            qdisc = self._qdisc(dev, msg)
            if qdisc is None:
                continue
            objects.append(qdisc)
            stats[qdisc.key] = _stats(msg)
            if qdisc.qdisc_kind in ("htb", "ingress", "clsact") or qdisc.parent == "root":
                filter_parents.append(msg["handle"])
        if not filter_parents:
            return  # only the kernel's default qdisc: no classes, no filters to read
        for msg in self._ipr.get_classes(index=idx):
            cls = self._class(dev, msg)
            if cls is not None:
                objects.append(cls)
                stats[cls.key] = _stats(msg)
        for parent in filter_parents:
            seen: set[int] = set()
            for msg in self._ipr.get_filters(index=idx, parent=parent):
                flt = self._filter(dev, parent, msg)
                prio = msg["info"] >> 16
                if flt is None or prio in seen:
                    continue
                seen.add(prio)
                objects.append(flt)

    def _qdisc(self, dev: str, msg: Any) -> Qdisc | None:
        handle, parent, kind = msg["handle"], msg["parent"], msg.get_attr("TCA_KIND")
        if parent == TC_H_ROOT and handle == 0:
            return None  # the kernel's default (noqueue, pfifo_fast, mq): nothing configured
        if parent == TC_H_INGRESS:
            return Qdisc(dev, "ingress", "ffff:", kind)
        if handle == 0:
            return None  # children of a default mq
        opts = msg.get_attr("TCA_OPTIONS")
        where = "root" if parent == TC_H_ROOT else handle_str(parent)
        if kind == "htb":
            init = opts.get_attr("TCA_HTB_INIT") if opts is not None else None
            return Qdisc(dev, where, handle_str(handle), "htb", default_minor=init["defcls"] if init else None)
        if kind == "bfifo":
            return Qdisc(dev, where, handle_str(handle), "bfifo", limit_bytes=opts["limit"] if opts else None)
        return Qdisc(dev, where, handle_str(handle), kind)

    def _class(self, dev: str, msg: Any) -> HtbClass | None:
        if msg.get_attr("TCA_KIND") != "htb":
            return None
        opts = msg.get_attr("TCA_OPTIONS")
        parms = opts.get_attr("TCA_HTB_PARMS")
        rate = opts.get_attr("TCA_HTB_RATE64") or parms["rate"]
        ceil = opts.get_attr("TCA_HTB_CEIL64") or parms["ceil"]
        parent, handle = msg["parent"], msg["handle"]
        return HtbClass(
            dev=dev, classid=handle_str(handle),
            parent=handle_str(parent) if parent != TC_H_ROOT else handle_str(handle & 0xFFFF0000),
            rate_bps=rate * 8, ceil_bps=ceil * 8,
            burst_bytes=self._bytes(parms["buffer"], rate), cburst_bytes=self._bytes(parms["cbuffer"], ceil),
            quantum=parms["quantum"],
        )

    def _bytes(self, ticks: int, rate_bytes: int) -> int:
        """A bucket kept as transmission time back into bytes (tc's xmitsize)."""
        return round(ticks / self._ticks * rate_bytes / 1_000_000)

    def _filter(self, dev: str, parent: int, msg: Any) -> KernelObject | None:
        kind = msg.get_attr("TCA_KIND")
        prio, proto = msg["info"] >> 16, msg["info"] & 0xFFFF
        proto = int.from_bytes(proto.to_bytes(2, "little"), "big")  # carried in network order
        protocol = ETH_P.get(proto, f"{proto:#06x}")
        where = handle_str(parent)
        if kind != "u32":
            return ForeignFilter(dev, where, prio, protocol, kind or "?")
        opts = msg.get_attr("TCA_OPTIONS")
        if opts is None or opts.get_attr("TCA_U32_SEL") is None:
            return None  # the hash table nodes u32 creates around each filter
        keys = _u32_keys(opts.get_attr("TCA_U32_SEL"))
        classid = opts.get_attr("TCA_U32_CLASSID")
        redirect = self._redirect(opts.get_attr("TCA_U32_ACT"))
        if redirect is False:
            return ForeignFilter(dev, where, prio, protocol, "u32 with actions vmqos does not use")
        return U32Filter(dev, where, prio, protocol, tuple(key_selector(k) for k in keys),
                         flowid=handle_str(classid) if classid is not None else None,
                         redirect_to=redirect or None, handle=f"{msg['handle'] >> 20:x}::{msg['handle'] & 0xFFF:x}")

    def _redirect(self, acts: Any) -> str | None | bool:
        """The IFB a mirred action redirects to; None without actions; False for any other action."""
        if acts is None:
            return None
        target: str | None = None
        for _, act in acts["attrs"]:
            if act.get_attr("TCA_ACT_KIND") != "mirred":
                return False
            parms = act.get_attr("TCA_ACT_OPTIONS").get_attr("TCA_MIRRED_PARMS")
            if parms["eaction"] != 1:  # TCA_EGRESS_REDIR
                return False
            target = self.name(parms["ifindex"])
        return target

    # -- the live-change fast path -------------------------------------------------------------

    @staticmethod
    def can_replace(obj: KernelObject) -> bool:
        """What a live rate change touches: HTB classes and the leaves' bfifo limits."""
        return isinstance(obj, HtbClass) or (isinstance(obj, Qdisc) and obj.qdisc_kind == "bfifo")

    def replace(self, obj: KernelObject) -> None:
        """Change one class or leaf queue in place: one netlink request, no `tc` process."""
        assert self.can_replace(obj)
        idx = self._require(obj.device or "")
        try:
            if isinstance(obj, HtbClass):
                self._ipr.tc("replace-class", "htb", idx, handle_int(obj.classid), parent=handle_int(obj.parent),
                             rate=obj.rate_bps // 8, ceil=obj.ceil_bps // 8, burst=obj.burst_bytes,
                             cburst=obj.cburst_bytes, quantum=obj.quantum)
            else:
                assert isinstance(obj, Qdisc)
                self._ipr.tc("replace", "bfifo", idx, handle_int(obj.handle), parent=handle_int(obj.parent),
                             limit=obj.limit_bytes)
        except NetlinkError as exc:
            raise kernel_error(f"replace {obj.describe()}", exc.code) from None


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
