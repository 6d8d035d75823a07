"""Judging a verification run against a port's limits (pure): steady state, error, burst, latency.

Rates are of frames (bytes with the Ethernet header) as the limiters count them, so a TCP run is
compared by its frame rate, not by iperf3's goodput (0.956 of it, kernel-lab-facts §1). The first
second is the burst: an nft bucket holds at least one second of traffic and TCP ramps up; what
comes after is the steady state. Its achieved rate is what passed while the limiter was loaded
(it held, or was offered, at least the limit's worth: there the limiter set the rate, not a TCP
sender recovering from a loss) divided by that time. A queue sends a TCP GSO aggregate of up to
64 KB whole, one per 175 ms at 3 Mbit/s, so the 100 ms samples come in steps of an aggregate: a
median of them is off by up to a step, and so is any choice of single samples. Loaded time is
therefore chosen in bins long enough that one aggregate is at most 5 % of the limit's bytes
(0.5 s at 20 Mbit/s, one sample from 105 Mbit/s, the whole window at 3 Mbit/s, where a note says
the run is too short to measure to 5 %). The samples' median is kept beside, in the JSON. A port with a peak runs at
the peak while its burst bucket lasts (burst / (peak - average) seconds from full), so its steady
state starts only then; a run that ends before is judged against the peak. Every threshold is a
constant of this module.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

from vmqos.core.units import human_pps, human_rate

TOLERANCE = 0.05  # |steady-state error| that passes; a limit held within 5 %
STEADY_AFTER_S = 1.0  # the first second is the burst, the rest the steady state
MIN_STEADY_SAMPLES = 5  # a steady window with fewer samples (0.5 s) cannot be judged
MIN_OVERLOAD = 1.25  # udp / small-packets: offered must be at least this times the limit
UDP_OFFER_FACTOR = 2  # what a udp run offers, times the limit it is judged against
UNLIMITED_UDP_OFFER_BPS = 1_000_000_000  # what a udp run offers where there is no limit
SMALL_PACKET_PAYLOAD = 22  # UDP payload bytes of the small-packet flood: 64-byte frames
GSO_MAX_BYTES = 65_536  # a queue sends a TCP GSO aggregate whole: the resolution of its counters


class Traffic(str, Enum):
    TCP = "tcp"
    UDP = "udp"
    SMALL_PACKETS = "small-packets"


class Metric(str, Enum):
    BPS = "bit/s"
    PPS = "packet/s"


class Verdict(str, Enum):
    PASS = "pass"
    OVER = "over the limit"
    UNDER = "below the limit"
    NO_LOAD = "not enough load offered"
    NO_LIMIT = "no limit"

    @property
    def ok(self) -> bool:
        return self is Verdict.PASS


@dataclass(frozen=True)
class Limit:
    """One direction's effective limit, in canonical units (None: not limited)."""

    rate_bps: int | None = None
    pps: int | None = None
    peak_bps: int | None = None
    burst_bytes: int | None = None

    @property
    def burst_seconds(self) -> float:
        """How long a full bucket lets the peak through before the average holds (0 without a peak)."""
        if self.rate_bps and self.peak_bps and self.peak_bps > self.rate_bps and self.burst_bytes:
            return self.burst_bytes * 8 / (self.peak_bps - self.rate_bps)
        return 0.0

    def describe(self) -> str:
        parts = []
        if self.rate_bps:
            parts.append(human_rate(self.rate_bps))
            if self.peak_bps and self.peak_bps > self.rate_bps:
                parts.append(f"peak {human_rate(self.peak_bps)} for {self.burst_seconds:.1f} s")
        if self.pps:
            parts.append(human_pps(self.pps))
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class RateSample:
    """One sampling interval, in seconds since the load started; rates of frames."""

    start_s: float
    end_s: float
    offered_bps: float
    delivered_bps: float
    offered_pps: float
    delivered_pps: float
    backlog_start_bytes: int = 0  # the limiter's queue at the start and the end of the interval
    backlog_end_bytes: int = 0


    def delivered(self, metric: Metric) -> float:
        return self.delivered_bps if metric is Metric.BPS else self.delivered_pps

    def offered(self, metric: Metric) -> float:
        return self.offered_bps if metric is Metric.BPS else self.offered_pps


@dataclass(frozen=True)
class Rtt:
    """One ping reply: when it came (seconds since the load started; before it: negative) and its RTT."""

    at_s: float
    rtt_us: int


@dataclass(frozen=True)
class Latency:
    idle_p50_us: int | None
    loaded_p50_us: int | None
    loaded_p95_us: int | None
    loaded_replies: int
    loaded_sent: int | None = None  # echo requests sent under load (None: unknown)

    @property
    def added_us(self) -> int | None:
        if self.idle_p50_us is None or self.loaded_p50_us is None:
            return None
        return self.loaded_p50_us - self.idle_p50_us


@dataclass(frozen=True)
class Judgement:
    traffic: Traffic
    metric: Metric
    limit: int | None  # what the run is judged against: the average, or the peak while the burst lasts
    average: int | None  # the average limit in this metric: the first-second overshoot is relative to it
    phase: str  # "steady" or "burst"
    window: tuple[float, float]  # the judged samples, seconds since the load started
    offered: float  # over the window
    achieved: float  # over its loaded samples (all of them when fewer than MIN_STEADY_SAMPLES were)
    achieved_median: float  # of the window's 100 ms samples, for comparison
    measured_samples: int  # how many samples `achieved` is measured over
    window_samples: int
    measured: tuple[tuple[float, float], ...]  # (start, length) of each sample `achieved` is measured over
    error: float | None
    first_second_peak: float
    overshoot: float | None
    latency: Latency
    verdict: Verdict
    reason: str


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]): always one of the values."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def choose_metric(traffic: Traffic, limit: Limit, frame_bytes: float | None) -> tuple[Metric, int | None]:
    """The limit that binds this traffic first, in its metric.

    Bulk TCP is judged by bytes only: its GSO aggregates count as one packet each, so a packet-rate
    limit is not meant to bind it. UDP and small packets meet whichever limit is lower at their
    frame size: a 20 Mbit/s limit is 41,666 packets/s of 60-byte frames, so 10,000 pps binds first.
    """
    if traffic is Traffic.TCP:
        return Metric.BPS, limit.rate_bps
    if limit.pps is None:
        if limit.rate_bps is None:
            return (Metric.PPS if traffic is Traffic.SMALL_PACKETS else Metric.BPS), None
        return Metric.BPS, limit.rate_bps
    if limit.rate_bps is None or not frame_bytes:
        return Metric.PPS, limit.pps
    if limit.rate_bps / (8 * frame_bytes) < limit.pps:
        return Metric.BPS, limit.rate_bps
    return Metric.PPS, limit.pps


def _mean(samples: Sequence[RateSample], rate: str, metric: Metric) -> float:
    """What passed over the samples' span divided by its length (their mean weighted by length)."""
    span = sum(s.end_s - s.start_s for s in samples)
    value = getattr(RateSample, rate)
    return sum(value(s, metric) * (s.end_s - s.start_s) for s in samples) / span if span > 0 else 0.0


def bin_samples(metric: Metric, limit: int, sample_s: float) -> int:
    """How many samples make a bin in which one GSO aggregate is at most TOLERANCE of the limit's bytes."""
    if metric is Metric.PPS:  # packets are counted one by one
        return 1
    return max(1, math.ceil(GSO_MAX_BYTES * 8 / (TOLERANCE * limit) / sample_s - 1e-9))


def loaded_samples(window: Sequence[RateSample], metric: Metric, limit: int) -> list[RateSample]:
    """The samples of the bins in which the limiter had at least the limit's worth to send.

    A bin is loaded when what its queue held at the start and what reached it fill the limit
    over its length. Chosen by what was offered, never by what was delivered: in a loaded bin a
    limiter that lets too much or too little through still shows it.
    """
    if not window:
        return []
    size = bin_samples(metric, limit, statistics.median(s.end_s - s.start_s for s in window))
    count = max(1, len(window) // size)  # equal bins, none shorter than `size`
    edges = [round(i * len(window) / count) for i in range(count + 1)]
    out: list[RateSample] = []
    for a, b in zip(edges, edges[1:]):
        part = window[a:b]
        seconds = sum(s.end_s - s.start_s for s in part)
        if metric is Metric.PPS:  # a packet-rate limit is nft's, which holds no queue
            offered = sum(s.offered_pps * (s.end_s - s.start_s) for s in part)
            full = offered >= limit * seconds
        else:
            offered = sum(s.offered_bps * (s.end_s - s.start_s) for s in part)
            full = part[0].backlog_start_bytes * 8 + offered >= limit * seconds
        if full:
            out.extend(part)
    return out


def _frame_bytes(samples: Sequence[RateSample]) -> float | None:
    octets = sum(s.offered_bps / 8 * (s.end_s - s.start_s) for s in samples)
    packets = sum(s.offered_pps * (s.end_s - s.start_s) for s in samples)
    return octets / packets if packets > 0 else None


def _window(samples: Sequence[RateSample], limit: Limit, metric: Metric) -> tuple[list[RateSample], str]:
    burst = limit.burst_seconds if metric is Metric.BPS else 0.0
    steady = [s for s in samples if s.start_s >= max(STEADY_AFTER_S, burst)]
    if len(steady) >= MIN_STEADY_SAMPLES or burst <= STEADY_AFTER_S:
        return steady or [s for s in samples if s.start_s >= STEADY_AFTER_S] or list(samples), "steady"
    during = [s for s in samples if STEADY_AFTER_S <= s.start_s < burst]
    return during or list(samples), "burst"


def _latency(idle: Sequence[Rtt], loaded: Sequence[Rtt], window: tuple[float, float],
             loaded_sent: int | None) -> Latency:
    """RTT percentiles under load within the judged window (all replies when none fell in it)."""
    under = [r.rtt_us for r in loaded if window[0] <= r.at_s <= window[1]] or [r.rtt_us for r in loaded]
    idle_us = [r.rtt_us for r in idle]
    return Latency(round(statistics.median(idle_us)) if idle_us else None,
                   round(statistics.median(under)) if under else None,
                   round(percentile(under, 0.95)) if under else None, len(loaded), loaded_sent)


def _show(value: float, metric: Metric) -> str:
    return human_rate(round(value)) if metric is Metric.BPS else f"{value:,.0f} packets/s"


def resolution_note(limit_bps: int, window_s: float) -> str:
    """A warning when one GSO aggregate, counted whole, is more than the tolerance of the window's bytes."""
    share = GSO_MAX_BYTES * 8 / (limit_bps * window_s) if window_s > 0 else math.inf
    if share <= TOLERANCE:
        return ""
    needed = math.ceil(STEADY_AFTER_S + GSO_MAX_BYTES * 8 / (TOLERANCE * limit_bps))
    return (f"; at this rate one 64 KB GSO aggregate is {share:.0%} of the {window_s:.1f} s judged: "
            f"--duration {needed} or more measures to {TOLERANCE:.0%}")


def judge(traffic: Traffic, limit: Limit, samples: Sequence[RateSample], idle: Sequence[Rtt] = (),
          loaded: Sequence[Rtt] = (), loaded_sent: int | None = None) -> Judgement:
    """The verdict of one run: `samples` of the port's counters while the load ran, pings before and during."""
    if not samples:
        raise ValueError("a run without samples cannot be judged")
    metric, average = choose_metric(traffic, limit, _frame_bytes(samples))
    judged = average
    window, phase = _window(samples, limit, metric)
    if phase == "burst":
        judged = limit.peak_bps
    span = (window[0].start_s, window[-1].end_s)
    full = loaded_samples(window, metric, judged) if judged else []
    measured = full if len(full) >= MIN_STEADY_SAMPLES else window
    offered = _mean(window, "offered", metric)
    achieved = _mean(measured, "delivered", metric)
    median = statistics.median(s.delivered(metric) for s in window)
    seconds = sum(s.end_s - s.start_s for s in measured)
    first = [s.delivered(metric) for s in samples if s.start_s < STEADY_AFTER_S] or [samples[0].delivered(metric)]
    peak = max(first)
    latency = _latency(idle, loaded, span, loaded_sent)
    error = (achieved - judged) / judged if judged else None
    overshoot = peak / average - 1 if average else None

    def done(verdict: Verdict, reason: str) -> Judgement:
        return Judgement(traffic, metric, judged, average, phase, span, offered, achieved, median, len(measured),
                         len(window), tuple((s.start_s, s.end_s - s.start_s) for s in measured), error, peak,
                         overshoot, latency, verdict, reason)

    if judged is None:
        why = "no limit in this direction: the achieved rate is what the path carries"
        if traffic is Traffic.TCP and limit.pps:
            why = (f"no byte limit; the {human_pps(limit.pps)} packet limit is not meant to bind bulk TCP "
                   "(a GSO aggregate counts once): verify it with --traffic small-packets")
        return done(Verdict.NO_LIMIT, why)
    assert error is not None
    against = f"the peak {_show(judged, metric)} (the burst lasts {limit.burst_seconds:.1f} s, longer than " \
              f"the run)" if phase == "burst" else _show(judged, metric)
    if traffic is Traffic.TCP:
        note = resolution_note(judged, seconds)
        if measured is window:
            note += (f"; the limiter was loaded in only {len(full)} of {len(window)} samples: the sender did "
                     "not offer the limit")
        if abs(error) <= TOLERANCE:
            return done(Verdict.PASS, f"achieved {_show(achieved, metric)}, within {TOLERANCE:.0%} of {against}{note}")
        verdict = Verdict.OVER if error > 0 else Verdict.UNDER
        return done(verdict, f"achieved {_show(achieved, metric)}, {abs(error):.1%} {'over' if error > 0 else 'under'}"
                             f" {against} (tolerance {TOLERANCE:.0%}){note}")
    if offered < MIN_OVERLOAD * judged:
        return done(Verdict.NO_LOAD, f"offered only {_show(offered, metric)}, {offered / judged:.2f}x {against}; "
                                     f"a flood must offer at least {MIN_OVERLOAD:g}x to test the limit "
                                     "(the sender lacks CPU, or --offer is too low)")
    if error > TOLERANCE:
        return done(Verdict.OVER, f"delivered {_show(achieved, metric)} of {_show(offered, metric)} offered, "
                                  f"{error:.1%} over {against} (tolerance {TOLERANCE:.0%})")
    below = f"; {-error:.1%} below it" if error < -TOLERANCE else ""
    return done(Verdict.PASS, f"delivered {_show(achieved, metric)} of {_show(offered, metric)} offered, "
                              f"not over {against}{below}")
