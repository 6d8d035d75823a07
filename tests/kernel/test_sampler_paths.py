"""Kernel tier: the sampler's compiled path reads exactly what its Python path reads, on the same traffic.

The compiled path is checked twice: as columns (issue 17: `Sample.columns`, `rates` on the columns,
the default) and as records (`Sampler(columns=False)`, the path before the columns); samples and
the rates between a sample at rest and one after the traffic must be equal on all three.

Two ports on a real namespace, limited by vmqos's own plans (one shaped both ways with packet-rate
limits, one policed), get UDP floods both ways and TCP SYNs, so that every counter a pass reads
has something to say: queues that sent, dropped and still hold packets, nft drops, SYNs. The
bulk leaf classes are slowed to 8 bit/s before the floods, so that what they queue stays queued, and
once the counters stand still both paths must give equal samples, field for field.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from tests.kernel.conftest import sh
from vmqos.core.model.host import EgressMode, HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos, PacketRateLimit
from vmqos.core.plan.host import plan_host
from vmqos.core.plan.names import ifb_name
from vmqos.drivers import counter_arrays
from vmqos.core.analysis.columns import LazyPorts, LazyRates
from vmqos.monitor.sampler import Sampler, rates
from vmqos.reconcile.execute import Reconciler

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(not counter_arrays.available(), reason="the compiled decoder is not built (make)")]

SHAPED, POLICED = "vqsa0", "vqsa1"


def _state() -> HostState:
    shaped = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(1_000_000), packet_rate=PacketRateLimit(400)),
                        egress=DirectionQos(bandwidth=BandwidthLimit(1_000_000), packet_rate=PacketRateLimit(400)))
    policed = NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(1_000_000)))
    return HostState(instances={
        "vm0": InstanceSpec("vm0", ports=(PortSpec(SHAPED, limits=shaped, egress_mode=EgressMode.SHAPE),)),
        "vm1": InstanceSpec("vm1", ports=(PortSpec(POLICED, limits=policed, egress_mode=EgressMode.POLICE),))})


def _wire(host: str, guest: str) -> None:
    """Each port a veth whose peer is in the instance's namespace; no IPv6 and static neighbours,
    so that nothing but the test's own traffic moves a counter."""
    for ns in (host, guest):
        assert sh(ns, "sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && "
                      "ip link set lo up").returncode == 0
    for i, port in enumerate((SHAPED, POLICED)):
        peer = f"vqsb{i}"
        assert sh(host, f"ip link add {port} type veth peer name {peer} && ip link set {peer} netns {guest} && "
                        f"ip link set {port} address 02:00:00:00:0{i}:01 && ip addr add 10.98.{i}.1/24 dev {port} && "
                        f"ip link set {port} up").returncode == 0
        assert sh(guest, f"ip link set {peer} address 02:00:00:00:0{i}:02 && ip addr add 10.98.{i}.2/24 dev {peer} && "
                         f"ip link set {peer} up && "
                         f"ip neigh replace 10.98.{i}.1 lladdr 02:00:00:00:0{i}:01 dev {peer} nud permanent"
                  ).returncode == 0
        assert sh(host, f"ip neigh replace 10.98.{i}.2 lladdr 02:00:00:00:0{i}:02 dev {port} nud permanent"
                  ).returncode == 0


BLAST = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)  # a full queue drops, not the socket (lab facts)
s.setblocking(False)
for _ in range(3000):
    try:
        s.sendto(bytes(1200), (sys.argv[1], 9))
    except (BlockingIOError, ConnectionRefusedError):
        pass
"""

# A bound socket on the floods' port that never reads: its full buffer drops them without a word.
# A closed port would answer each datagram with an ICMP port unreachable, sent by the kernel's ICMP
# socket, one per CPU and shared by every namespace (Linux >= 6.0): the answers that wait in the
# frozen leaves below stay charged to its send buffer, and while they wait no namespace on the host
# can send ICMP (ping got no reply anywhere, 2026-12-07, until the test's namespaces were gone).
SINK = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9))
print("bound", flush=True)
time.sleep(60)
"""


def _sinks(namespaces: tuple[str, ...]) -> list[subprocess.Popen[str]]:
    sinks = [subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SINK], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for ns in namespaces]
    for sink in sinks:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "bound"
    return sinks


def _traffic(host: str, guest: str) -> None:
    """A few SYNs from each instance (short packets: the sparse class 1:f delivers them and their
    resets), then, the bulk leaves slowed to 8 bit/s, UDP floods both ways (3.6 MB each into 1 Mbit/s
    limits): the bulk leaves' queues fill, hold what they took and drop the rest.

    The leaves are slowed before the floods, not during them: the leaf queue at 1 Mbit/s is a
    segmenting TBF of 8 frames (`queues.leaf_queue`), which drains in 0.1 s, where the bfifo it
    replaced held 128 KiB (a second) - slowed 0.2 s into the floods, it had already sent what it held."""
    for i in range(2):
        for port in (9, 10, 11):  # closed: each connect sends a SYN and gets a reset
            sh(guest, f"timeout 1 bash -c 'echo > /dev/tcp/10.98.{i}.1/{port}' 2>/dev/null; true")
    sinks = _sinks((host, guest))
    try:
        _flood(host, guest)
    finally:
        for sink in sinks:
            sink.kill()
            sink.wait()


def _flood(host: str, guest: str) -> None:
    _freeze_queues(host)
    floods = [subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", BLAST, f"10.98.{i}.{peer}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
              for i in range(2) for ns, peer in ((host, 2), (guest, 1))]
    for p in floods:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _until_still(sampler: Sampler, plans, instances) -> None:
    """Sample until the counters stand still (what was in flight has landed), for at most 10 s."""
    previous, deadline = sampler.sample(plans, instances), time.monotonic() + 10
    while True:
        time.sleep(0.3)
        current = sampler.sample(plans, instances)
        if current.ports == previous.ports or time.monotonic() > deadline:
            return
        previous = current


def _freeze_queues(host: str) -> None:
    """The leaf classes at 8 bit/s: what they hold now stays queued while the test reads it."""
    for dev in (SHAPED, ifb_name(SHAPED)):
        assert sh(host, f"tc class change dev {dev} parent 1:1 classid 1:10 htb rate 8bit ceil 8bit").returncode == 0


def test_the_compiled_path_reads_what_the_python_path_reads(netns, peer_netns):
    _wire(netns, peer_netns)
    plans = plan_host(_state())
    with Reconciler(netns) as rec:
        results, _ = rec.reconcile(plans)
    assert [r.error for r in results if r.error] == []
    instances = {SHAPED: "vm0", POLICED: "vm1"}
    with Sampler(netns, method="dumps") as old, Sampler(netns, method="arrays") as new, \
            Sampler(netns, method="arrays", columns=False) as records:
        before_old, before_new = old.sample(plans, instances), new.sample(plans, instances)
        before_records = records.sample(plans, instances)
        assert before_old.ports == before_new.ports == before_records.ports  # before any traffic: counters at rest
        _traffic(netns, peer_netns)
        _until_still(old, plans, instances)
        got = new.sample(plans, instances)
        want = old.sample(plans, instances)
        got_records = records.sample(plans, instances)
        assert got.ports == want.ports == got_records.ports
    # the columnar path was taken (not a fallback to records), and its rates equal the others' over
    # the same interval (the samples' times set equal: the counters stood still at both ends)
    assert isinstance(got.ports, LazyPorts) and got.columns is not None and got_records.columns is None
    for sample, like in ((before_new, before_old), (before_records, before_old), (got, want), (got_records, want)):
        object.__setattr__(sample, "monotonic", like.monotonic)
    columnar, per_port, python = rates(before_new, got), rates(before_records, got_records), rates(before_old, want)
    assert isinstance(columnar, LazyRates) and isinstance(per_port, dict)
    assert columnar == per_port == python
    assert columnar[SHAPED].rates["egress"].dropped_pps > 0 and columnar[SHAPED].syn_pps
    assert columnar[POLICED].rates["egress"].offered_pps > 0
    shaped, policed = got.ports[SHAPED], got.ports[POLICED]
    # Every kind of counter was exercised, so the equality above compared real values.
    down, up = shaped.flows["ingress"], shaped.flows["egress"]
    assert down.delivered_packets > 0 and down.dropped_packets > 0 and down.backlog_bytes > 0
    assert up.delivered_packets > 0 and up.dropped_packets > 0 and up.backlog_bytes > 0
    assert shaped.counters[f"from_{SHAPED}_pps_dropped"].packets > 0
    assert shaped.counters[f"from_{SHAPED}_syn"].packets > 0
    police_up = policed.flows["egress"]
    assert police_up.offered_packets > 0 and police_up.dropped_packets > 0
    assert shaped.link is not None and shaped.link.tx_packets > 0 and policed.link is not None


def test_a_port_that_appears_is_sampled_at_the_next_pass(netns):
    plans = plan_host(HostState(instances={"vm0": InstanceSpec("vm0", ports=(PortSpec(SHAPED),))}))
    with Sampler(netns, method="arrays") as new, Sampler(netns, method="dumps") as old:
        first = new.sample(plans)
        assert first.ports[SHAPED].link is None and first.ports == old.sample(plans).ports  # no such device yet
        assert sh(netns, f"ip link add {SHAPED} type veth peer name vqsb0 && ip link set {SHAPED} up").returncode == 0
        second = new.sample(plans)
        assert second.ports[SHAPED].link is not None and second.ports == old.sample(plans).ports


def test_reading_only_the_needed_counters_by_name_gives_the_same_results(netns, peer_netns):
    """nft_reads="needed": after its first (whole) pass the sampler reads by name only the counters
    the results use; on the same traffic its flows, links and SYN counts equal the Python path's,
    each counter it read equals the dump's, and the counters it left out are the ones a queue
    makes needless (offered and passed of a shaped direction)."""
    _wire(netns, peer_netns)
    plans = plan_host(_state())
    with Reconciler(netns) as rec:
        results, _ = rec.reconcile(plans)
    assert [r.error for r in results if r.error] == []
    instances = {SHAPED: "vm0", POLICED: "vm1"}
    with Sampler(netns, method="dumps") as old, \
            Sampler(netns, method="arrays", nft_reads="needed", full_every=1000) as new:
        first = new.sample(plans, instances)
        assert first.ports == old.sample(plans, instances).ports  # the first pass reads the whole dump
        _traffic(netns, peer_netns)
        _until_still(old, plans, instances)
        got = new.sample(plans, instances)
        want = old.sample(plans, instances)
    assert got.columns is not None  # the columnar path, as the monitor, the exporter and `top` read
    for port in (SHAPED, POLICED):
        g, w = got.ports[port], want.ports[port]
        assert (g.flows, g.link, g.limits, g.instance) == (w.flows, w.link, w.limits, w.instance)
        assert g.counters == {name: w.counters[name] for name in g.counters}
    shaped, policed = got.ports[SHAPED], got.ports[POLICED]
    assert set(shaped.counters) == {f"from_{SHAPED}_syn", f"from_{SHAPED}_pps_dropped", f"to_{SHAPED}_pps_dropped"}
    assert shaped.counters[f"from_{SHAPED}_syn"].packets > 0 and shaped.counters[f"from_{SHAPED}_pps_dropped"].packets > 0
    assert f"from_{POLICED}_offered" in policed.counters and f"from_{POLICED}_dropped" in policed.counters
    up = shaped.flows["egress"]
    assert up.dropped_packets > 0 and up.backlog_bytes > 0 and policed.flows["egress"].dropped_packets > 0


def _spy(sampler: Sampler) -> dict[str, Any]:
    """Records the slots the sampler's last pass asked the kernel for (None: every root qdisc)."""
    reader = sampler._arrays
    assert reader is not None
    asked: dict[str, Any] = {"qdiscs": None, "counters": [], "dumps": 0}
    qdiscs, counters_at, dump = reader.qdiscs, reader.counters_at, reader.counters

    def spy_dump(layout, table="vmqos"):
        asked["dumps"] += 1
        return dump(layout, table)

    def spy_qdiscs(layout, *, by_get=False, slots=None):
        asked["qdiscs"] = None if slots is None else list(slots)
        return qdiscs(layout, by_get=by_get, slots=slots)

    def spy_counters(layout, slots, table="vmqos"):
        asked["counters"] = list(slots)
        return counters_at(layout, slots, table)

    reader.qdiscs = spy_qdiscs  # type: ignore[method-assign]
    reader.counters_at = spy_counters  # type: ignore[method-assign]
    reader.counters = spy_dump  # type: ignore[method-assign]
    return asked


def _same(got, want) -> None:
    for port in (SHAPED, POLICED):
        g, w = got.ports[port], want.ports[port]
        assert (g.flows, g.link, g.limits, g.instance) == (w.flows, w.link, w.limits, w.instance), port
        assert g.counters == {name: w.counters[name] for name in g.counters}, port


def test_a_quiet_instance_side_is_carried_and_equals_what_the_kernel_counts(netns, peer_netns):
    """A port whose device received nothing over two passes has its instance's side carried, not read
    (`monitor.quiet`: the IFB's empty queue, the ingress chain's counters): pass after pass its results
    equal the Python path's, which reads everything; the instance's next frames make the next pass
    read them again, and the SYNs they carry are counted at once. This is the premise on the real
    kernel: the host side's rx counter moves before any counter of the instance's side."""
    _wire(netns, peer_netns)
    plans = plan_host(_state())
    with Reconciler(netns) as rec:
        assert [r.error for r in rec.reconcile(plans)[0] if r.error] == []
    instances = {SHAPED: "vm0", POLICED: "vm1"}
    with Sampler(netns, method="dumps") as old, \
            Sampler(netns, method="arrays", nft_reads="needed", full_every=1000) as new:
        asked = _spy(new)
        new.sample(plans, instances)
        for i in range(2):  # SYNs from each instance, then UDP floods both ways into queues that drain
            sh(peer_netns, f"timeout 1 bash -c 'echo > /dev/tcp/10.98.{i}.1/9' 2>/dev/null; true")
        sinks = _sinks((netns, peer_netns))
        try:
            floods = [subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", BLAST, f"10.98.{i}.{peer}"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                      for i in range(2) for ns, peer in ((netns, 2), (peer_netns, 1))]
            for p in floods:
                p.wait(timeout=30)
        finally:
            for sink in sinks:
                sink.kill()
                sink.wait()
        _until_still(old, plans, instances)
        for _ in range(3):
            got, want = new.sample(plans, instances), old.sample(plans, instances)
            _same(got, want)
        assert want.ports[SHAPED].flows["egress"].backlog_bytes == 0
        assert new.quiet_ports == 2
        layout = new._slots
        assert layout is not None
        ifb_slot = 2 * [row[0] for row in layout.rows].index(SHAPED) + 1
        assert asked["qdiscs"] is not None and ifb_slot not in asked["qdiscs"]  # the IFB's empty queue: carried
        side = {layout.names[s] for s in asked["counters"]}
        assert not {n for n in side if n.startswith(("from_vqsa0_", "from_vqsa1_"))}, side
        assert f"to_{SHAPED}_pps_dropped" in side  # the other direction is read every pass
        syn_before = want.ports[SHAPED].counters[f"from_{SHAPED}_syn"].packets
        assert syn_before > 0 and got.ports[SHAPED].counters[f"from_{SHAPED}_syn"].packets == syn_before
        for port in (12, 13):  # the instance sends again: two SYNs to closed ports, answered with resets
            sh(peer_netns, f"timeout 1 bash -c 'echo > /dev/tcp/10.98.0.1/{port}' 2>/dev/null; true")
        got, want = new.sample(plans, instances), old.sample(plans, instances)
        _same(got, want)
        assert new.quiet_ports == 1 and (asked["qdiscs"] is None or ifb_slot in asked["qdiscs"])  # read again
        assert got.ports[SHAPED].counters[f"from_{SHAPED}_syn"].packets == syn_before + 2
        dumps = asked["dumps"]
        new.sample(plans, instances)
        assert asked["dumps"] == dumps  # the ruleset did not change: no whole dump
        assert sh(netns, "nft add table netdev vqgen").returncode == 0  # any commit moves the generation
        _same(new.sample(plans, instances), old.sample(plans, instances))
        assert asked["dumps"] == dumps + 1 and asked["qdiscs"] is None  # the whole pass: everything read
