"""Real traffic through a port, its limiters' counters sampled every 100 ms, ping under load (I/O shell).

One run is one direction and one kind of traffic: the idle RTT first (ping from the instance to
the peer), then iperf3 from the sender to a one-off server on the receiver while the port's
counters are sampled and ping goes on. The delivered rate is read from the limiters (what
passed them, in frames), never from iperf3's report. Traffic runs in the endpoints' network
namespaces only, not in an instance's cgroups: a CPU limit must not bias a network measurement.
Every process is started through `processes.Processes`, killed by its pid when the run ends, even
on Ctrl-C; what is verified (`targets`) is chosen before.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from vmqos.core.analysis.iperf import ping_replies, ping_transmitted, rate_sample
from vmqos.core.analysis.judge import (
    MIN_STEADY_SAMPLES,
    SMALL_PACKET_PAYLOAD,
    STEADY_AFTER_S,
    UDP_OFFER_FACTOR,
    UNLIMITED_UDP_OFFER_BPS,
    Judgement,
    Limit,
    RateSample,
    Rtt,
    Traffic,
    judge,
)
from vmqos.core.errors import KernelError
from vmqos.core.plan.planner import PortPlan
from vmqos.lab.traffic import TrafficResult, result_of
from vmqos.monitor.sampler import Sampler, rates
from vmqos.verify.processes import Processes, idle_rtts, iperf_server, ping_argv
from vmqos.verify.targets import Endpoint, PortState, Target

SAMPLE_INTERVAL_S = 0.1
MAX_READ_S = 0.02  # a pass that took longer ends no interval: its time stamp is taken before its reads
IPERF_TAIL_S = 0.5  # the sender runs this much longer than the sampled window: the window is all load
UDP_PAYLOAD = 1400  # bytes per datagram of a udp run: 1,442-byte frames
DEFAULT_IPERF_PORT = 5201


@dataclass(frozen=True)
class Run:
    direction: str
    traffic: Traffic
    limit: Limit
    duration_s: float
    sender: str  # how the load was made: the iperf3 client's options
    samples: tuple[RateSample, ...]
    idle: tuple[Rtt, ...]
    loaded: tuple[Rtt, ...]
    iperf: TrafficResult
    judgement: Judgement

    def as_json(self) -> dict[str, Any]:
        j, lat = self.judgement, self.judgement.latency
        return {
            "direction": self.direction, "traffic": self.traffic.value, "duration_s": self.duration_s,
            "limit": {"rate_bps": self.limit.rate_bps, "pps": self.limit.pps, "peak_bps": self.limit.peak_bps,
                      "burst_bytes": self.limit.burst_bytes, "burst_seconds": round(self.limit.burst_seconds, 3)},
            "metric": j.metric.value, "judged_limit": j.limit, "average_limit": j.average, "phase": j.phase,
            "window_s": [round(j.window[0], 3), round(j.window[1], 3)],
            "offered": round(j.offered, 1), "achieved": round(j.achieved, 1),
            "achieved_median": round(j.achieved_median, 1), "measured_samples": j.measured_samples,
            "window_samples": j.window_samples,
            "error": None if j.error is None else round(j.error, 5),
            "first_second_peak": round(j.first_second_peak, 1),
            "first_second_overshoot": None if j.overshoot is None else round(j.overshoot, 5),
            "idle_rtt_us": lat.idle_p50_us, "loaded_rtt_p50_us": lat.loaded_p50_us,
            "loaded_rtt_p95_us": lat.loaded_p95_us, "added_latency_us": lat.added_us,
            "loaded_replies": lat.loaded_replies, "loaded_sent": lat.loaded_sent,
            "verdict": j.verdict.value, "ok": j.verdict.ok, "reason": j.reason,
            "iperf3": {"options": self.sender, "sent_bps": round(self.iperf.sent_bps),
                       "goodput_bps": round(self.iperf.received_bps), "seconds": round(self.iperf.seconds, 3),
                       "lost_percent": self.iperf.lost_percent, "retransmits": self.iperf.retransmits},
            "samples": [{"start_s": round(s.start_s, 4), "end_s": round(s.end_s, 4),
                         "offered_bps": round(s.offered_bps), "delivered_bps": round(s.delivered_bps),
                         "offered_pps": round(s.offered_pps, 1), "delivered_pps": round(s.delivered_pps, 1),
                         "backlog_bytes": s.backlog_end_bytes}
                        for s in self.samples],
            "idle_rtts": [{"at_s": round(r.at_s, 4), "rtt_us": r.rtt_us} for r in self.idle],
            "loaded_rtts": [{"at_s": round(r.at_s, 4), "rtt_us": r.rtt_us} for r in self.loaded],
        }


def sender_options(traffic: Traffic, judged: Limit, offer_bps: int | None) -> list[str]:
    """iperf3's options for the load: udp offers twice the limit, small packets flood as fast as they go.

    A UDP sender in a namespace is back-pressured by the queue it fills (its skbs keep counting
    against its socket buffer through veth and bridge), so floods use a 4 MiB buffer
    (kernel-lab-facts §1) to really offer more than the limit.
    """
    if traffic is Traffic.TCP:
        return []
    if traffic is Traffic.SMALL_PACKETS:
        return ["-u", "-l", str(SMALL_PACKET_PAYLOAD), "-b", str(offer_bps or 0), "-w", "4M"]
    if offer_bps is None:
        if judged.rate_bps:
            offer_bps = UDP_OFFER_FACTOR * judged.rate_bps
        elif judged.pps:
            offer_bps = UDP_OFFER_FACTOR * judged.pps * UDP_PAYLOAD * 8
        else:
            offer_bps = UNLIMITED_UDP_OFFER_BPS
    return ["-u", "-l", str(UDP_PAYLOAD), "-b", str(offer_bps), "-w", "4M"]


def run_direction(target: Target, state: PortState, direction: str, traffic: Traffic, *, duration_s: float,
                  offer_bps: int | None = None, iperf_port: int = DEFAULT_IPERF_PORT,
                  progress: Callable[[str], None] = lambda _: None) -> Run:
    """One run: idle RTT, then `duration_s` of load sampled every 100 ms, judged against the port's limit."""
    limit = state.limits[direction]
    sender, receiver = (target.peer, target.instance) if direction == "ingress" else (target.instance, target.peer)
    options = sender_options(traffic, limit, offer_bps)
    # A remote peer's server is already there: the client runs at the instance's end, and asks the
    # server to send (-R) when the peer is the sender.
    remote = target.peer.netns is None
    client_end, server_end = (target.instance, target.peer) if remote else (sender, receiver)
    reverse = ["-R"] if remote and direction == "ingress" else []
    with Processes() as procs, Sampler(target.netns) as sampler:
        idle = idle_rtts(procs, target)
        progress(f"{direction} {traffic.value}: idle RTT {sorted(r.rtt_us for r in idle)[len(idle) // 2] / 1000:.3f}"
                 f" ms; {duration_s:g} s of load {sender.name} -> {receiver.name} ...")
        if not remote:
            assert server_end.netns is not None
            iperf_server(procs, server_end.netns, server_end.address, iperf_port)
        plans = {target.port: state.plan}
        # ping prints 10 lines a second for as long as the run lasts: into an unnamed file, since a
        # pipe nobody reads until the end would fill and stop it
        ping_file = tempfile.TemporaryFile("w+")
        pinger = procs.start(ping_argv(target), target.instance.netns, stdout=ping_file)
        assert client_end.netns is not None
        client = procs.start(["iperf3", "-c", server_end.address, "-p", str(iperf_port), "-t",
                              f"{duration_s + IPERF_TAIL_S:g}", "-J", *reverse, *options], client_end.netns)
        t0, epoch0 = time.monotonic(), time.time()
        sampled = _sample(sampler, plans, target.port, direction, t0, duration_s, client)
        pinger.send_signal(signal.SIGINT)  # ping prints what it buffered when interrupted, not when killed
        try:
            pinger.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pinger.kill()
            pinger.wait()
        with ping_file:
            ping_file.seek(0)
            ping_out = ping_file.read()
        try:
            out, err = client.communicate(timeout=IPERF_TAIL_S + 15)
        except subprocess.TimeoutExpired:
            raise KernelError(f"iperf3 {sender.where} -> {receiver.address} did not finish") from None
    iperf = _iperf_result(out, err, traffic, sender, receiver)  # a load that failed is the cause: said first
    samples = _within_load(sampled, target, duration_s)
    loaded = ping_replies(ping_out, epoch0)
    _check_crossed(samples, iperf, target, sender, receiver)
    how = " ".join(["iperf3", *reverse, *options]) if reverse or options else "iperf3, one TCP stream"
    return Run(direction, traffic, limit, duration_s, how, tuple(samples), tuple(idle), tuple(loaded), iperf,
               judge(traffic, limit, samples, idle, loaded, ping_transmitted(ping_out)))


def _fast_pass(sampler: Sampler, plans: dict[str, PortPlan]) -> tuple[Any, bool]:
    """One pass, and whether its counters were read within MAX_READ_S of its time stamp.

    A pass stamps its time just before its dumps (after what it had to prepare: the layout of new
    plans, the device names); on two busy cores it can be preempted in between, and counters read
    400 ms late make a 4 s window at 3 Mbit/s read 10 % over. A slow pass therefore never ends an
    interval: the next fast one does, and its interval is simply longer.
    """
    current = sampler.sample(plans)
    return current, time.monotonic() - current.monotonic <= MAX_READ_S


def _sample(sampler: Sampler, plans: dict[str, PortPlan], port: str, direction: str, t0: float, duration_s: float,
            client: subprocess.Popen[str]) -> list[RateSample]:
    deadline = t0 + duration_s + IPERF_TAIL_S
    previous, fast = _fast_pass(sampler, plans)
    while not fast and time.monotonic() < deadline:
        previous, fast = _fast_pass(sampler, plans)
    samples: list[RateSample] = []
    next_at = previous.monotonic + SAMPLE_INTERVAL_S
    while previous.monotonic - t0 < duration_s - SAMPLE_INTERVAL_S / 2 and time.monotonic() < deadline:
        time.sleep(max(0.0, next_at - time.monotonic()))
        current, fast = _fast_pass(sampler, plans)
        next_at = max(next_at + SAMPLE_INTERVAL_S, time.monotonic())
        if not fast:
            continue
        rate = rates(previous, current).get(port)
        if rate is None or direction not in rate.rates:
            raise KernelError(f"port {port} has no {direction} counters: `vmqos check` shows whether the kernel "
                              "holds its plan")
        before = previous.ports[port].flows.get(direction)
        samples.append(rate_sample(rate.rates[direction], previous.monotonic - t0,
                                   before.backlog_bytes if before else 0))
        previous = current
        if client.poll() is not None:
            break  # the load ended early: what it says comes with its output
    return samples


def _within_load(samples: list[RateSample], target: Target, duration_s: float) -> list[RateSample]:
    """The samples that end while the load still ran; too few of them means the host was not read on time.

    A pass waits for the kernel to answer its netlink dumps: while another tool applied 1,000
    ports on the same host, one pass took three minutes, and an interval that long is mostly no load.
    """
    longest = max((s.end_s - s.start_s for s in samples), default=0.0)
    within = [s for s in samples if s.end_s <= duration_s + IPERF_TAIL_S]
    steady = [s for s in within if s.start_s >= STEADY_AFTER_S]
    if len(steady) < MIN_STEADY_SAMPLES:
        raise KernelError(f"the counters of {target.port} could be read on time only {len(steady)} times after the "
                          f"first second of load (the longest interval was {longest:.1f} s, for "
                          f"{SAMPLE_INTERVAL_S * 1000:.0f} ms planned): the kernel answers netlink too slowly on this "
                          "busy host (another tool's bulk change?); run it again when it is quieter, or with a "
                          "longer --duration")
    return within


def _iperf_result(out: str, err: str, traffic: Traffic, sender: Endpoint, receiver: Endpoint) -> TrafficResult:
    try:
        data = json.loads(out or "{}")
    except json.JSONDecodeError:
        data = {}
    if "interrupt" in str(data.get("error", "")):
        raise KeyboardInterrupt  # Ctrl-C reached iperf3 first: the run was interrupted, not failed
    if not data or "error" in data:
        hint = " (is an iperf3 server listening there? `iperf3 -s`, and --iperf-port)" \
            if sender.netns is None or receiver.netns is None else ""
        raise KernelError(f"iperf3 {sender.where} -> {receiver.address} failed: "
                          f"{data.get('error') or err.strip() or 'no output'}{hint}")
    return result_of(data, udp=traffic is not Traffic.TCP)


def _check_crossed(samples: Sequence[RateSample], iperf: TrafficResult, target: Target, sender: Endpoint,
                   receiver: Endpoint) -> None:
    """The load must cross the port: otherwise its counters measure something else."""
    counted = sum(s.delivered_bps * (s.end_s - s.start_s) for s in samples)
    carried = iperf.received_bps * min(iperf.seconds, samples[-1].end_s if samples else 0.0)
    if carried > 0 and counted < 0.25 * carried:
        raise KernelError(f"the traffic {sender.address} -> {receiver.address} did not cross port {target.port}: "
                          f"its limiter counted {counted / 8:,.0f} bytes of about {carried / 8:,.0f}; check that "
                          "the addresses route through the port")
