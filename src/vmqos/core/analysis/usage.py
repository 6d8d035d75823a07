"""Per-IP usage from the accounting sets' element counters (pure).

Each element of a set (port . the instance's address . the remote address) counts what passed
the port's nft limits since the element was made; an element idle for an hour expires and, when
traffic comes back, starts again from zero. Like BandwidthD it counts by IP, but on the port
itself, so neither a SPAN port nor a poisoned ARP cache can attribute traffic to the wrong guest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from vmqos.core.analysis.rates import counter_delta
from vmqos.core.model.checks import ETH_HLEN
from vmqos.core.observed import CounterValue
from vmqos.core.plan.planner import ACCOUNT_SETS

GRANULARITIES = ("hour", "day")
# The nft set feeding each direction; the ingress hook sees IP packets, the egress hook frames.
SET_DIRECTION = {"to": "ingress", "from": "egress"}


@dataclass(frozen=True)
class UsageKey:
    direction: str  # ingress: towards the instance; egress: sent by it
    device: str
    local_ip: str  # the instance's address
    remote_ip: str


@dataclass(frozen=True)
class Counted:
    bytes: int
    packets: int


@dataclass(frozen=True)
class UsageTotal:
    key: UsageKey
    granularity: str
    period_start: datetime
    bytes: int
    packets: int

    def as_json(self) -> dict[str, object]:
        return {"port": self.key.device, "direction": self.key.direction, "local_ip": self.key.local_ip,
                "remote_ip": self.key.remote_ip, "granularity": self.granularity,
                "period_start": self.period_start.isoformat(), "bytes": self.bytes, "packets": self.packets}


def account_sets() -> list[tuple[str, str]]:
    """(set name, direction) of every accounting set."""
    return [(st.name, SET_DIRECTION[side]) for (side, _fam), st in ACCOUNT_SETS.items()]


def counts(direction: str, elements: Iterable[tuple[tuple[str, ...], CounterValue]]) -> dict[UsageKey, Counted]:
    """An accounting set's elements as usage keys, bytes in frames (the Ethernet header added where the
    hook saw IP packets only)."""
    extra = ETH_HLEN if direction == "egress" else 0
    out: dict[UsageKey, Counted] = {}
    for parts, value in elements:
        if len(parts) != 3:
            continue
        device, local, remote = parts
        out[UsageKey(direction, device, local, remote)] = Counted(value.bytes + extra * value.packets, value.packets)
    return out


def deltas(cursors: dict[UsageKey, Counted], current: dict[UsageKey, Counted]) -> dict[UsageKey, Counted]:
    """What each element counted since its cursor (a new or restarted element: all it holds)."""
    out: dict[UsageKey, Counted] = {}
    for key, now in current.items():
        before = cursors.get(key, Counted(0, 0))
        delta = Counted(counter_delta(before.bytes, now.bytes), counter_delta(before.packets, now.packets))
        if delta.bytes or delta.packets:
            out[key] = delta
    return out


def period_start(at: datetime, granularity: str) -> datetime:
    if granularity == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    if granularity == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(granularity)


def next_period(start: datetime, granularity: str) -> datetime:
    return start + (timedelta(hours=1) if granularity == "hour" else timedelta(days=1))
