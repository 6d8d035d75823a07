"""Low rates without bufferbloat (issue 16): one TCP flow through a 1 or 3 Mbit/s limit.

Before, a 64 KiB GSO aggregate was dequeued whole and the leaf queue held 128 KiB: at 1 Mbit/s
+0.9 s of RTT and 14-16 % of goodput lost. Now the leaf is a TBF that segments (its queue 8
frames) and short packets have their own class. Judged at the receiver (iperf3 -i 0.1), with
bounds a shared 2-vCPU machine holds; bench/dataplane_bench.py reports the exact figures.
Cost: about 8 s per case (11 s with BBR), 4 cases; the AQM's cases (ECN flows): 3 more, about 25 s.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from vmqos.core.desired.ports import PortChange
from vmqos.core.model.host import EgressMode, Policy
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.core.plan.planner import KernelProfile, leaf_queue, min_burst
from vmqos.drivers.process import in_netns, run

from vmqos.core.plan.names import ifb_name

from .harness import TCP_GOODPUT_PER_FRAME, LeafRate, kill, log, median, ping_rtts, start_ping

pytestmark = [pytest.mark.traffic, pytest.mark.kernel]

MBIT = 1_000_000
SECONDS = 5
# BBR v1 through the 8-frame leaf at 1-3 Mbit/s retransmits ~60 times in 5 s and now and then waits out
# an RTO (~0.2-0.26 s of nothing): in a 3 s steady window that alone read -8.7 % (CI, 2026-12-07). Its
# flows run 8 s, so that one such stall stays inside the bound (6 s of steady window); the benchmark
# reports the exact figures, and the receive-window clamp (a port's opt-in, below) removes the losses.
BBR_SECONDS = 8


def _run(sender_ns: str, receiver_ns: str, address: str, cc: str, ping_from: str, ping_to: str,
         seconds: int = SECONDS, leaf: LeafRate | None = None):
    server = subprocess.Popen(in_netns(["iperf3", "-s", "-1", "-J", "-i", "0.1"], receiver_ns),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = pinger = None
    try:
        time.sleep(0.3)
        client = subprocess.Popen(in_netns(["iperf3", "-c", address, "-t", str(seconds), "-J", "-C", cc], sender_ns),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if leaf is not None:
            leaf.begin()
        time.sleep(1.5)
        pinger = start_ping(ping_from, ping_to, count=25, interval=0.1)
        rtts = ping_rtts(pinger)
        sent = json.loads(client.communicate(timeout=seconds + 20)[0])
        got = json.loads(server.communicate(timeout=20)[0])
    finally:
        for proc in (pinger, client, server):
            kill(proc)
    return sent, got, rtts


@pytest.mark.parametrize("mbit,direction,cc", [(1, "to", "cubic"), (1, "from", "bbr"), (3, "to", "bbr"),
                                               (3, "from", "cubic")])
def test_one_tcp_flow_holds_a_low_rate_with_a_short_queue(lab, ports, mbit, direction, cc):
    vm1 = lab.instance(1)
    limit = mbit * MBIT
    side = DirectionQos(bandwidth=BandwidthLimit(limit))
    qos = NetworkQos(ingress=side) if direction == "to" else NetworkQos(egress=side)
    ports.set(vm1.port, PortChange(policy=Policy(f"low-{direction}", qos), egress_mode=EgressMode.SHAPE))
    idle = median(ping_rtts(start_ping(lab.wan_ns, vm1.address, count=5, interval=0.1)))
    seconds = BBR_SECONDS if cc == "bbr" else SECONDS
    # the frame rate the port's bulk leaf sent from 2 s on: BBR's retransmissions are frames the limit
    # passed, which goodput / 0.956 would read as the limiter falling short
    leaf = LeafRate(lab.host_ns, vm1.port if direction == "to" else ifb_name(vm1.port), "1:10", 2.0, seconds - 0.3)
    if direction == "to":
        sent, got, rtts = _run(lab.wan_ns, vm1.netns, vm1.address, cc, lab.wan_ns, vm1.address, seconds, leaf)
    else:
        sent, got, rtts = _run(vm1.netns, lab.wan_ns, lab.wan_address, cc, lab.wan_ns, vm1.address, seconds, leaf)
    intervals = [i["sum"] for i in got["intervals"]]
    rate = leaf.bps()
    first = sum(i["bytes"] for i in intervals if i["end"] <= 1.0 + 1e-3) * 8 / TCP_GOODPUT_PER_FRAME
    profile = KernelProfile()  # vmqos's default burst: 10 ms, at least two frames and a timer tick
    burst_bits = max(limit * profile.burst_time_us // 8_000_000, min_burst(limit, 1500, profile)) * 8
    own_rtt_ms = sent["end"]["streams"][0]["sender"]["mean_rtt"] / 1000
    queue = leaf_queue("x", "1:10", 0x10, limit, burst_bits // 8, 1500, profile)
    queue_ms = (queue.limit_bytes or 0) * 8 / limit * 1000
    log(f"{direction} vm1 {mbit} Mbit/s {cc}: the leaf's frame rate from 2 s {rate / MBIT:.3f} Mbit/s ({rate / limit - 1:+.2%}), "
        f"first second {first / MBIT:.3f} Mbit ({first / limit - 1:+.1%}, burst {burst_bits / limit:.1%}), "
        f"ping under load median {median(rtts) if rtts else float('nan'):.2f} ms (idle {idle:.2f}, {len(rtts)}/25), "
        f"the flow's own RTT {own_rtt_ms:.1f} ms (its leaf queue {queue.qdisc_kind} {queue_ms:.0f} ms), "
        f"retransmits {sent['end']['sum_sent'].get('retransmits')}")
    assert queue.qdisc_kind == "tbf"
    assert abs(rate - limit) <= 0.05 * limit, f"frame rate {rate / MBIT:.3f} Mbit/s against {mbit}"
    assert first <= 1.05 * limit + burst_bits, f"first second {first / MBIT:.3f} Mbit against {mbit} + the burst"
    assert len(rtts) >= 22, f"only {len(rtts)} of 25 pings answered under load"
    assert median(rtts) - idle <= 30, f"ping under load {median(rtts):.1f} ms, idle {idle:.2f} ms"
    # the flow's own queue is the leaf's (8 frames: 97 ms at 1 Mbit/s), not the second of before
    assert own_rtt_ms <= 2 * queue_ms + 30, f"the flow's RTT {own_rtt_ms:.1f} ms, its queue {queue_ms:.0f} ms"


@pytest.fixture
def ecn(lab):
    """ECN negotiated by the flows between wan and vm1 (net.ipv4.tcp_ecn=1 in both), put back after."""
    namespaces = (lab.wan_ns, lab.instance(1).netns)
    before = {ns: run(["sysctl", "-n", "net.ipv4.tcp_ecn"], ns).stdout.strip() for ns in namespaces}
    for ns in namespaces:
        run(["sysctl", "-qw", "net.ipv4.tcp_ecn=1"], ns)
    try:
        yield
    finally:
        for ns, value in before.items():
            run(["sysctl", "-qw", f"net.ipv4.tcp_ecn={value}"], ns, check=False)


@pytest.mark.parametrize("mbit,direction,bound_ms", [(1, "to", 45), (3, "from", 18), (10, "to", 8)])
def test_the_aqm_keeps_an_ecn_flows_own_queue_short_at_its_rate(lab, ports, ecn, mbit, direction, bound_ms):
    """The AQM (queues.aqm) marks CE over its virtual queue: a cubic flow with ECN keeps its own added RTT
    near CoDel's target (measured 23-26 ms at 1 Mbit/s, 8 at 3, 2.4 at 10, where the leaf queue alone
    gave it 85-88, 26-29 and 12-17 ms) and its rate. The bounds are about twice what was measured and
    below what the leaf queue alone gives."""
    _own_queue_is_short(lab, ports, mbit, direction, "cubic", bound_ms, "aqm", "cubic+ECN")


@pytest.mark.parametrize("mbit,direction,cc,bound_ms", [(1, "from", "bbr", 30), (3, "to", "bbr", 20),
                                                       (10, "from", "cubic", 9)])
def test_the_window_clamp_keeps_the_own_queue_of_a_flow_without_ecn_short(lab, ports, mbit, direction, cc, bound_ms):
    """A port that opts in to the window clamp (queues.window_clamps): a flow that does not negotiate ECN
    (the default: tcp_ecn=2 only accepts it), BBR or cubic, which the AQM cannot touch, keeps its own
    added RTT near rate x 3 ms or two to three segments (measured 17 ms at 1 Mbit/s, 14 at 3 and 4.2 at
    10, where the leaf queue alone gave it 65-89, 23-30 and 12-18 ms), at its rate. The bounds are below what the leaf
    alone gives, so the test fails without the clamp."""
    _own_queue_is_short(lab, ports, mbit, direction, cc, bound_ms, "clamp", f"{cc} without ECN", window_clamp=True)


def _own_queue_is_short(lab, ports, mbit: int, direction: str, cc: str, bound_ms: float, name: str, flow: str,
                        window_clamp: bool = False) -> None:
    """One flow through vm1's port shaped at `mbit` in `direction`: its frame rate within 5 % of the limit and
    its own added RTT (iperf3's mean_rtt at the sender, minus the idle ping) at most `bound_ms`."""
    vm1 = lab.instance(1)
    limit = mbit * MBIT
    side = DirectionQos(bandwidth=BandwidthLimit(limit))
    qos = NetworkQos(ingress=side) if direction == "to" else NetworkQos(egress=side)
    ports.set(vm1.port, PortChange(policy=Policy(f"{name}-{direction}", qos), egress_mode=EgressMode.SHAPE,
                                   window_clamp=window_clamp))
    idle = median(ping_rtts(start_ping(lab.wan_ns, vm1.address, count=5, interval=0.1)))
    if direction == "to":
        sent, got, _ = _run(lab.wan_ns, vm1.netns, vm1.address, cc, lab.wan_ns, vm1.address)
    else:
        sent, got, _ = _run(vm1.netns, lab.wan_ns, lab.wan_address, cc, lab.wan_ns, vm1.address)
    steady = [i["sum"] for i in got["intervals"] if i["sum"]["start"] >= 2.0 - 1e-3]
    rate = sum(i["bytes"] for i in steady) * 8 / sum(i["seconds"] for i in steady) / TCP_GOODPUT_PER_FRAME
    own_ms = sent["end"]["streams"][0]["sender"]["mean_rtt"] / 1000 - idle
    log(f"{name} {direction} vm1 {mbit} Mbit/s {flow}: frame rate {rate / MBIT:.3f} Mbit/s ({rate / limit - 1:+.2%}), "
        f"the flow's own added RTT {own_ms:.1f} ms (bound {bound_ms}), retransmits "
        f"{sent['end']['sum_sent'].get('retransmits')}")
    assert abs(rate - limit) <= 0.05 * limit, f"frame rate {rate / MBIT:.3f} Mbit/s against {mbit}"
    assert own_ms <= bound_ms, f"the flow's own added RTT {own_ms:.1f} ms, more than {bound_ms} ms"
