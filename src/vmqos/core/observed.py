"""What the kernel was seen to hold: plain values read by the drivers and used by the pure analytics.

They live in the core, below the drivers that produce them, so that the analytics, the store and
the services can use counters and nft state without importing pyroute2 or starting a process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vmqos.core.plan.objects import NftChain, NftCounter, NftLimit, NftSet
from vmqos.core.plan.handles import TC_H_INGRESS, TC_H_ROOT, handle_str


@dataclass(frozen=True)
class CounterValue:
    packets: int
    bytes: int


@dataclass(frozen=True)
class ForeignHook:
    """A base chain of another table on a device vmqos manages: drift, not ours to change silently."""

    family: str
    table: str
    chain: str
    hook: str
    device: str


@dataclass
class NftState:
    chains: dict[str, NftChain] = field(default_factory=dict)
    counters: dict[str, CounterValue] = field(default_factory=dict)
    foreign: list[ForeignHook] = field(default_factory=list)
    sets: dict[str, NftSet] = field(default_factory=dict)  # without their elements
    limits: dict[str, NftLimit] = field(default_factory=dict)

    def objects(self) -> list[Any]:
        return [NftCounter(name) for name in self.counters] + list(self.chains.values()) + \
            list(self.sets.values()) + list(self.limits.values())


@dataclass(frozen=True)
class TcStats:
    """Counters of one qdisc or class: bytes and packets it sent, what it dropped, what it holds."""

    bytes: int = 0
    packets: int = 0
    drops: int = 0
    overlimits: int = 0
    backlog_bytes: int = 0
    qlen: int = 0


@dataclass(frozen=True)
class QdiscCounters:
    ifindex: int
    handle: int
    parent: int
    kind: str
    stats: TcStats

    @property
    def where(self) -> str:
        """'root', 'ingress' or the parent class, as the plan's Qdisc keys say."""
        if self.parent == TC_H_ROOT:
            return "root"
        if self.parent == TC_H_INGRESS:
            return "ingress"
        return handle_str(self.parent)


@dataclass(frozen=True)
class LinkCounters:
    """A device's own counters (rtnl_link_stats64): what it saw, before any tc or nft drop."""

    rx_packets: int = 0
    tx_packets: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0
