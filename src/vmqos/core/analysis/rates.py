"""Rates from two samples of cumulative counters, safe against wraps and resets (pure).

Every counter read here is 64 bits wide (tc's bytes, TCA_STATS_PKT64, nft, rtnl_link_stats64),
but a re-apply that recreates a qdisc restarts its counters at zero, and a value assembled from
several counters can step back when one of them restarts. A counter that went backwards by less
than half its range restarted: what it holds now was counted since. One that went backwards by
more wrapped around.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vmqos.core.analysis.flows import Flow

WIDTH = 64


def counter_delta(previous: int, current: int, width: int = WIDTH, *, derived: bool = False) -> int:
    """How much a cumulative counter counted between two reads.

    `derived`: the value is computed from several counters (a drop count from what one queue saw
    and another sent, with what is still queued), so it may step back by a little between two
    reads without any counter restarting; a step back of less than 1/64 of it reads as no change.
    """
    if current >= previous:
        return current - previous
    span = 1 << width
    if previous - current > span // 2:  # wrapped past 2**width
        return current + span - previous
    if derived and previous - current <= max(64, previous >> 6):
        return 0
    return current  # reset (recreated): counted since it restarted


@dataclass(frozen=True)
class FlowRate:
    """One direction of one port over one interval, in bit/s and packet/s of frames."""

    seconds: float
    offered_bps: float
    delivered_bps: float
    offered_pps: float
    delivered_pps: float
    dropped_pps: float
    backlog_bytes: int
    limit_bps: int | None = None
    limit_pps: int | None = None

    @property
    def dropped_bps(self) -> float:
        return max(0.0, self.offered_bps - self.delivered_bps)

    @property
    def utilisation(self) -> float | None:
        """Delivered rate as a share of the byte limit (or of the packet limit when there is only that)."""
        if self.limit_bps:
            return self.delivered_bps / self.limit_bps
        if self.limit_pps:
            return self.delivered_pps / self.limit_pps
        return None

    @property
    def mean_packet_bytes(self) -> float | None:
        return self.offered_bps / 8 / self.offered_pps if self.offered_pps else None

    def as_json(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 3), "offered_bps": round(self.offered_bps),
                "delivered_bps": round(self.delivered_bps), "dropped_bps": round(self.dropped_bps),
                "offered_pps": round(self.offered_pps, 1), "delivered_pps": round(self.delivered_pps, 1),
                "dropped_pps": round(self.dropped_pps, 1), "backlog_bytes": self.backlog_bytes,
                "limit_bps": self.limit_bps, "limit_pps": self.limit_pps,
                "utilisation": None if self.utilisation is None else round(self.utilisation, 4)}


def flow_rate(previous: Flow, current: Flow, seconds: float, *, limit_bps: int | None = None,
              limit_pps: int | None = None) -> FlowRate:
    if seconds <= 0:
        raise ValueError("two samples of a rate must be apart in time")

    b, c = previous, current
    # counter_delta's common case (the counter grew) inline: 20,000 flows a pass at 10,000 ports
    ob, db, op, dp, xp = (c.offered_bytes - b.offered_bytes, c.delivered_bytes - b.delivered_bytes,
                          c.offered_packets - b.offered_packets, c.delivered_packets - b.delivered_packets,
                          c.dropped_packets - b.dropped_packets)
    if ob < 0 or db < 0 or op < 0 or dp < 0 or xp < 0:
        ob = counter_delta(b.offered_bytes, c.offered_bytes, derived=True)
        db = counter_delta(b.delivered_bytes, c.delivered_bytes, derived=True)
        op = counter_delta(b.offered_packets, c.offered_packets, derived=True)
        dp = counter_delta(b.delivered_packets, c.delivered_packets, derived=True)
        xp = counter_delta(b.dropped_packets, c.dropped_packets, derived=True)
    return FlowRate(seconds, 8 * ob / seconds, 8 * db / seconds, op / seconds, dp / seconds, xp / seconds,
                    current.backlog_bytes, limit_bps, limit_pps)
