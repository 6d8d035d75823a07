"""Real traffic through a port, its limiters' counters sampled every 100 ms, ping under load (I/O shell).

One run is one direction and one kind of traffic: the idle RTT first (ping from the instance to
the peer), then iperf3 from the sender to a one-off server on the receiver while the port's
counters are sampled and ping goes on. The delivered rate is read from the limiters (what
passed them, in frames), never from iperf3's report. Traffic runs in the endpoints' network
namespaces only, not in an instance's cgroups: a CPU limit must not bias a network measurement.
Every process is started here and killed by its pid when the run ends, even on Ctrl-C.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from vmqos.core.analysis.iperf import (
    first_address,
    ping_replies,
    ping_transmitted,
    rate_sample,
)
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
from vmqos.core.analysis.samples import PortLimits
from vmqos.core.errors import InvalidValue, KernelError, MissingValue, NotFound
from vmqos.core.plan.planner import PortPlan
from vmqos.drivers.process import check_netns, in_netns, netns_exists, run
from vmqos.lab.traffic import TrafficResult, result_of
from vmqos.monitor.sampler import Sampler, rates
from vmqos.store import Store

SAMPLE_INTERVAL_S = 0.1
MAX_READ_S = 0.02  # a pass that took longer ends no interval: its time stamp is taken before its reads
PING_INTERVAL_S = 0.1  # root may ping this fast
IDLE_PINGS = 10
IPERF_TAIL_S = 0.5  # the sender runs this much longer than the sampled window: the window is all load
UDP_PAYLOAD = 1400  # bytes per datagram of a udp run: 1,442-byte frames
DEFAULT_IPERF_PORT = 5201
DIRECTIONS = ("ingress", "egress")


@dataclass(frozen=True)
class Endpoint:
    name: str  # vm1, wan, the namespace, or the remote address
    netns: str | None  # None: outside this host (a remote peer, where an iperf3 server listens)
    address: str

    @property
    def where(self) -> str:
        return self.netns or f"remote {self.address}"


@dataclass(frozen=True)
class Target:
    """A port in its namespace, the instance behind it and the peer it talks to through the port."""

    port: str
    netns: str | None  # the port's namespace: the desired state's scope
    instance: Endpoint
    peer: Endpoint
    instance_name: str | None = None
    lab: str | None = None

    def __post_init__(self) -> None:
        versions = {ipaddress.ip_address(e.address).version for e in (self.instance, self.peer)}
        if len(versions) > 1:
            raise InvalidValue("--peer-address", self.peer.address,
                               f"the instance end is {self.instance.address} and the peer end {self.peer.address}: "
                               "give both ends addresses of one family (--instance-address, --peer-address)")


@dataclass(frozen=True)
class PortState:
    """The port's plan as desired (applied when in sync), and its limits per direction."""

    plan: PortPlan
    limits: dict[str, Limit]
    in_sync: bool
    instance: str | None


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


# -- what to verify ------------------------------------------------------------------------------

def lab_target(lab_name: str, what: str) -> Target:
    """`vm1` or `tap-vm1` of a lab: the port in LAB-host, the instance LAB-vm1, the peer LAB-wan."""
    from vmqos.lab import Lab
    from vmqos.lab.topology import instance_index

    lab = Lab(lab_name)
    name = what.removeprefix("tap-")
    try:
        inst = lab.instance(instance_index(name))
    except InvalidValue:
        raise InvalidValue("PORT|INSTANCE", what, f"name an instance of lab {lab_name} (vm1, vm2, ...) or its "
                                                  "port (tap-vm1, ...)") from None
    for ns in (lab.host_ns, inst.netns, lab.wan_ns):
        if not netns_exists(ns):
            raise NotFound(f"lab {lab_name!r} has no namespace {ns}: `vmqos lab up --name {lab_name}` builds it")
    wan = lab.wan
    return Target(inst.port, lab.host_ns, Endpoint(inst.name, inst.netns, inst.address),
                  Endpoint(wan.name, wan.netns, wan.address), inst.name, lab_name)


def endpoint(role: str, netns: str | None, address: str | None) -> Endpoint:
    """An endpoint in a namespace of this host, IPv4 or IPv6; its address defaults to the
    namespace's first global IPv4 address, or IPv6 when it has none."""
    if netns is None:
        raise MissingValue(f"--{role}-netns NS is needed without --lab: the namespace of the {role} end, where its "
                            "traffic runs (a lab instance: --lab LAB)")
    check_netns(netns)
    if address is None:
        address = first_address(run(["ip", "-j", "addr", "show"], netns).stdout)
        if address is None:
            raise NotFound(f"namespace {netns} has no global IPv4 or IPv6 address: give --{role}-address")
    return Endpoint(netns, netns, _address(f"--{role}-address", address))


def _address(option: str, text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidValue(option, text, "an IPv4 or IPv6 address, e.g. 10.0.0.2 or fd00::2") from None


def remote_endpoint(address: str) -> Endpoint:
    """A peer outside this host: vmqos cannot start processes there, so an iperf3 server must
    already listen on it (`iperf3 -s`); the instance's end runs the client both ways (-R towards
    the instance)."""
    address = _address("--peer-remote", address)
    return Endpoint(address, None, address)


def port_state(store: Store, netns: str | None, port: str) -> PortState:
    """The port's effective limits, read as `vmqos port show` and the sampler read them."""
    from vmqos.core.desired.ports import empty_plan, scope_of
    from vmqos.services.ports import desired_plans, show_port

    shown = show_port(store, netns, port)  # NotFound when vmqos does not manage it
    scope = scope_of(netns)
    plan = desired_plans(store, scope, store.load(scope), [port]).get(port, empty_plan(port))
    caps = PortLimits.of(plan)
    limits = {d: Limit(caps.bps(d), caps.pps(d), getattr(plan, d).peak_bps, getattr(plan, d).burst_bytes)
              for d in DIRECTIONS}
    return PortState(plan, limits, bool(shown["kernel"]["in_sync"]), shown["instance"])


# -- processes -----------------------------------------------------------------------------------

class _Processes:
    """Every process of a run, killed by its own pid when the run ends however it ends."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, argv: Sequence[str], netns: str, *, stdout: Any = subprocess.PIPE) -> subprocess.Popen[str]:
        proc = subprocess.Popen(in_netns(list(argv), netns), stdout=stdout, stderr=subprocess.PIPE, text=True)
        self.started.append(proc)
        return proc

    def __enter__(self) -> "_Processes":
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.kill()
            try:
                proc.communicate(timeout=5)
            except (subprocess.TimeoutExpired, ValueError, OSError):  # pragma: no cover - SIGKILL is not refused
                pass


def _ping(target: Target, *extra: str) -> list[str]:
    return ["ping", "-D", "-n", "-i", f"{PING_INTERVAL_S:g}", "-W", "1", *extra, target.peer.address]


def idle_rtts(procs: _Processes, target: Target) -> list[Rtt]:
    proc = procs.start(_ping(target, "-c", str(IDLE_PINGS)), target.instance.netns)
    start = time.time()
    try:
        out, err = proc.communicate(timeout=IDLE_PINGS * PING_INTERVAL_S + 5)
    except subprocess.TimeoutExpired:
        raise KernelError(f"ping from {target.instance.netns} to {target.peer.address} did not finish") from None
    replies = ping_replies(out, start)
    if not replies:
        raise KernelError(f"{target.instance.netns} gets no ping reply from {target.peer.address} ({target.peer.where})"
                          f": {(err or out).strip().splitlines()[-1] if (err or out).strip() else 'no output'}; "
                          "check the addresses (--instance-address, --peer-address) and their routes")
    return [Rtt(r.at_s - (time.time() - start), r.rtt_us) for r in replies]  # negative: before the load


def _listening(netns: str, port: int) -> bool:
    return bool(run(["ss", "-Hltn", f"sport = :{port}"], netns, check=False).stdout.strip())


def _server(procs: _Processes, netns: str, address: str, port: int) -> subprocess.Popen[str]:
    proc = procs.start(["iperf3", "-s", "-1", "-B", address, "-p", str(port)], netns)
    deadline = time.monotonic() + 5
    while not _listening(netns, port):
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise KernelError(f"iperf3 server in {netns} on port {port} exited: {err.strip() or 'no output'} "
                              "(another server on that port? choose one with --iperf-port)")
        if time.monotonic() > deadline:
            raise KernelError(f"iperf3 server in {netns} is not listening on port {port} after 5 s")
        time.sleep(0.02)
    return proc


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
    with _Processes() as procs, Sampler(target.netns) as sampler:
        idle = idle_rtts(procs, target)
        progress(f"{direction} {traffic.value}: idle RTT {sorted(r.rtt_us for r in idle)[len(idle) // 2] / 1000:.3f}"
                 f" ms; {duration_s:g} s of load {sender.name} -> {receiver.name} ...")
        if not remote:
            assert server_end.netns is not None
            _server(procs, server_end.netns, server_end.address, iperf_port)
        plans = {target.port: state.plan}
        # ping prints 10 lines a second for as long as the run lasts: into an unnamed file, since a
        # pipe nobody reads until the end would fill and stop it
        ping_file = tempfile.TemporaryFile("w+")
        pinger = procs.start(_ping(target), target.instance.netns, stdout=ping_file)
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

    A pass stamps its time before its dumps; on two busy cores it can be preempted in between, and
    counters read 400 ms late make a 4 s window at 3 Mbit/s read 10 % over. A slow pass therefore
    never ends an interval: the next fast one does, and its interval is simply longer.
    """
    started = time.monotonic()
    current = sampler.sample(plans)
    return current, time.monotonic() - started <= MAX_READ_S


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
