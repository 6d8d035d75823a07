"""The fake kernel's state: devices with their tc objects, vmqos's nft table, a journal, failures to inject.

One `FakeKernel` stands for one network namespace. Its drivers (`FakeTc`, `FakeNft` and
`run_batch`) change it the way the kernel would for the commands the renderer and the nft
driver produce, and refuse what the kernel refuses (a queue under a class that does not exist, a
chain that forwards to a device that does not exist, a rule counting into a missing counter).
Every call is journalled in order, and watchers run after every change, so a test can assert
what was written, in which order, and that no moment left a port without its limiter.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from vmqos.core.errors import KernelError, ToolTimeout
from vmqos.core.observed import CounterValue, ForeignHook
from vmqos.core.plan.diff import contains
from vmqos.core.plan.objects import IfbLink, KernelObject, NftChain, NftCounter, NftLimit, NftSet, Qdisc

WRITES = ("ip", "tc", "netlink", "nft")  # journal tools that change the kernel (the rest are reads)


@dataclass(frozen=True)
class Call:
    """One journalled call: `tool` is ip/tc (a batch line), netlink (a live replace), nft (one command
    of a committed transaction, or a refused one with ok=False) or read."""

    tool: str
    text: str
    ok: bool = True

    @property
    def write(self) -> bool:
        return self.tool in WRITES and self.ok


@dataclass
class Device:
    name: str
    kind: str = "veth"  # "veth" (a port), "ifb"
    mtu: int = 1500
    up: bool = True
    objects: dict[tuple[Any, ...], KernelObject] = field(default_factory=dict)


@dataclass
class Failure:
    """A command that fails when its text holds `pattern` (a batch line, the tc line of a netlink
    replace, or an nft command such as `add chain from_tap1`)."""

    pattern: str
    message: str
    errno: int | None = None
    times: int | None = None  # None: every time


class FakeKernel:
    """One network namespace in memory; see the module's docstring."""

    def __init__(self, ports: tuple[str, ...] | list[str] = ()) -> None:
        self.devices: dict[str, Device] = {}
        self.table = False
        self.chains: dict[str, NftChain] = {}
        self.counters: dict[str, CounterValue] = {}
        self.sets: dict[str, NftSet] = {}
        self.limits: dict[str, NftLimit] = {}
        self.foreign_hooks: list[ForeignHook] = []
        self.journal: list[Call] = []
        self.failures: list[Failure] = []
        self.nft_timeout = False  # the next nft transactions time out (ToolTimeout), nothing applied
        self.watchers: list[Callable[["FakeKernel"], None]] = []
        self.lock = threading.RLock()  # the reconciler runs nft beside ip and tc
        for port in ports:
            self.add_port(port)

    # -- setting a scene -------------------------------------------------------------------------

    def add_port(self, name: str, mtu: int = 1500) -> None:
        self.devices[name] = Device(name, "veth", mtu)

    def remove_device(self, name: str) -> None:
        """A device disappears (libvirt removed a tap): everything on it goes with it."""
        self.devices.pop(name, None)

    def plant(self, obj: KernelObject) -> None:
        """Put an object in place behind vmqos's back (drift, or what an earlier run left)."""
        with self.lock:
            if isinstance(obj, (NftChain, NftCounter, NftLimit, NftSet)):
                self.table = True
                if isinstance(obj, NftChain):
                    self.chains[obj.name] = obj
                elif isinstance(obj, NftCounter):
                    self.counters[obj.name] = CounterValue(0, 0)
                elif isinstance(obj, NftLimit):
                    self.limits[obj.name] = obj
                else:
                    self.sets[obj.name] = obj
                return
            if isinstance(obj, IfbLink):
                self.devices[obj.name] = Device(obj.name, "ifb", obj.mtu)
                return
            device = obj.device
            assert device is not None and device in self.devices, f"no device for {obj!r}"
            self.devices[device].objects[obj.key] = obj

    def fail(self, pattern: str, message: str = "RTNETLINK answers: Operation not permitted",
             errno: int | None = None, times: int | None = None) -> Failure:
        """Make every command whose text holds `pattern` fail (`times`: only that many times)."""
        failure = Failure(pattern, message, errno, times)
        self.failures.append(failure)
        return failure

    # -- looking at it ---------------------------------------------------------------------------

    def objects(self, device: str) -> list[KernelObject]:
        dev = self.devices.get(device)
        return list(dev.objects.values()) if dev is not None else []

    def writes(self) -> list[Call]:
        return [c for c in self.journal if c.write]

    def clear_journal(self) -> None:
        self.journal.clear()

    # -- for the drivers -------------------------------------------------------------------------

    def record(self, tool: str, text: str, ok: bool = True) -> None:
        self.journal.append(Call(tool, text, ok))

    def changed(self) -> None:
        for watch in list(self.watchers):
            watch(self)

    def injected(self, text: str) -> Failure | None:
        """The failure planted for this command, if any (counted down)."""
        for failure in self.failures:
            if failure.pattern in text and failure.times != 0:
                if failure.times is not None:
                    failure.times -= 1
                return failure
        return None

    def check_nft_timeout(self) -> None:
        if self.nft_timeout:
            self.record("nft", "timed out", ok=False)
            raise ToolTimeout("nft -j -f did not finish within 1800 s")

    def remove(self, device: str, gone: KernelObject) -> None:
        """Delete an object and everything the kernel deletes with it (a qdisc's classes, ...)."""
        objects = self.devices[device].objects
        for key, obj in list(objects.items()):
            if key == gone.key or contains(gone, obj):
                del objects[key]

    def nft_error(self, commands: int, why: str) -> KernelError:
        return KernelError(f"nftables transaction ({commands} commands) failed, nothing applied: Error: {why}")

    def root(self, device: str) -> Qdisc | None:
        obj = self.devices[device].objects.get(("qdisc", device, "root")) if device in self.devices else None
        return obj if isinstance(obj, Qdisc) else None
