"""Flood detectors and the quarantine decision, on sampled rates (pure: time comes in as an argument).

Detectors look at what a port is *offered* (before any limiter), so a flood that a quarantine
holds is still seen as a flood, and a quarantine is lifted only once the instance itself has
calmed down. A condition must hold for `for_seconds` before it is an event, and an event ends
when the condition has been false for as long, so one noisy sample neither raises nor ends one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from vmqos.core.analysis.columns import LazyRates, RateColumns
from vmqos.core.analysis.rates import FlowRate
from vmqos.core.analysis.samples import PortRates
from vmqos.core.errors import InvalidValue

PACKET_RATE, SMALL_PACKETS, SYN_FLOOD, PINNED = "packet_rate", "small_packets", "syn_flood", "pinned"
DETECTORS = (PACKET_RATE, SMALL_PACKETS, SYN_FLOOD, PINNED)


@dataclass(frozen=True)
class Thresholds:
    """When traffic is a flood; the defaults suit a VM host where normal guests stay far below them."""

    packet_rate_pps: float = 50_000  # offered packets/s in one direction
    small_packet_bytes: float = 200  # a mean frame this small...
    small_packet_min_pps: float = 10_000  # ...at this packet rate or more
    syn_share: float = 0.5  # TCP SYNs among the packets the instance sends...
    syn_min_pps: float = 2_000  # ...at this SYN rate or more
    pinned_utilisation: float = 0.98  # delivered / limit...
    pinned_drop_pps: float = 1.0  # ...while the limiter drops...
    pinned_seconds: float = 30.0  # ...for this long
    for_seconds: float = 2.0  # how long a flood condition must hold to be an event

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InvalidValue(f"detectors.{name}", value, "a threshold is a number >= 0")
        if not 0 < self.syn_share <= 1:
            raise InvalidValue("detectors.syn_share", self.syn_share, "a share is above 0 and at most 1")


@dataclass(frozen=True)
class Detection:
    port: str
    instance: str | None
    direction: str
    detector: str
    value: float
    threshold: float
    message: str


def _conditions(th: Thresholds, direction: str, rate: FlowRate, syn_pps: float | None) -> dict[str, Detection]:
    """The detectors whose conditions hold on this sample, with the Detection they would report."""
    out: dict[str, Detection] = {}

    def hit(name: str, value: float, threshold: float, message: str) -> None:
        out[name] = Detection("", None, direction, name, value, threshold, message)

    pps = rate.offered_pps
    if pps >= th.packet_rate_pps:
        hit(PACKET_RATE, pps, th.packet_rate_pps, f"{pps:,.0f} packets/s offered (threshold {th.packet_rate_pps:,.0f})")
    mean = rate.mean_packet_bytes
    if mean is not None and pps >= th.small_packet_min_pps and mean <= th.small_packet_bytes:
        hit(SMALL_PACKETS, mean, th.small_packet_bytes,
            f"{pps:,.0f} packets/s of {mean:.0f} bytes on average (small-packet flood: at most "
            f"{th.small_packet_bytes:.0f} bytes at {th.small_packet_min_pps:,.0f} packets/s or more)")
    if direction == "egress" and syn_pps is not None and pps > 0:
        share = syn_pps / pps
        if syn_pps >= th.syn_min_pps and share >= th.syn_share:
            hit(SYN_FLOOD, share, th.syn_share,
                f"{syn_pps:,.0f} TCP SYNs/s, {share:.0%} of what the instance sends (SYN flood: "
                f"{th.syn_share:.0%} or more at {th.syn_min_pps:,.0f}/s or more)")
    util = rate.utilisation
    if util is not None and util >= th.pinned_utilisation and rate.dropped_pps >= th.pinned_drop_pps:
        hit(PINNED, util, th.pinned_utilisation,
            f"at {util:.0%} of its limit with {rate.dropped_pps:,.0f} drops/s")
    return out


@dataclass
class _Track:
    since: float | None = None  # when the condition became true (None: false)
    clear_since: float | None = None  # when it became false again while active
    active: Detection | None = None


@dataclass
class Detectors:
    """Per port, direction and detector: raise an event once a condition held, end it once it cleared."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    _tracks: dict[tuple[str, str, str], _Track] = field(default_factory=dict)

    def _hold(self, detector: str) -> float:
        return self.thresholds.pinned_seconds if detector == PINNED else self.thresholds.for_seconds

    def update(self, now: float, rates: Mapping[str, PortRates]) -> tuple[list[Detection], list[Detection]]:
        """(started, ended) detections for this sample.

        Only conditions that hold, or held, are tracked: at 1,000 quiet ports a pass touches no track.
        Columnar rates (`LazyRates`, issue 17): only the rows where a condition holds (`hit_rows`)
        and the tracked ports are looked at, in the rates' order; the others cannot fire."""
        started: list[Detection] = []
        ended: list[Detection] = []
        tracks = self._tracks
        th = self.thresholds
        tracked = {key[0] for key in tracks}
        quiet_pps = min(th.packet_rate_pps, th.small_packet_min_pps)
        for port, pr in _candidates(rates, tracked, quiet_pps, th):
            for direction, rate in pr.rates.items():
                # no condition can hold (each needs this packet rate, SYN rate or drop rate) and
                # nothing is tracked for the port: nothing to do (10,000 ports a pass at host scale)
                if rate.offered_pps < quiet_pps and rate.dropped_pps < th.pinned_drop_pps and \
                        (pr.syn_pps is None or pr.syn_pps < th.syn_min_pps) and port not in tracked:
                    continue
                hits = _conditions(th, direction, rate, pr.syn_pps)
                for detector in DETECTORS:
                    key = (port, direction, detector)
                    found = hits.get(detector)
                    track = tracks.get(key)
                    if found is not None:
                        if track is None:
                            track = tracks[key] = _Track()
                        found = Detection(port, pr.instance, direction, detector, found.value, found.threshold,
                                          found.message)
                        track.clear_since = None
                        track.since = now if track.since is None else track.since
                        if track.active is None and now - track.since >= self._hold(detector):
                            track.active = found
                            started.append(found)
                        elif track.active is not None:
                            track.active = found  # keep the latest figures
                    elif track is not None:
                        track.since = None
                        if track.active is not None:
                            track.clear_since = now if track.clear_since is None else track.clear_since
                            if now - track.clear_since >= self._hold(detector):
                                ended.append(track.active)
                                track.active, track.clear_since = None, None
                        if track.active is None:
                            del tracks[key]
        for key in [k for k in tracks if k[0] not in rates or k[1] not in rates[k[0]].rates]:  # the port is gone
            track = tracks.pop(key)
            if track.active is not None:
                ended.append(track.active)
        return started, ended

    def active(self) -> list[Detection]:
        return [t.active for t in self._tracks.values() if t.active is not None]


def _candidates(rates: Mapping[str, PortRates], tracked: set[str], quiet_pps: float,
                th: Thresholds) -> Iterable[tuple[str, PortRates]]:
    """The ports `update` looks at: all of a dict's; of columnar rates, the busy rows and the tracked ports."""
    if not isinstance(rates, LazyRates):
        return rates.items()
    table = rates.columns.current.table
    rows = set(hit_rows(rates.columns, th).tolist())
    rows.update(table.index[p] for p in tracked if p in table.index)
    return [(table.ports[row], rates.row(row)) for row in sorted(rows)]


def hit_rows(cols: RateColumns, th: Thresholds) -> np.ndarray:
    """The rows where `_conditions` holds for a direction, computed on the columns with the same
    arithmetic (a row without a flow is nan and compares False): the only rows a detector can start on."""
    r = cols.rates
    pps = r[:, :, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        hit = pps >= th.packet_rate_pps
        mean = r[:, :, 0] / 8 / pps
        hit |= (pps != 0) & (pps >= th.small_packet_min_pps) & (mean <= th.small_packet_bytes)
        syn, out = cols.syn_pps, pps[:, 1]
        hit[:, 1] |= (out > 0) & (syn >= th.syn_min_pps) & (syn / out >= th.syn_share)
        hit |= (cols.utilisation() >= th.pinned_utilisation) & (r[:, :, 4] >= th.pinned_drop_pps)
    return np.flatnonzero(hit.any(axis=1))


@dataclass(frozen=True)
class Action:
    kind: str  # "quarantine" or "lift"
    port: str
    reason: str


def decide(now: float, active: Iterable[Detection], quarantined: dict[str, float], last_flood: dict[str, float],
           triggers: tuple[str, ...], cooldown_s: float) -> list[Action]:
    """Quarantine ports with an active triggering detection from the instance; lift a quarantine
    once no trigger has held on the port for `cooldown_s` (`last_flood`: when one last did)."""
    actions: list[Action] = []
    flooding: dict[str, Detection] = {}
    for det in active:
        if det.detector in triggers and det.direction == "egress":
            flooding.setdefault(det.port, det)
    for port, det in sorted(flooding.items()):
        if port not in quarantined:
            actions.append(Action("quarantine", port, f"{det.detector}: {det.message}"))
    for port, since in sorted(quarantined.items()):
        if port in flooding:
            continue
        calm_since = max(since, last_flood.get(port, since))
        if now - calm_since >= cooldown_s:
            actions.append(Action("lift", port, f"no flood for {now - calm_since:.0f} s (cool-down {cooldown_s:g} s)"))
    return actions
