"""Traffic classes inside one instance's limit, as seed 004 asks: web 50 %, mail 30 %, the rest 20 %.

Concurrent TCP flows to ports 80, 25 and 5201 through one port's limit get the configured split
(within 5 % of the limit each); with the rest idle, its share goes to web and mail in their ratio
(HTB lends a parent's surplus to the classes at the same priority in proportion to their quanta).
Rates are read at each receiver after the flows settled (from 1.5 s on), as L2 frame rates.
The AQM of a classed port (one virtual queue at the port's rate, before the class filters) keeps each
class's ECN flow's own RTT short while the split holds. Cost: about 40 s for the five tests.
"""

from __future__ import annotations

import subprocess
from contextlib import ExitStack
from typing import Any

import pytest

from vmqos.core.desired.ports import PortChange
from vmqos.core.model.host import EgressMode, Policy
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos, TrafficClass, TrafficMatch
from vmqos.drivers.process import in_netns

from .harness import TCP_GOODPUT_PER_FRAME, finish_client, iperf_server, kill, log, median, ping_rtts, start_ping
from .test_low_rates import ecn  # noqa: F401 - the fixture: ECN negotiated between wan and vm1

pytestmark = [pytest.mark.traffic, pytest.mark.kernel]

MBIT = 1_000_000
LIMIT = 20 * MBIT
SECONDS = 5
SETTLED_S = 1.5
SHARES = {80: 50, 25: 30, 5201: 20}  # web, mail, the rest (a port no class matches)
CLASSES = (TrafficClass("web", 50, TrafficMatch("tcp", (80,))), TrafficClass("mail", 30, TrafficMatch("tcp", (25,))),
           TrafficClass("rest", 20))


def _policy(direction: str) -> Policy:
    side = DirectionQos(bandwidth=BandwidthLimit(LIMIT), classes=CLASSES)
    qos = NetworkQos(ingress=side) if direction == "ingress" else NetworkQos(egress=side)
    return Policy(f"classes-{direction}", qos)


def _settled_rate(server: dict[str, Any]) -> float:
    """The L2 frame rate a receiver got from SETTLED_S on (its own 0.5 s reports)."""
    late = [i["sum"] for i in server["intervals"] if i["sum"]["start"] >= SETTLED_S - 0.01]
    assert late, "the receiver reported no interval after the flows settled"
    return sum(i["bytes"] for i in late) * 8 / sum(i["seconds"] for i in late) / TCP_GOODPUT_PER_FRAME


def _flows(sender_ns: str, receiver_ns: str, address: str, ports: tuple[int, ...]) -> dict[int, float]:
    """One TCP flow per port, all at once, cubic; each receiver's settled frame rate."""
    return {p: rate for p, (rate, _sent) in _flows_with_senders(sender_ns, receiver_ns, address, ports).items()}


def _flows_with_senders(sender_ns: str, receiver_ns: str, address: str,
                        ports: tuple[int, ...]) -> dict[int, tuple[float, dict[str, Any]]]:
    """As `_flows`, with each sender's iperf3 JSON (its mean_rtt: the flow's own RTT)."""
    with ExitStack() as stack:
        servers = {p: stack.enter_context(iperf_server(receiver_ns, "-i", "0.5", port=p)) for p in ports}
        clients = {p: subprocess.Popen(in_netns(["iperf3", "-c", address, "-p", str(p), "-t", str(SECONDS), "-J",
                                                 "-C", "cubic"], sender_ns),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in ports}
        try:
            sent = {p: finish_client(proc, SECONDS) for p, proc in clients.items()}
            return {p: (_settled_rate(servers[p].result()), sent[p]) for p in ports}
        finally:
            for proc in clients.values():
                kill(proc)


def _check(rates: dict[int, float], expected_percent: dict[int, float], what: str, tolerance: float = 0.05) -> None:
    shown = ", ".join(f"port {p}: {r / MBIT:.2f} Mbit/s ({100 * r / LIMIT:.1f} %, expected {expected_percent[p]:.1f} %)"
                      for p, r in rates.items())
    log(f"{what}: {shown}; sum {sum(rates.values()) / MBIT:.2f} of {LIMIT // MBIT} Mbit/s")
    for port, rate in rates.items():
        assert abs(rate - LIMIT * expected_percent[port] / 100) <= tolerance * LIMIT, f"{what}: {shown}"


@pytest.mark.parametrize("direction", ["ingress", "egress"])
def test_three_concurrent_flows_split_the_limit_50_30_20(lab, ports, direction):
    vm1 = lab.instance(1)
    ports.set(vm1.port, PortChange(policy=_policy(direction), egress_mode=EgressMode.SHAPE))
    if direction == "ingress":
        rates = _flows(lab.wan_ns, vm1.netns, vm1.address, tuple(SHARES))
    else:
        rates = _flows(vm1.netns, lab.wan_ns, lab.wan_address, tuple(SHARES))
    _check(rates, {p: float(s) for p, s in SHARES.items()}, f"{direction} 50/30/20")


def test_an_idle_class_is_borrowed_by_the_others_in_their_ratio(lab, ports):
    vm1 = lab.instance(1)
    ports.set(vm1.port, PortChange(policy=_policy("ingress")))
    rates = _flows(lab.wan_ns, vm1.netns, vm1.address, (80, 25))
    # the rest's 20 % shared 50:30 between web and mail: 62.5 % and 37.5 %. Within 1.5 % of the limit,
    # because an equal split of the surplus (quanta clamped one by one) is 60/40, only 2.5 % off; measured
    # 62.2/37.8 on a shared 2-vCPU machine.
    _check(rates, {80: 62.5, 25: 37.5}, "ingress, the rest idle", tolerance=0.015)


@pytest.mark.parametrize("busy,bound_ms", [((80,), 8), ((80, 25, 5201), 20)])
def test_the_aqm_keeps_each_classs_ecn_flow_short_while_the_split_holds(lab, ports, ecn, busy, bound_ms):  # noqa: F811
    """Cubic flows with ECN towards the instance: one class busy and borrowing the whole port, or all three
    at 50/30/20. Measured (docs/benchmarks.md §11, 20 Mbit/s, towards the instance, 3 runs): the flow's own
    added RTT 1.0 ms alone (16-18 ms without the AQM), 2.0-2.2 / 3.5-3.7 / 5.6-7.0 ms for web / mail / the
    rest (34 / 54-56 / 83-86 without it), the split unchanged. The bounds are about 3 times the worst
    measured and below what the leaf queues alone give."""
    vm1 = lab.instance(1)
    ports.set(vm1.port, PortChange(policy=_policy("ingress"), egress_mode=EgressMode.SHAPE))
    idle = median(ping_rtts(start_ping(lab.wan_ns, vm1.address, count=5, interval=0.1)))
    found = _flows_with_senders(lab.wan_ns, vm1.netns, vm1.address, busy)
    own = {p: sent["end"]["streams"][0]["sender"]["mean_rtt"] / 1000 - idle for p, (_rate, sent) in found.items()}
    log("aqm, classes busy " + ", ".join(f"port {p}: own added RTT {ms:.1f} ms" for p, ms in own.items()))
    expected = {80: 100.0} if len(busy) == 1 else {p: float(s) for p, s in SHARES.items()}
    _check({p: rate for p, (rate, _sent) in found.items()}, expected, f"ingress with ECN, busy {busy}")
    assert all(ms <= bound_ms for ms in own.values()), f"the flows' own added RTT {own}, bound {bound_ms} ms"
