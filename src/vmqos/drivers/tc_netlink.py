"""tc over netlink (pyroute2): read qdiscs, classes, filters and their counters back as plan objects.

Two ways to read, chosen by how many devices are asked for:
- a few (a live change): requests for exactly those devices -- the link by name, the root and
  ingress qdiscs and each leaf's queue by parent (non-dump RTM_GETQDISC; this kernel answers it
  only with NLM_F_ECHO), classes and filters dumped for the device. About 2 ms for a port and its
  IFB, whatever else the namespace holds.
- many (an apply, a check): one `ip -j link show` and one `tc -s -j qdisc show` for the whole
  namespace (the kernel dumps every device's qdiscs whatever index is asked for, and iproute2
  decodes them 20-30 times faster than pyroute2), then classes and filters over netlink only on
  devices that hold a classful or ingress qdisc.
Classes and filters always come over netlink: iproute2 6.1 prints `tc -j class show` as text and
`tc -j filter show` with duplicate keys.

The writes done here are the live changes an operator makes most (a new rate on a running port:
HTB classes and leaf queue limits): one netlink request each instead of a `tc` process that
first dumps every link.
"""

from __future__ import annotations

import errno as errnos
import json
from typing import Any, Iterable

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_ECHO, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_GETQDISC
from pyroute2.netlink.rtnl.tcmsg import plugins as _tc_plugins
from pyroute2.netlink.rtnl.tcmsg import sched_pfifo, tcmsg

from vmqos.core.errors import KernelError, NotFound
from vmqos.core.observed import TcStats
from vmqos.core.plan.handles import TC_H_INGRESS, TC_H_ROOT, handle_int, handle_str
from vmqos.core.plan.objects import (
    Aqm,
    ForeignFilter,
    HtbClass,
    IfbLink,
    KernelObject,
    Policer,
    Qdisc,
    U32Filter,
    WindowClamp,
)
from vmqos.core.plan.tc_objects import CLSACT_EGRESS, CLSACT_INGRESS
from vmqos.core.plan.u32 import key_selector
from vmqos.drivers import bpf_aqm, bpf_police, bpf_rwnd
from vmqos.drivers.privileges import open_in_netns
from vmqos.drivers.process import check_netns, run
from vmqos.drivers.protocols import DeviceTc
from vmqos.drivers.tc_decode import (
    ERRNO_HINTS,
    ETH_P,
    RawQdisc,
    _raw_from_json,
    _raw_from_msg,
    _stats,
    _u32_keys,
    kernel_error,
    live_replaceable,
    qdisc_object,
    ticks_per_usec,
)

__all__ = ["BULK_READ_MIN", "DeviceTc", "ERRNO_HINTS", "RawQdisc", "TcNetlink", "kernel_error", "ticks_per_usec"]

# bfifo's options are pfifo's struct (tc_fifo_qopt); pyroute2 only registers the latter.
_tc_plugins.setdefault("bfifo", sched_pfifo)

# From this many devices on, one namespace-wide `ip -j link` + `tc -j qdisc` costs less than
# about six requests per device (each ~0.15-0.3 ms in pyroute2).
BULK_READ_MIN = 24


class TcNetlink:
    """One netlink socket in one network namespace; use as a context manager."""

    def __init__(self, netns: str | None = None) -> None:
        check_netns(netns)
        self.netns = netns
        self._ipr = open_in_netns(netns, IPRoute)
        self._ipr.status["nlm_generator"] = False  # pyroute2 0.9.7's sync nlm_request reads this key
        self._ticks = ticks_per_usec()
        self._index: dict[str, int | None] = {}
        self._names: dict[int, str] = {}
        self._mtus: dict[str, int] = {}

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
            self._mtus.pop(device, None)

    def forget_all(self) -> None:
        """Drop every cached ifindex and MTU: for a socket kept across passes, where any device may
        have been deleted and made again (a new index) since the last one."""
        self._index, self._names, self._mtus = {}, {}, {}

    def index(self, device: str) -> int | None:
        """One RTM_GETLINK by name, cached: never a dump of every link on a host with thousands."""
        if device not in self._index:
            found = self._ipr.link_lookup(ifname=device)
            self._index[device] = found[0] if found else None
            if found:
                self._names[found[0]] = device
        return self._index[device]

    def exists(self, device: str) -> bool:
        """Whether the device exists now (one RTM_GETLINK, not the cache)."""
        self.forget([device])
        return self.index(device) is not None

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
        devices = list(dict.fromkeys(devices))
        bulk = len(devices) >= BULK_READ_MIN
        qdiscs: dict[str, list[RawQdisc]] = self._all_qdiscs() if bulk else {}
        links = self._all_links() if bulk else None
        out: dict[str, DeviceTc] = {}
        for device in devices:
            idx = links.get(device) if links is not None else self.index(device)
            if idx is None:
                out[device] = DeviceTc(device, exists=False, objects=[], stats={})
                continue
            objects: list[KernelObject] = []
            stats: dict[tuple[Any, ...], TcStats] = {}
            try:
                if device.startswith("vqi"):
                    objects.append(IfbLink(device, self._mtu(device, idx)))
                classes: list[Any] | None = None
                if bulk:
                    raw = qdiscs.get(device, [])
                else:
                    raw, classes = self._device_qdiscs(idx)
                self._read_device(device, idx, raw, objects, stats, classes)
            except NetlinkError as exc:
                if exc.code in (errnos.ENODEV, errnos.ENOENT):  # removed while we read
                    out[device] = DeviceTc(device, exists=False, objects=[], stats={})
                    continue
                raise kernel_error(f"reading tc state of {device}", exc.code) from None
            out[device] = DeviceTc(device, True, objects, stats)
        return out

    # -- namespace-wide reads (many devices) ---------------------------------------------------

    def _tool_json(self, tool: str, *args: str) -> list[dict[str, Any]]:
        argv = [tool, *(("-n", self.netns) if self.netns else ()), *args]
        done = run(argv, None, check=False, timeout=300)
        if done.returncode != 0:
            raise KernelError(f"{' '.join(argv)} failed: {(done.stderr or done.stdout).strip()[:300]}")
        try:
            return json.loads(done.stdout or "[]")
        except json.JSONDecodeError as exc:
            raise KernelError(f"{' '.join(argv)} printed JSON that does not parse: {exc}") from None

    def _all_links(self) -> dict[str, int]:
        """Every link's index (and MTU, into the caches) from one `ip -j link show`."""
        found: dict[str, int] = {}
        self._index, self._names, self._mtus = {}, {}, {}
        for link in self._tool_json("ip", "-j", "link", "show"):
            name, idx = link["ifname"], link["ifindex"]
            self._index[name] = found[name] = idx
            self._names[idx] = name
            self._mtus[name] = link.get("mtu", 0)
        return found

    def _all_qdiscs(self) -> dict[str, list[RawQdisc]]:
        by_dev: dict[str, list[RawQdisc]] = {}
        for item in self._tool_json("tc", "-s", "-j", "-r", "qdisc", "show"):  # -r: a TBF's exact bucket and queue
            by_dev.setdefault(item.get("dev", ""), []).append(_raw_from_json(item))
        return by_dev

    # -- per-device reads (a few devices) ------------------------------------------------------

    def _get_qdisc(self, idx: int, parent: int) -> RawQdisc | None:
        """The qdisc attached at `parent` (root, ingress or a class), or None."""
        msg = tcmsg()
        msg["index"], msg["parent"], msg["handle"] = idx, parent, 0
        try:
            # Without NLM_F_ECHO this kernel acknowledges a non-dump get without sending the qdisc;
            # the ACK ends the wait when there is nothing to send (an invisible default qdisc).
            replies = self._ipr.nlm_request(msg, RTM_GETQDISC, NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO)
        except NetlinkError as exc:
            if exc.code in (errnos.ENOENT, errnos.EINVAL):
                return None
            raise
        found = next((_raw_from_msg(r) for r in replies if r.get("header", {}).get("type") != 2
                      and r.get_attr("TCA_KIND")), None)
        if found is not None:
            self._drop_stray()
        return found

    def _drop_stray(self) -> None:
        """pyroute2 stops reading at the reply: the ACK behind it lands in the socket's untagged
        queue, where nothing would ever read it. Drop it so that a long-lived reader does not grow."""
        queue = getattr(getattr(self._ipr.asyncore, "msg_queue", None), "queues", {}).get(0)
        while queue is not None and not queue.empty():
            queue.get_nowait()
            queue.task_done()

    def _device_qdiscs(self, idx: int) -> tuple[list[RawQdisc], list[Any] | None]:
        """The root and ingress qdiscs, the queue of every leaf class below the root, and the classes
        (None: not read, there is no HTB root)."""
        found = [q for q in (self._get_qdisc(idx, TC_H_ROOT), self._get_qdisc(idx, TC_H_INGRESS)) if q is not None]
        classes = None
        if any(q.parent == TC_H_ROOT and q.handle and q.kind == "htb" for q in found):
            classes = list(self._ipr.get_classes(index=idx))
            for msg in classes:
                if msg["info"]:  # a leaf: the kernel names its queue's handle here
                    leaf = self._get_qdisc(idx, msg["handle"])
                    if leaf is not None:
                        found.append(leaf)
        return found, classes

    def _mtu(self, device: str, idx: int) -> int:
        if device not in self._mtus:
            self._mtus[device] = self._ipr.get_links(idx)[0].get_attr("IFLA_MTU")
        return self._mtus[device]

    def _read_device(self, dev: str, idx: int, qdiscs: list[RawQdisc], objects: list[KernelObject],
                     stats: dict[tuple[Any, ...], TcStats], classes: list[Any] | None = None) -> None:
        filter_parents: list[int] = []
        for raw in qdiscs:
            qdisc = qdisc_object(dev, raw)
            if qdisc is None:
                continue
            objects.append(qdisc)
            stats[qdisc.key] = raw.stats
            if qdisc.qdisc_kind == "clsact":  # its filters hang on its two hooks, not on its handle
                filter_parents += [handle_int(CLSACT_INGRESS), handle_int(CLSACT_EGRESS)]
            elif qdisc.qdisc_kind in ("htb", "ingress") or qdisc.parent == "root":
                filter_parents.append(raw.handle)
        if not filter_parents:
            return  # only the kernel's default qdisc: no classes, no filters to read
        for msg in classes if classes is not None else self._ipr.get_classes(index=idx):
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
            quantum=parms["quantum"], prio=parms["prio"],
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
        if kind == "bpf" and msg.get_attr("TCA_OPTIONS") is None:
            return None  # the classifier's head, listed before its filters
        program = bpf_police.prog_id(msg) if kind == "bpf" else None
        if program is not None:
            return bpf_police.observed(dev, where, prio, protocol, program)
        program = bpf_aqm.prog_id(msg) if kind == "bpf" else None
        if program is not None:
            return bpf_aqm.observed(dev, where, prio, protocol, program)
        program = bpf_rwnd.prog_id(msg) if kind == "bpf" else None
        if program is not None:
            return bpf_rwnd.observed(dev, where, prio, protocol, program)
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
                         redirect_to=redirect if isinstance(redirect, str) and redirect else None,
                         handle=f"{msg['handle'] >> 20:x}::{msg['handle'] & 0xFFF:x}")

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
        """What a live rate change touches: HTB classes, the leaves' queues, police mode's bucket."""
        return live_replaceable(obj)

    def replace(self, obj: KernelObject) -> None:
        """Change one class, leaf queue or policer in place (a policer is also created here: tc cannot
        load its program): one netlink request, no `tc` process."""
        assert self.can_replace(obj)
        idx = self._require(obj.device or "")
        try:
            if isinstance(obj, Policer):
                bpf_police.put(self._ipr, idx, obj)
            elif isinstance(obj, Aqm):
                bpf_aqm.put(self._ipr, idx, obj)
            elif isinstance(obj, WindowClamp):
                bpf_rwnd.put(self._ipr, idx, obj)
            elif isinstance(obj, HtbClass):
                self._ipr.tc("replace-class", "htb", idx, handle_int(obj.classid), parent=handle_int(obj.parent),
                             rate=obj.rate_bps // 8, ceil=obj.ceil_bps // 8, burst=obj.burst_bytes,
                             cburst=obj.cburst_bytes, quantum=obj.quantum, prio=obj.prio)
            elif isinstance(obj, Qdisc) and obj.qdisc_kind == "tbf":
                # 32-bit bytes/s in TCA_TBF_PARMS: a segmenting leaf runs at ten times a ceiling under
                # 52 Mbit/s, far below the 34 Gbit/s that field holds.
                self._ipr.tc("replace", "tbf", idx, handle_int(obj.handle), parent=handle_int(obj.parent),
                             rate=(obj.rate_bps or 0) // 8, burst=obj.burst_bytes, limit=obj.limit_bytes)
            else:
                assert isinstance(obj, Qdisc)
                self._ipr.tc("replace", "bfifo", idx, handle_int(obj.handle), parent=handle_int(obj.parent),
                             limit=obj.limit_bytes)
        except NetlinkError as exc:
            raise kernel_error(f"replace {obj.describe()}", exc.code) from None
