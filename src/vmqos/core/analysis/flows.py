"""Offered, delivered and dropped traffic of a port, per direction, from its limiters' counters (pure).

An operator must never mistake a tap's raw counters for what got through (seed 001): the device
counts every frame the VM wrote, before any limiter. These figures come from the limiters
themselves (the HTB on the port, the IFB's HTB, vmqos's named nft counters), all in frames:
bytes with the Ethernet header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from vmqos.core.model.checks import ETH_HLEN
from vmqos.core.observed import CounterValue, TcStats
from vmqos.core.plan.names import chain_from, chain_to, ifb_name


@dataclass(frozen=True)
class Flow:
    """One direction's traffic: offered to the limiter, delivered past it, dropped by it.

    Packets are counted as the qdiscs count them (a GSO aggregate as its segments). A queue
    counts what it dropped in packets only, and a dropped aggregate as one: where it dropped,
    offered bytes are estimated from the mean size of what it sent (`offered_bytes_estimated`).
    """

    offered_bytes: int = 0
    offered_packets: int = 0
    delivered_bytes: int = 0
    delivered_packets: int = 0
    dropped_packets: int = 0
    backlog_bytes: int = 0
    offered_bytes_estimated: bool = False

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


_NONE = CounterValue(0, 0)


def _l2(c: CounterValue) -> CounterValue:
    """nft's ingress hook counts IP bytes: add the Ethernet header so that all figures are frames."""
    return CounterValue(c.packets, c.bytes + ETH_HLEN * c.packets)


def queued_flow(nbytes: int, packets: int, drops: int, backlog: int, qlen: int, before_packets: int,
                before_bytes: int) -> Flow:
    """A queue's view from its counters (sent bytes and packets, drops, backlog bytes and packets),
    with `before_packets`/`before_bytes` dropped ahead of it (nft's packet-rate limit). The
    sampler's arrays path calls this straight from the decoded counters, without a `TcStats`."""
    mean = nbytes // packets if packets else 0
    return Flow(nbytes + backlog + drops * mean + before_bytes, packets + drops + qlen + before_packets,
                nbytes, packets, drops + before_packets, backlog, drops > 0)


def unseen_leaf_drops(leaves: Iterable[tuple[int, int]]) -> int:
    """Packets segmenting TBF leaves dropped that their root HTB did not count: per leaf, (the
    TBF's drops, its HTB class's drops).

    A TBF under an HTB leaf segments a GSO aggregate before it queues it (`queues.leaf_queue`) and
    counts every segment its queue refused. When some segments were taken it tells HTB the
    aggregate was, so neither the class nor the root counts a drop; when none was, HTB counts one
    (class and root), the TBF every segment. A non-GSO packet it drops is one drop for both. So
    what the root misses is, per leaf, the TBF's drops less its class's (issue 16's note; tested on
    the kernel by tests/kernel/test_tbf_leaf_drops.py)."""
    return sum(max(0, tbf - cls) for tbf, cls in leaves)


def unseen_leaf_drops_since(before: tuple[int, int], now: tuple[int, int]) -> int:
    """What one TBF leaf dropped unseen by its root between two reads of (its drops, its class's).

    A count that went back restarted from zero: a TBF grafted where a bfifo leaf was (a live
    change across ~52 Mbit/s) starts at 0 while its class keeps the bfifo's drops, so the leaf's
    absolute difference (`unseen_leaf_drops`) would hide its drops until they outnumber those."""
    tbf = now[0] - before[0] if now[0] >= before[0] else now[0]
    cls = now[1] - before[1] if now[1] >= before[1] else now[1]
    return max(0, tbf - cls)


def _queued(q: TcStats, before: CounterValue) -> Flow:
    """A queue's view, with `before` dropped ahead of it (nft's packet-rate limit)."""
    return queued_flow(q.bytes, q.packets, q.drops, q.backlog_bytes, q.qlen, before.packets, before.bytes)


def flows(port: str, tc: dict[tuple[object, ...], TcStats], counters: dict[str, CounterValue]) -> dict[str, Flow]:
    """Offered / delivered / dropped per direction, in frames (bytes with the Ethernet header).

    Towards the instance: nft's egress hook drops small-packet floods ahead of the HTB on the
    port's root, which queues and drops the rest. From the instance, shape mode: nft's ingress
    hook drops floods and forwards the rest to the IFB, whose HTB queues and drops. Police mode:
    nft's ingress hook sees, polices and passes.
    The device's own counters count before any of this and are shown apart.
    """
    out: dict[str, Flow] = {}
    to, frm = chain_to(port), chain_from(port)
    root = tc.get(("qdisc", port, "root"))
    if root is not None:
        out["ingress"] = _queued(root, counters.get(f"{to}_pps_dropped", _NONE))
    elif f"{to}_offered" in counters:
        pps = counters.get(f"{to}_pps_dropped", _NONE)
        off, passed = counters[f"{to}_offered"], counters.get(f"{to}_passed", _NONE)
        out["ingress"] = Flow(off.bytes, off.packets, passed.bytes, passed.packets, pps.packets)
    ifb_root = tc.get(("qdisc", ifb_name(port), "root"))
    f_pps = _l2(counters.get(f"{frm}_pps_dropped", _NONE))
    if ifb_root is not None:  # shape mode: nft drops floods ahead of the IFB's HTB, which queues and drops
        out["egress"] = _queued(ifb_root, f_pps)
    elif f"{frm}_offered" in counters:
        off, passed = _l2(counters[f"{frm}_offered"]), _l2(counters.get(f"{frm}_passed", _NONE))
        policed = counters.get(f"{frm}_dropped", _NONE)
        out["egress"] = Flow(off.bytes, off.packets, passed.bytes, passed.packets, f_pps.packets + policed.packets)
    return out


