"""The fake kernel's links and tc: `ip`/`tc -batch` lines as the renderer writes them, and netlink reads.

Lines are read back into the same plan objects the netlink reader builds (`KernelObject`s keyed
by device and handle), so that `diff` sees the fake exactly as it sees the kernel. What the
kernel refuses is refused here with the message `ip`/`tc` prints, so that a failure reaches the
reconciler as from a real batch.
"""

from __future__ import annotations

import errno as errnos
import shlex
from dataclasses import replace
from typing import Iterable, Sequence

from vmqos.core.errors import KernelError, NotFound
from vmqos.core.observed import TcStats
from vmqos.core.plan.batch_line import batch_words, unfit_for_batch
from vmqos.core.plan.diff import Operation
from vmqos.core.plan.tc_objects import CLSACT_EGRESS, CLSACT_INGRESS, live_replaceable
from vmqos.core.plan.objects import HtbClass, IfbLink, KernelObject, Qdisc, TcFilter, U32Filter, is_program
from vmqos.core.plan.render import tc_commands
from vmqos.core.units import parse_rate, parse_size
from vmqos.drivers.fake.kernel import Device, FakeKernel
from vmqos.drivers.protocols import DeviceTc, LineFailure

IFNAMSIZ = 16
ENOENT = "RTNETLINK answers: No such file or directory"
EEXIST = "RTNETLINK answers: File exists"


class Refused(Exception):
    """A line the fake kernel refuses, with what `ip`/`tc` would print."""

    def __init__(self, message: str, errno: int | None) -> None:
        super().__init__(message)
        self.message, self.errno = message, errno


def _no_device(name: str) -> Refused:
    return Refused(f'Cannot find device "{name}"', errnos.ENODEV)


def _opts(words: list[str]) -> dict[str, str]:
    """`key value` pairs of a command line, the first of each key (`protocol ip` before a u32
    `match ip protocol 6`); flags without a value are looked for by the callers."""
    out: dict[str, str] = {}
    for i in range(len(words) - 1):
        out.setdefault(words[i], words[i + 1])
    return out


class FakeBatch:
    """`run_batch` for the fake kernel: every line tried (as with -force), the refused ones returned."""

    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel

    def __call__(self, tool: str, lines: Sequence[str], netns: str | None) -> list[LineFailure]:
        failures: list[LineFailure] = []
        for index, line in enumerate(lines):
            with self.kernel.lock:
                try:
                    unfit = unfit_for_batch(line)  # the real runner never sends such a line
                    if unfit is not None:
                        raise Refused(f"not run: {unfit}", errnos.EINVAL)
                    injected = self.kernel.injected(line)
                    if injected is not None:
                        raise Refused(injected.message, injected.errno)
                    (self._ip if tool == "ip" else self._tc)(batch_words(line))
                except Refused as exc:
                    self.kernel.record(tool, line, ok=False)
                    failures.append(LineFailure(index, exc.message, exc.errno))
                    continue
                self.kernel.record(tool, line)
            self.kernel.changed()
        return failures

    # -- ip link ---------------------------------------------------------------------------------

    def _ip(self, w: list[str]) -> None:
        devices = self.kernel.devices
        assert w[0] == "link", w
        if w[1] == "add":
            name = w[2]
            if len(name) >= IFNAMSIZ:
                raise Refused(f'Error: argument "{name}" is wrong: "name" not a valid ifname', errnos.EINVAL)
            if name in devices:
                raise Refused(EEXIST, errnos.EEXIST)
            opts = _opts(w[3:])
            devices[name] = Device(name, opts.get("type", "veth"), int(opts.get("mtu", "1500")), up=False)
        elif w[1] == "set":
            if w[2] not in devices:
                raise _no_device(w[2])
            if "up" in w[3:]:
                devices[w[2]].up = True
        elif w[1] == "del":
            if w[2] not in devices:
                raise _no_device(w[2])
            del devices[w[2]]
        else:
            raise Refused(f'Command "{w[1]}" is unknown, try "ip link help".', errnos.EINVAL)

    # -- tc --------------------------------------------------------------------------------------

    def _tc(self, w: list[str]) -> None:
        what, verb, rest = w[0], w[1], w[2:]
        opts = _opts(rest)
        dev = opts.get("dev", "")
        if dev not in self.kernel.devices:
            raise _no_device(dev)
        device = self.kernel.devices[dev]
        if what == "qdisc":
            self.put_qdisc(device, verb, rest, opts)
        elif what == "class":
            self._class(device, verb, rest, opts)
        elif what == "filter":
            self._filter(device, verb, rest, opts)
        else:
            raise Refused(f'Object "{what}" is unknown, try "tc help".', errnos.EINVAL)

    def put_qdisc(self, device: Device, verb: str, w: list[str], opts: dict[str, str]) -> None:
        if "clsact" in w:  # the kernel keeps it where an ingress qdisc goes: one or the other
            new = Qdisc(device.name, "ingress", "ffff:", "clsact")
        elif "ingress" in w:
            new = Qdisc(device.name, "ingress", "ffff:", "ingress")
        elif "root" in w:
            new = self._qdisc_of(device.name, "root", w, opts)
        else:
            new = self._qdisc_of(device.name, opts["parent"], w, opts)
        old = device.objects.get(new.key)
        if verb == "del":
            if old is None:
                raise Refused(ENOENT, errnos.ENOENT)
            self.kernel.remove(device.name, old)
            return
        if new.parent not in ("root", "ingress") and ("class", device.name, new.parent) not in device.objects:
            raise Refused(ENOENT, errnos.ENOENT)  # no class to attach to
        if old is not None and verb == "add":
            raise Refused(EEXIST, errnos.EEXIST)
        if isinstance(old, Qdisc) and old.handle == new.handle and old.qdisc_kind == new.qdisc_kind == "htb" \
                and old != new:
            raise Refused("Error: Change operation not supported by specified qdisc.", errnos.EOPNOTSUPP)
        if isinstance(old, Qdisc) and old.handle == new.handle and old.qdisc_kind != new.qdisc_kind:
            raise Refused("Error: Invalid qdisc name: must match existing qdisc.", errnos.EINVAL)
        if isinstance(old, Qdisc) and old.handle != new.handle:
            self.kernel.remove(device.name, old)  # grafted over: the old one goes with what it held
        device.objects[new.key] = new

    @staticmethod
    def _qdisc_of(dev: str, parent: str, w: list[str], opts: dict[str, str]) -> Qdisc:
        handle = opts.get("handle", "0:")
        if "htb" in w:
            return Qdisc(dev, parent, handle, "htb", default_minor=int(opts.get("default", "0"), 16))
        if "bfifo" in w:
            return Qdisc(dev, parent, handle, "bfifo", limit_bytes=int(opts["limit"]) if "limit" in opts else None)
        if "tbf" in w:
            return Qdisc(dev, parent, handle, "tbf", limit_bytes=int(opts["limit"]), rate_bps=parse_rate(opts["rate"]),
                         burst_bytes=parse_size(opts["burst"]))
        return Qdisc(dev, parent, handle, "?")  # a delete names no kind

    def _class(self, device: Device, verb: str, w: list[str], opts: dict[str, str]) -> None:
        classid = opts["classid"]
        key = ("class", device.name, classid)
        if verb == "del":
            old = device.objects.get(key)
            if old is None:
                raise Refused(ENOENT, errnos.ENOENT)
            if any(isinstance(o, HtbClass) and o.parent == classid for o in device.objects.values()):
                raise Refused("RTNETLINK answers: Device or resource busy", errnos.EBUSY)
            self.kernel.remove(device.name, old)
            return
        new = HtbClass(device.name, classid, opts["parent"], parse_rate(opts["rate"]), parse_rate(opts["ceil"]),
                       parse_size(opts["burst"]), parse_size(opts["cburst"]), int(opts["quantum"]),
                       prio=int(opts.get("prio", "0")))
        self.put_class(device, new)

    def put_class(self, device: Device, new: HtbClass) -> None:
        """`tc class replace`: the HTB root must hold it, and its parent class must exist."""
        root = device.objects.get(("qdisc", device.name, "root"))
        major = new.classid.split(":")[0] + ":"
        if not isinstance(root, Qdisc) or root.qdisc_kind != "htb" or root.handle != major:
            raise Refused(ENOENT, errnos.ENOENT)
        if not new.parent.endswith(":") and ("class", device.name, new.parent) not in device.objects:
            raise Refused(ENOENT, errnos.ENOENT)
        old = device.objects.get(new.key)
        if isinstance(old, HtbClass) and any(isinstance(o, HtbClass) and o.parent == new.classid
                                             for o in device.objects.values()):
            # As sch_htb's htb_change_class: only a leaf takes a new quantum; a class with
            # children keeps the one it was created with.
            new = replace(new, quantum=old.quantum)
        device.objects[new.key] = new

    def _filter(self, device: Device, verb: str, w: list[str], opts: dict[str, str]) -> None:
        parent, prio = opts["parent"], int(opts["prio"])
        key = ("filter", device.name, parent, prio)
        if verb == "del":
            old = device.objects.get(key)
            if old is None:
                raise Refused(ENOENT, errnos.ENOENT)
            self.kernel.remove(device.name, old)
            return
        holder = [o for o in device.objects.values() if isinstance(o, Qdisc) and o.handle == parent
                  and o.parent in ("root", "ingress")]
        if not holder:
            raise Refused(ENOENT, errnos.ENOENT)
        if verb == "add" and key in device.objects:
            raise Refused(EEXIST, errnos.EEXIST)
        matches: list[str] = []
        i = w.index("u32") + 1
        while i < len(w) and w[i] == "match":
            j = i + 1
            while j < len(w) and w[j] not in ("match", "flowid", "action"):
                j += 1
            matches.append(" ".join(w[i + 1:j]))
            i = j
        redirect: str | None = None
        if "action" in w:
            redirect = w[w.index("redirect") + 2]
            if redirect not in self.kernel.devices:
                raise _no_device(redirect)
        device.objects[key] = U32Filter(device.name, parent, prio, opts["protocol"], tuple(matches),
                                        flowid=opts.get("flowid"), redirect_to=redirect, handle="800::800")


class FakeTc:
    """`TcDriver` over the fake kernel: reads its devices, and replaces classes and leaf queues in place."""

    def __init__(self, kernel: FakeKernel, netns: str | None = None) -> None:
        self.kernel = kernel
        self.netns = netns
        self._batch = FakeBatch(kernel)

    def read(self, devices: Iterable[str]) -> dict[str, DeviceTc]:
        devices = list(dict.fromkeys(devices))
        out: dict[str, DeviceTc] = {}
        with self.kernel.lock:
            if devices:
                self.kernel.record("read", "tc " + " ".join(devices))
            for name in devices:
                device = self.kernel.devices.get(name)
                if device is None:
                    out[name] = DeviceTc(name, exists=False, objects=[], stats={})
                    continue
                objects: list[KernelObject] = [IfbLink(name, device.mtu)] if name.startswith("vqi") else []
                objects += device.objects.values()
                stats = {o.key: TcStats() for o in device.objects.values() if not isinstance(o, TcFilter)}
                out[name] = DeviceTc(name, True, objects, stats)
        return out

    def exists(self, device: str) -> bool:
        self.kernel.record("read", f"exists {device}")
        return device in self.kernel.devices

    @staticmethod
    def can_replace(obj: KernelObject) -> bool:
        return live_replaceable(obj)

    def replace(self, obj: KernelObject) -> None:
        assert self.can_replace(obj)
        (line,) = tc_commands(Operation("replace", obj))
        line = line.split(" ", 1)[1]
        with self.kernel.lock:
            device = self.kernel.devices.get(obj.device or "")
            if device is None:
                where = f" in network namespace {self.netns}" if self.netns else ""
                self.kernel.record("netlink", line, ok=False)
                raise NotFound(f"device {obj.device!r} does not exist{where}")
            try:
                injected = self.kernel.injected(line)
                if injected is not None:
                    raise Refused(injected.message, injected.errno)
                if isinstance(obj, TcFilter) and is_program(obj):  # as the driver: on its qdisc (ingress, HTB root), map changed in place
                    if not any(isinstance(o, Qdisc) and _holds(o, obj) for o in device.objects.values()):
                        raise Refused(ENOENT, errnos.ENOENT)
                    device.objects[obj.key] = obj
                elif isinstance(obj, HtbClass):
                    self._batch.put_class(device, obj)
                else:
                    words = shlex.split(line)[2:]
                    self._batch.put_qdisc(device, "replace", words, _opts(words))
            except Refused as exc:
                self.kernel.record("netlink", line, ok=False)
                raise KernelError(f"replace {obj.describe()}: {exc.message}", errno=exc.errno) from None
            self.kernel.record("netlink", line)
        self.kernel.changed()

    def forget(self, devices: Iterable[str] = ()) -> None:
        for _ in devices:
            pass  # nothing cached

    def link_stats(self, device: str) -> dict[str, int]:
        if device not in self.kernel.devices:
            raise NotFound(f"device {device!r} does not exist")
        return {key: 0 for key in ("rx_bytes", "rx_packets", "tx_bytes", "tx_packets", "rx_dropped", "tx_dropped")}

    def close(self) -> None:
        pass


def _holds(qdisc: Qdisc, flt: TcFilter) -> bool:
    """Whether a qdisc has the hook a filter names: a clsact's two (ffff:fff2, ffff:fff3), or its handle."""
    if qdisc.qdisc_kind == "clsact":
        return flt.parent in (CLSACT_INGRESS, CLSACT_EGRESS)
    return qdisc.handle == flt.parent
