"""The queues of one direction of a port: the HTB tree, its leaves' queues and the sparse class (pure).

Split from the planner (`planner.plan_port`, whose docstring draws the tree) so that what each
kernel object of a shaped direction holds, and why, is read in one place: burst and quantum
floors, the leaf queue (a segmenting TBF under ~52 Mbit/s, a bfifo above), the sparse class that
sends short packets first, and the traffic classes' filters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from vmqos.core.desired.effective import EffectiveDirection
from vmqos.core.model.checks import frame_bytes
from vmqos.core.model.network import PROTOCOLS, TrafficMatch
from vmqos.core.plan.objects import Aqm, HtbClass, KernelObject, Qdisc, U32Filter, WindowClamp
from vmqos.core.plan.tc_objects import AQM_PRIO, CLAMP_PRIO, CLSACT_EGRESS, CLSACT_INGRESS

# A classed tree's filters: the sparse ones (1-4), the AQM, then the class filters. The class filters sat at
# 5.. before the AQM came to classed ports; they move to 0x100.. so that no prio changes its filter kind (the
# kernel cannot replace a u32 filter by a bpf one): the new ones are added, the old ones deleted after.
CLASSED_AQM_PRIO = 0x80
CLASS_FILTER_PRIO = 0x100

DEFAULT_MINOR = 0x10
PARENT_CLASSID = "1:1"

@dataclass(frozen=True)
class KernelProfile:
    """What the planner assumes of the host; the defaults are this project's machines."""

    hz: int = 250  # the burst floor is one timer tick of traffic (Neutron's tc_lib does the same)
    burst_time_us: int = 10_000  # default burst: 10 ms of traffic at the average rate
    # Police mode's default burst: one second of traffic, as libvirt's outbound policer (burst =
    # average KiB) and near Neutron's 80 %. A policer has no queue, and TCP through it here recovers
    # by 200 ms retransmit timeouts, so it delivers about one bucket per timeout: 2, 5, 9, 21 and 40
    # Mbit/s through buckets of 10 ms, 128 KiB, 256 KiB, 610 KiB and 1220 KiB at 50 Mbit/s
    # (measured on 6.18, bbr, 2026-12-07). The bucket is exactly this burst (no hidden second).
    police_burst_time_us: int = 1_000_000
    queue_time_us: int = 20_000  # leaf queue: 20 ms of traffic at the ceiling
    min_queue_bytes: int = 128 * 1024  # at least two 64 KiB GSO aggregates
    quantum_max: int = 60_000
    r2q: int = 10
    segment_frames: int = 8  # a segmenting leaf holds at least this many full frames
    segmenter_rate_factor: int = 10  # its bucket refills this much faster than the class: never the limiter
    sparse_per_mille: int = 20  # the sparse class's guaranteed rate, out of the average
    # The AQM (see `aqm`): CoDel's target and interval over the virtual queue, each at least so many
    # full frames at the ceiling (one frame is 12 ms at 1 Mbit/s: a target below it means nothing).
    aqm: bool = True
    aqm_target_us: int = 2_000
    aqm_target_frames: int = 1
    aqm_interval_us: int = 10_000
    aqm_interval_frames: int = 4
    # The window clamp (see `window_clamps`, a port's opt-in): the queue allowed beyond the flow's RTT,
    # and the least window: three segments where three frames fit `clamp_kmin3_us` at the rate, else two.
    clamp_target_us: int = 3_000
    clamp_kmin3_us: int = 30_000


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def min_burst(rate_bps: int, mtu: int, profile: KernelProfile) -> int:
    """The smallest bucket that works: two frames, and one timer tick of traffic at the rate."""
    return max(2 * frame_bytes(mtu), _ceil_div(rate_bps, 8 * profile.hz))


def quantum(rate_bps: int, mtu: int, profile: KernelProfile) -> int:
    return min(max(rate_bps // 8 // profile.r2q, frame_bytes(mtu)), profile.quantum_max)


def shared_quanta(rates: Sequence[int], mtu: int, profile: KernelProfile) -> list[int]:
    """Quanta of sibling leaves, in proportion to their rates: HTB lends the parent's surplus to siblings
    at the same priority round robin by quantum, so clamping each one to [frame, 60000] on its own
    would share an idle class's part equally (measured: 60/40 instead of 62.5/37.5 at 20 Mbit/s for
    web 50 % and mail 30 %). The largest is at most 60000; only a share below one frame is raised."""
    top = max(rates) // 8 // profile.r2q
    scale = min(1.0, profile.quantum_max / top) if top else 1.0
    return [min(max(int(r // 8 // profile.r2q * scale), frame_bytes(mtu)), profile.quantum_max) for r in rates]


def queue_limit(ceil_bps: int, profile: KernelProfile) -> int:
    return max(profile.min_queue_bytes, ceil_bps * profile.queue_time_us // 8_000_000)


def segments(ceil_bps: int, profile: KernelProfile) -> bool:
    """Whether a leaf at this ceiling queues in a segmenting TBF: where the time-based queue is shorter
    than the floor a bfifo needs for whole GSO aggregates."""
    return ceil_bps * profile.queue_time_us // 8_000_000 < profile.min_queue_bytes


TBF_HANDLE_BASE = 0x1000  # a TBF leaf's handle (1010: under 1:10): the kernel grafts only another handle


def leaf_queue(dev: str, classid: str, minor: int, ceil_bps: int, burst: int, mtu: int,
               profile: KernelProfile) -> Qdisc:
    """The queue under a leaf class.

    A TBF segments a GSO aggregate longer than its bucket before it queues the segments (sch_tbf's
    `tbf_segment`), so its queue can be a few frames long where a bfifo must hold 128 KiB. Its rate is
    ten times the ceiling and its bucket holds the class's burst (up to its queue, below), so that it
    never holds back what HTB dequeues: HTB stays the limiter. Measured on 6.18 (docs/benchmarks.md §11, one TCP flow, 1 Mbit/s):
    0.998 of the rate instead of 0.84-0.86, and the flow's own queue 97 ms instead of a second.

    Its bucket is at most its queue: the TBF segments only an aggregate longer than its bucket and
    queues a shorter one whole, and its bfifo drops an aggregate longer than the queue whole. With an
    operator's burst above the queue (the CNI's 50 KB at 5 Mbit/s: a 12.5 KB queue) every aggregate
    between the two was dropped: 0.77 of the limit from a container. The class's burst is HTB's to
    keep; the TBF lets it through at ten times the ceiling."""
    if not segments(ceil_bps, profile):
        return Qdisc(dev, classid, f"{minor:x}:", "bfifo", limit_bytes=queue_limit(ceil_bps, profile))
    frame = frame_bytes(mtu)
    limit = max(profile.segment_frames * frame, ceil_bps * profile.queue_time_us // 8_000_000)
    return Qdisc(dev, classid, f"{TBF_HANDLE_BASE + minor:x}:", "tbf", limit_bytes=limit, rate_bps=ceil_bps * profile.segmenter_rate_factor,
                 burst_bytes=max(min(burst, limit), 2 * frame))


def aqm(dev: str, rate_bps: int, cburst: int, mtu: int, profile: KernelProfile, prio: int = AQM_PRIO) -> Aqm:
    """The AQM of a shaped direction: CE marks on ECN-capable packets, never a drop.

    This kernel has no fq_codel, codel, pie or cake, and a drop-tail leaf short enough for the issue's
    RTT targets costs BBR 12-90 % of its rate. The port's queue drains at a known rate, so a program
    on the HTB root keeps the queue's state itself (a virtual backlog that drains at the port's rate,
    with the leaves' cburst as credit: HTB queues once the leaf's ceil bucket is empty, whatever its
    parent holds; with the port's burst as credit the flow's own RTT at 100 Mbit/s was 5.4-6.5 ms
    instead of 2) and runs CoDel's law over that virtual sojourn. Measured on 6.18 (docs/benchmarks.md
    §11, one cubic flow with ECN, both directions): the flow's own added RTT 22-26 ms at 1 Mbit/s
    (83-91 without the AQM), 8 at 3 (26-30), 2.3 at 10 (12-16), 1.9-2.2 at 100 (11-17), 1.6-1.8 at
    1 Gbit/s (3-17), the rate unchanged. It only marks: dropping the packets of flows without ECN cost
    BBR 10-25 % of its rate at 1-10 Mbit/s and cubic 14 % at 1 Mbit/s (BBR v1 ignores CE marks, and
    keeps its own queue: its cwnd floor).

    With traffic classes (`prio` CLASSED_AQM_PRIO: before the class filters, it passes every packet
    on, so they still classify it) the one virtual queue drains at the port's rate: the sum of the
    classes' queues. This kernel has no act_bpf, gact or fw classifier, so a program cannot run
    after a class filter has chosen the class, and a per-class virtual queue would need the program
    to classify (the class filters' matches in bytecode) and to model HTB's borrowing. Measured
    (docs/benchmarks.md §11, 20 Mbit/s, web 50 % / mail 30 % / rest 20 %, cubic with ECN, both
    directions, medians of 3): one class busy borrowing everything, its flow's own added RTT 1.0 ms
    (16-18 without the AQM); all three busy, 2.1-2.2 / 3.7-3.9 / 6.5-8.1 ms (31-34 / 55-61 / 84-85),
    the 50/30/20 split unchanged (±0.3 %). The class with the smallest share waits longest: its
    flow's window is about the others' (marks fall on every flow alike) while it drains slowest."""
    frame_ns = frame_bytes(mtu) * 8 * 1_000_000_000 // rate_bps
    return Aqm(dev, "1:", prio, "all", rate_bytes=rate_bps // 8, bucket_bytes=cburst,
               target_ns=max(profile.aqm_target_us * 1000, profile.aqm_target_frames * frame_ns),
               interval_ns=max(profile.aqm_interval_us * 1000, profile.aqm_interval_frames * frame_ns))


def clamp_kmin(rate_bps: int, mtu: int, profile: KernelProfile) -> int:
    """The least window, in segments: a receiver ACKs every second segment, so with two segments in
    flight beyond the path's BDP the link idles while the ACK of both travels back: -1.8 % of the rate
    at 3 Mbit/s over a 0.1 ms path, where three segments gave -0.5 % (docs/benchmarks.md §11). Three
    where three frames fit 30 ms at the rate (from ~1.2 Mbit/s), else two (three frames are 36 ms at
    1 Mbit/s: the queue would be longer than the issue's target)."""
    three = 3 * frame_bytes(mtu) * 8 * 1_000_000 // max(rate_bps, 1)
    return 3 if three <= profile.clamp_kmin3_us else 2


def window_clamps(dev: str, towards_bps: int | None, from_bps: int | None, mtu: int,
                  profile: KernelProfile) -> list[KernelObject]:
    """A port's receive-window clamp (opt-in: `PortSpec.window_clamp`): a clsact on the port and one
    program on each of its hooks, sharing a flow map.

    Why: the ECN AQM (`aqm`) keeps the queue of a flow that negotiates ECN short, and nothing on this
    kernel does for one that does not (BBR v1 ignores CE, and drops cost it 10-25 % of its rate). A
    sender never has more in flight than the window its receiver advertises, and the host forwards the
    receiver's ACKs: lowering their window to rate x (handshake RTT + 3 ms) bounds the queue any sender
    keeps at the port. Measured on 6.18 (docs/benchmarks.md §11, "The window clamp in the planner": one
    flow without ECN, BBR and cubic, both directions, 3 runs each): the flow's own added RTT 17 ms at
    1 Mbit/s (66-89 without), 14 at 3 (24-31), 4.2 at 10 (12-19), 2.7-3.1 at 100 (7-17), 1.1-2.6 at
    1 Gbit/s (1-17), the frame rate within -1.0...+0.2 %, no retransmissions from 3 Mbit/s up.
    Opt-in, because it rewrites the tenant's TCP headers, because the window rests on the handshake's
    RTT (a path whose RTT grows 20 ms after it ran at 70 % of 3 Mbit/s, 21 % of 10, 16 % of 100), and
    because one window per flow cannot bound several flows' queue (N flows keep at least N x 2 frames).
    A flow whose handshake it did not see (older than the program) is left alone.

    The egress hook (towards the instance) carries the ACKs of what the instance sends, so it clamps
    with the rate from the instance; the ingress hook with the rate towards it. An unshaped direction's
    hook has rate 0: it only times the handshakes."""
    objects: list[KernelObject] = [Qdisc(dev, "ingress", "ffff:", "clsact")]
    for parent, rate in ((CLSACT_INGRESS, towards_bps), (CLSACT_EGRESS, from_bps)):
        kmin = clamp_kmin(rate, mtu, profile) if rate else 2
        objects.append(WindowClamp(dev, parent, CLAMP_PRIO, "all", rate_bytes=(rate or 0) // 8,
                                   target_ns=profile.clamp_target_us * 1000, kmin=kmin))
    return objects


def _u32_selectors(match: TrafficMatch) -> list[tuple[str, tuple[str, ...]]]:
    """(protocol, selectors) per filter: IPv4 and IPv6, and each port as source or destination."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for proto, fam in (("ip", "ip"), ("ipv6", "ip6")):
        base: list[str] = []
        if match.protocol is not None:
            base.append(f"{fam} protocol {PROTOCOLS[match.protocol]} 0xff")
        if match.dscp is not None:
            base.append(f"ip tos {match.dscp << 2:#04x} 0xfc" if fam == "ip"
                        else f"u16 {match.dscp << 6:#06x} 0x0fc0 at 0")
        if match.ports:
            for port in match.ports:
                for side in ("sport", "dport"):
                    out.append((proto, tuple(base + [f"{fam} {side} {port} 0xffff"])))
        else:
            out.append((proto, tuple(base)))
    return out


SPARSE_MINOR = 0xF
SPARSE_CLASSID = "1:f"
BULK_PRIO = 1
SPARSE_QUEUE_BYTES = 16 * 1024  # 64 packets of 256 bytes
# IPv4's total length (offset 2) and IPv6's payload length (offset 4): below 256 when the high byte is 0.
# A length of 0 is a BIG TCP aggregate (longer than 64 KiB), which the guard filters send to the default
# leaf first.
_LENGTH_AT = (("ip", 2), ("ipv6", 4))


def SPARSE_FILTERS(dev: str) -> tuple[U32Filter, ...]:  # noqa: N802 - a table of filters, by device
    """Filters 1-4 of every tree: BIG TCP aggregates to the default leaf, then short packets to 1:f."""
    guards = tuple(U32Filter(dev, "1:", i + 1, proto, (f"u16 0x0 0xffff at {off}",), flowid=f"1:{DEFAULT_MINOR:x}")
                   for i, (proto, off) in enumerate(_LENGTH_AT))
    short = tuple(U32Filter(dev, "1:", i + 3, proto, (f"u16 0x0 0xff00 at {off}",), flowid=SPARSE_CLASSID)
                  for i, (proto, off) in enumerate(_LENGTH_AT))
    return guards + short


def sparse_class(dev: str, rate: int, ceil: int, cburst: int, mtu: int, profile: KernelProfile) -> list[KernelObject]:
    return [HtbClass(dev, SPARSE_CLASSID, PARENT_CLASSID, rate, ceil, min_burst(rate, mtu, profile), cburst,
                     quantum(rate, mtu, profile), prio=0),
            Qdisc(dev, SPARSE_CLASSID, f"{SPARSE_MINOR:x}:", "bfifo", limit_bytes=SPARSE_QUEUE_BYTES)]


def htb_tree(dev: str, eff: EffectiveDirection, burst: int, mtu: int, profile: KernelProfile) -> list[KernelObject]:
    assert eff.rate_bps is not None
    rate = eff.rate_bps.value
    ceil = eff.peak_bps.value if eff.peak_bps is not None else rate
    cburst = min_burst(ceil, mtu, profile)
    # The port's bucket holds the average: a top-level HTB class sends at its ceil for as long as
    # it likes (it has no parent to borrow from), so its ceil must be the average too. The peak is
    # the leaves' ceil: they borrow the bucket's burst at up to the peak, then fall to the average.
    objects: list[KernelObject] = [
        Qdisc(dev, "root", "1:", "htb", default_minor=DEFAULT_MINOR),
        HtbClass(dev, PARENT_CLASSID, "1:", rate, rate, burst, burst, quantum(rate, mtu, profile), inner=True),
    ]
    classes = eff.classes.value if eff.classes is not None else ()
    matched = [c for c in classes if c.match is not None]
    default_share = 100 - sum(c.share_percent for c in matched) if classes else 100
    leaves: list[tuple[int, int, TrafficMatch | None]] = [(DEFAULT_MINOR, default_share, None)]
    leaves += [(DEFAULT_MINOR + 1 + i, c.share_percent, c.match) for i, c in enumerate(matched)]
    sparse_rate = max(rate * profile.sparse_per_mille // 1000 // 1000 * 1000, 8000)  # whole kbit/s: tc spells it exactly
    objects += sparse_class(dev, sparse_rate, ceil, cburst, mtu, profile)
    filters: list[KernelObject] = list(SPARSE_FILTERS(dev))
    class_filters = 0
    bulk = max(rate - sparse_rate, 8000)
    leaf_rates = [max(bulk * share // 100, 8000) for _, share, _ in leaves]
    quanta = shared_quanta(leaf_rates, mtu, profile)
    for (minor, _share, match), leaf_rate, leaf_quantum in zip(leaves, leaf_rates, quanta):
        classid = f"1:{minor:x}"
        objects.append(HtbClass(dev, classid, PARENT_CLASSID, leaf_rate, ceil, min_burst(leaf_rate, mtu, profile),
                                cburst, leaf_quantum, prio=BULK_PRIO))
        objects.append(leaf_queue(dev, classid, minor, ceil, burst, mtu, profile))
        if match is not None:
            for proto, selectors in _u32_selectors(match):
                filters.append(U32Filter(dev, "1:", CLASS_FILTER_PRIO + class_filters, proto, selectors,
                                         flowid=classid))
                class_filters += 1
    if profile.aqm:  # (listed last; the kernel orders filters by prio)
        # With classes the program must see a packet before a class filter classifies it (a filter that
        # returns a classid ends the search): its place is between the sparse and the class filters.
        filters.append(aqm(dev, rate, cburst, mtu, profile, CLASSED_AQM_PRIO if matched else AQM_PRIO))
    return objects + filters
