"""The tc side of a plan as plain values: the IFB link, qdiscs, HTB classes and filters.

Rates are bit/s and sizes bytes here as everywhere; the renderers turn them into tc syntax and
the netlink driver reads the kernel's objects back into these same types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from vmqos.core.model.checks import DEFAULT_MTU
from vmqos.core.plan.kernel_object import KernelObject
from vmqos.core.plan.u32 import selector_keys


def _near(planned: int, observed: int, tolerance: int) -> bool:
    return abs(planned - observed) <= tolerance


@dataclass(frozen=True)
class IfbLink(KernelObject):
    """The IFB device that traffic from the instance is redirected to, so that it can be queued."""

    kind: ClassVar[str] = "link"
    delete_rank: ClassVar[int] = 0
    name: str
    mtu: int = DEFAULT_MTU

    @property
    def key(self) -> tuple[Any, ...]:
        return ("link", self.name)

    @property
    def device(self) -> str:
        return self.name


@dataclass(frozen=True)
class Qdisc(KernelObject):
    kind: ClassVar[str] = "qdisc"
    delete_rank: ClassVar[int] = 1
    dev: str
    parent: str  # "root", "ingress" or a classid "1:10"
    handle: str  # "1:", "ffff:", "10:"
    qdisc_kind: str  # "htb", "ingress", "bfifo", "tbf"
    default_minor: int | None = None  # htb
    limit_bytes: int | None = None  # bfifo; tbf: the bytes its queue holds
    rate_bps: int | None = None  # tbf
    burst_bytes: int | None = None  # tbf

    def matches(self, observed: KernelObject) -> bool:
        if not isinstance(observed, Qdisc) or self.qdisc_kind != "tbf":
            return self == observed
        # The kernel keeps a TBF's rate in bytes/s and its bucket in 64 ns ticks; `tc -j` gives the queue as
        # a latency in whole microseconds. Allow their rounding, as for HTB classes.
        return ((self.dev, self.parent, self.handle, self.qdisc_kind)
                == (observed.dev, observed.parent, observed.handle, observed.qdisc_kind)
                and observed.rate_bps is not None and observed.burst_bytes is not None
                and observed.limit_bytes is not None
                and _near(self.rate_bps or 0, observed.rate_bps, 8)
                and _near(self.burst_bytes or 0, observed.burst_bytes, max(64, (self.burst_bytes or 0) // 1000))
                and _near(self.limit_bytes or 0, observed.limit_bytes,
                          max(64, (self.rate_bps or 0) // 8_000_000 * 2, (self.limit_bytes or 0) // 1000)))

    @property
    def key(self) -> tuple[Any, ...]:
        return ("qdisc", self.dev, self.parent)

    @property
    def device(self) -> str:
        return self.dev

    def replace_in_place(self, observed: "Qdisc") -> bool:
        """Whether `tc qdisc replace` can turn `observed` into this without a gap.

        The kernel cannot change an HTB root in place (`Change operation not supported`), nor turn a
        qdisc into another kind under the same handle (`Invalid qdisc name: must match existing
        qdisc`); a qdisc with another handle is grafted over atomically, whatever its kind. So the
        leaves' two kinds of queue have two handles (`10:` a bfifo, `1010:` a TBF).
        """
        if observed.qdisc_kind == self.qdisc_kind == "htb" or self.parent == "ingress":
            return False  # an ingress qdisc cannot be grafted over a clsact either
        if observed.handle == self.handle:
            return observed.qdisc_kind == self.qdisc_kind
        return True


@dataclass(frozen=True)
class HtbClass(KernelObject):
    kind: ClassVar[str] = "class"
    delete_rank: ClassVar[int] = 2
    dev: str
    classid: str
    parent: str
    rate_bps: int
    ceil_bps: int
    burst_bytes: int
    cburst_bytes: int
    quantum: int
    # A class with children (the port's bucket 1:1). sch_htb sets a quantum only while a class is a
    # leaf and never uses an inner class's: a class created at 100 Mbit/s keeps 60000 after a
    # `replace` at 1 Mbit/s asks for 12500. Its quantum is not compared, or such a port would never
    # converge. Known from the plan only: not part of equality or of the plan's fingerprint.
    inner: bool = field(default=False, repr=False, compare=False)
    # HTB serves the lowest prio first when classes borrow: the sparse class (small packets) is 0,
    # every other leaf 1.
    prio: int = 0

    @property
    def key(self) -> tuple[Any, ...]:
        return ("class", self.dev, self.classid)

    @property
    def device(self) -> str:
        return self.dev

    @property
    def depth(self) -> int:
        return 0 if self.parent.endswith(":") else 1

    def matches(self, observed: KernelObject) -> bool:
        if not isinstance(observed, HtbClass):
            return False
        # The kernel keeps buckets in 64 ns ticks and rates in bytes/s: allow their rounding.
        return (
            (self.dev, self.classid, self.parent) == (observed.dev, observed.classid, observed.parent)
            and (self.inner or self.quantum == observed.quantum)
            and self.prio == observed.prio
            and _near(self.rate_bps, observed.rate_bps, 8)
            and _near(self.ceil_bps, observed.ceil_bps, 8)
            and _near(self.burst_bytes, observed.burst_bytes, max(64, self.burst_bytes // 1000))
            and _near(self.cburst_bytes, observed.cburst_bytes, max(64, self.cburst_bytes // 1000))
        )


@dataclass(frozen=True)
class TcFilter(KernelObject):
    """A filter is known by its device, parent qdisc and priority, whoever made it."""

    kind: ClassVar[str] = "filter"
    delete_rank: ClassVar[int] = 3
    dev: str
    parent: str  # "1:" or "ffff:"
    prio: int
    protocol: str  # "all", "ip", "ipv6"

    @property
    def key(self) -> tuple[Any, ...]:
        return ("filter", self.dev, self.parent, self.prio)

    @property
    def device(self) -> str:
        return self.dev


@dataclass(frozen=True)
class U32Filter(TcFilter):
    """A u32 filter: classification into an HTB class, or a redirect of everything to an IFB."""

    matches_: tuple[str, ...] = ()  # u32 selectors, e.g. ("ip dport 80 0xffff",)
    flowid: str | None = None
    redirect_to: str | None = None
    handle: str | None = field(default=None, compare=False)  # the kernel's, known once read back

    def matches(self, observed: KernelObject) -> bool:
        # Compared in the kernel's own form (aligned words), whatever spelling created the filter.
        return (isinstance(observed, U32Filter)
                and (self.dev, self.parent, self.prio, self.protocol, self.flowid, self.redirect_to)
                == (observed.dev, observed.parent, observed.prio, observed.protocol, observed.flowid,
                    observed.redirect_to)
                and selector_keys(self.matches_) == selector_keys(observed.matches_))


@dataclass(frozen=True)
class ForeignFilter(TcFilter):
    """A filter vmqos did not make (another classifier, or a u32 it cannot read): drift, never adopted."""

    classifier: str = "?"

    def matches(self, observed: KernelObject) -> bool:
        return False


POLICER_PRIO = 1  # the police program's place on the port's ingress qdisc (ffff:)


@dataclass(frozen=True)
class Policer(TcFilter):
    """Police mode's token bucket: vmqos's eBPF program on the port's tc ingress (cls_bpf), which marks
    the packets over the bucket for the port's nft chain to drop and count (`drivers/bpf_police`).

    Its rate and size live in a BPF map that a change rewrites in place, so the bucket keeps its
    tokens across every live change (nft's limit objects cannot be changed: a new rate was a new,
    full bucket of one second of traffic, handed to the instance at each change). A new policer
    starts with `burst_bytes` of tokens, the burst the user asked for, whatever its size.

    It counts IP bytes, as nft's limit did (the planner scales the rate so that full-size frames are
    held to the frame rate), and its size is the burst, nothing more: in any interval of t seconds it
    passes at most burst + rate x t (plus, when the burst is below one, the GSO aggregate that may
    pass a full bucket and puts it in debt). Earlier versions added one second of the rate to the
    size, as nft's limit did, which let 100 ms samples reach 150-260 Mbit/s against 50 (issue 13);
    police mode's default burst is now that second, said as the burst (`KernelProfile`)."""

    rate_bytes: int = 0  # IP bytes/s
    burst_bytes: int = 0

    @property
    def bucket_bytes(self) -> int:
        """The bucket's size: the burst."""
        return self.burst_bytes

    def describe(self) -> str:
        return f"policer {self.dev} {self.rate_bytes} bytes/s burst {self.burst_bytes} bytes"


def policer(dev: str, rate_bytes: int, burst_bytes: int) -> Policer:
    return Policer(dev, "ffff:", POLICER_PRIO, "all", rate_bytes=rate_bytes, burst_bytes=burst_bytes)


AQM_PRIO = 0xFFF0  # the AQM program's place on the HTB root: after the sparse and the class filters


@dataclass(frozen=True)
class Aqm(TcFilter):
    """A shaped direction's AQM: vmqos's eBPF program on the HTB root (cls_bpf, direct action), which
    marks ECN-capable packets CE when the queue's sojourn stays above `target_ns` for `interval_ns`
    (CoDel's law), over a virtual queue that drains at `rate_bytes` (L2 bytes/s, the port's rate)
    with `bucket_bytes` of credit (the leaves' cburst, as HTB's bucket). It never drops and never
    classifies (`drivers/bpf_aqm`; why: `queues.aqm`). Its configuration lives in a BPF map that a
    change rewrites in place, keeping the virtual backlog."""

    rate_bytes: int = 0
    bucket_bytes: int = 0
    target_ns: int = 0
    interval_ns: int = 0

    def describe(self) -> str:
        return (f"aqm {self.dev} {self.rate_bytes} bytes/s target {self.target_ns / 1e6:g} ms "
                f"interval {self.interval_ns / 1e6:g} ms")


CLAMP_PRIO = 1  # the window clamp's place on each hook of the port's clsact (it has no other filter)
CLSACT_INGRESS, CLSACT_EGRESS = "ffff:fff2", "ffff:fff3"  # a clsact's two hooks, as tc names its filters' parents


@dataclass(frozen=True)
class WindowClamp(TcFilter):
    """One hook of a port's receive-window clamp: vmqos's eBPF program on the port's clsact (cls_bpf,
    direct action), which lowers the window of the TCP segments passing that hook to about
    `rate_bytes` x (the flow's handshake RTT + `target_ns`), never below `kmin` segments, so that the
    sender on the other side cannot keep more than that queued at the port's shaper (`drivers/bpf_rwnd`;
    why: `queues.window_clamps`). The hook on the clsact's egress (packets towards the instance) clamps
    with the rate *from* the instance and the one on its ingress with the rate *towards* it: a window
    governs what its receiver's peer sends. A rate of 0 leaves that hook's windows alone (it still
    times the handshakes the other hook needs). Both hooks share one flow map; the configuration lives
    in a map that a change rewrites in place, the flows kept."""

    rate_bytes: int = 0  # L2 bytes/s of the direction the windows govern
    target_ns: int = 0
    kmin: int = 2

    def describe(self) -> str:
        hook = "egress" if self.parent == CLSACT_EGRESS else "ingress"
        return (f"window clamp {self.dev} {hook} {self.rate_bytes} bytes/s target {self.target_ns / 1e6:g} ms "
                f"kmin {self.kmin}")


def is_program(obj: KernelObject) -> bool:
    """A filter whose program vmqos loads itself over bpf(2) and netlink (tc cannot without an object file)."""
    return isinstance(obj, (Policer, Aqm, WindowClamp))


OWN_QDISC_KINDS = ("htb", "bfifo", "tbf", "ingress", "clsact")


def is_foreign(obj: KernelObject) -> bool:
    """Whether an observed object was made by someone else: replacing it needs the operator's --force."""
    if isinstance(obj, ForeignFilter):
        return True
    if isinstance(obj, Qdisc):
        if obj.parent == "root":  # vmqos's root is an HTB `1:`; a TBF there is the CNI plugin's or a seed's
            return obj.qdisc_kind != "htb" or obj.handle != "1:"
        return obj.qdisc_kind not in OWN_QDISC_KINDS
    return False



def live_replaceable(obj: KernelObject) -> bool:
    """What a live rate change touches, and one netlink request changes in place: HTB classes,
    the leaves' queues (bfifo or segmenting TBF), police mode's bucket, the AQM's and the window clamp's maps."""
    return isinstance(obj, (HtbClass, Policer, Aqm, WindowClamp)) or (isinstance(obj, Qdisc) and obj.qdisc_kind in ("bfifo", "tbf")
                                                     and obj.parent not in ("root", "ingress"))
