"""The dashboard's memory of the last minutes: each device's recent samples, as the agents reported them.

The store keeps one sample per device (the latest, `fleet_port_status.sample`): enough for a table,
not for a chart. The server keeps the last `HISTORY_S` seconds of each device's samples here, in
memory, fed by every report it takes (api.fleet), so that a port's page can draw its last minutes
without a time-series table. A server that just started has no history yet (the charts fill as the
agents report); a report taken by another server of the same database is in that server's memory,
not this one's — the page says how many points it holds.

`version` moves with every report taken: the server-sent event streams (api.dashboard) compare it
with the version they last sent and build a new frame only when it moved.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from vmqos.services.fleet_wire import Sample

HISTORY_S = 300  # five minutes at one report a second
MAX_DEVICES = 100_000  # a bound on memory: past it, the oldest devices' histories are forgotten


@dataclass(frozen=True)
class Point:
    """One sampled second of one device, canonical units (bits/s, packets/s); directions are the
    instance's (ingress = towards it)."""

    at: float  # seconds since the epoch (the agent's sample time)
    ingress_offered_bps: int
    ingress_delivered_bps: int
    ingress_dropped_bps: int
    egress_offered_bps: int
    egress_delivered_bps: int
    egress_dropped_bps: int
    ingress_pps: int
    egress_pps: int
    ingress_dropped_pps: int
    egress_dropped_pps: int

    @classmethod
    def of(cls, sample: Sample) -> Point:
        i, e = sample.ingress, sample.egress
        return cls(sample.at.timestamp(), i.offered_bps, i.delivered_bps, i.dropped_bps, e.offered_bps,
                   e.delivered_bps, e.dropped_bps, i.offered_pps, e.offered_pps, i.dropped_pps, e.dropped_pps)


class LiveHistory:
    """The last HISTORY_S points of each (host, device); safe to feed from the API's worker threads."""

    def __init__(self, history_s: int = HISTORY_S) -> None:
        self.history_s = history_s
        self._points: dict[tuple[str, str], deque[Point]] = {}
        self._lock = threading.Lock()
        self.version = 0
        self.started_at = datetime.now().astimezone()

    def add(self, host: str, samples: Iterable[Sample]) -> None:
        with self._lock:
            for sample in samples:
                key = (host, sample.device)
                found = self._points.get(key)
                if found is None:
                    if len(self._points) >= MAX_DEVICES:
                        self._points.pop(next(iter(self._points)))
                    found = self._points[key] = deque(maxlen=self.history_s)
                point = Point.of(sample)
                if found and found[-1].at >= point.at:  # the same sample sent again (a retried report)
                    continue
                found.append(point)
            self.version += 1

    def touch(self) -> None:
        """Something changed that is not a sample (a lift asked, a policy edited): streams send again."""
        with self._lock:
            self.version += 1

    def points(self, host: str, device: str, since: float | None = None) -> list[Point]:
        with self._lock:
            found = list(self._points.get((host, device), ()))
        return found if since is None else [p for p in found if p.at > since]
