"""Kernel tier: the monitor's counter reader against what iproute2 reports for the same objects."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.kernel.conftest import sh
from vmqos.drivers.counters import CounterReader

pytestmark = pytest.mark.kernel


def _ip(ns: str, *argv: str) -> None:
    subprocess.run(["ip", "-n", ns, *argv], check=True)


def test_qdisc_and_link_counters_match_iproute2(netns):
    _ip(netns, "link", "add", "vqa0", "type", "veth", "peer", "name", "vqb0")
    _ip(netns, "addr", "add", "10.99.0.1/24", "dev", "vqa0")
    for dev in ("lo", "vqa0", "vqb0"):
        _ip(netns, "link", "set", dev, "up")
    _ip(netns, "neigh", "add", "10.99.0.2", "lladdr", "02:00:00:00:00:02", "dev", "vqa0")  # out of vqa0, no ARP
    sh(netns, "tc qdisc add dev vqa0 root handle 1: htb default 10 && "
              "tc class add dev vqa0 parent 1: classid 1:10 htb rate 8kbit && "
              "tc qdisc add dev vqa0 parent 1:10 handle 10: bfifo limit 3000 && "
              "tc qdisc add dev vqa0 handle ffff: ingress")
    # 40 pings of 1,000 bytes into an 8 kbit/s class with a 3,000-byte queue: some are sent,
    # some queued, most dropped, so every counter has something to say.
    sh(netns, "ping -f -c 40 -s 1000 -W 0.01 10.99.0.2 >/dev/null 2>&1; true")
    with CounterReader(netns) as reader:
        qdiscs = reader.qdiscs()
        top = reader.qdiscs(top_only=True)
        links = reader.links()
        vqa0 = json.loads(subprocess.run(["ip", "-n", netns, "-j", "link", "show", "vqa0"], capture_output=True,
                                         text=True, check=True).stdout)[0]["ifindex"]
        only_vqa0 = reader.qdiscs(devices={vqa0})
    listed = json.loads(subprocess.run(["tc", "-n", netns, "-s", "-j", "qdisc", "show"], capture_output=True,
                                       text=True, check=True).stdout)
    names = {link["ifname"]: link["ifindex"] for link in json.loads(subprocess.run(
        ["ip", "-n", netns, "-s", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout)}
    by_key = {(q.ifindex, q.where): q for q in qdiscs}
    for item in listed:
        where = "root" if item.get("root") else "ingress" if item["parent"] == "ffff:fff1" else item["parent"]
        got = by_key[(names[item["dev"]], where)]
        assert got.kind == item["kind"]
        # The counters only grow between the two reads (IPv6 neighbour discovery may still send).
        assert item["bytes"] >= got.stats.bytes and item["packets"] >= got.stats.packets
        assert item["drops"] >= got.stats.drops and item["backlog"] >= 0
    root = by_key[(names["vqa0"], "root")]
    leaf = by_key[(names["vqa0"], "1:10")]
    assert root.stats.packets > 0 and leaf.stats.drops > 0 and root.stats.drops == leaf.stats.drops
    assert {(q.ifindex, q.where) for q in top} == {k for k in by_key if k[1] in ("root", "ingress")}
    assert sorted(q.kind for q in only_vqa0) == ["bfifo", "htb", "ingress"]  # not vqb0's, not lo's
    assert {q.ifindex for q in only_vqa0} == {vqa0}
    assert links[names["vqa0"]].tx_packets >= root.stats.packets  # the device counts what the qdisc sent
    assert links[names["vqb0"]].rx_packets == links[names["vqa0"]].tx_packets


def test_reader_refuses_a_missing_namespace():
    from vmqos.core.errors import NotFound

    with pytest.raises(NotFound):
        CounterReader("vq-no-such-namespace")


def test_nft_counters_over_netlink_match_nft_json(netns):
    from vmqos.core.observed import CounterValue
    from vmqos.drivers.nft import Nft

    _ip(netns, "link", "add", "vqa0", "type", "veth", "peer", "name", "vqb0")
    _ip(netns, "addr", "add", "10.99.0.1/24", "dev", "vqa0")
    for dev in ("lo", "vqa0", "vqb0"):
        _ip(netns, "link", "set", dev, "up")
    _ip(netns, "neigh", "add", "10.99.0.2", "lladdr", "02:00:00:00:00:02", "dev", "vqa0")
    with CounterReader(netns) as reader:
        assert reader.nft_counters() == {}  # no table yet
        sh(netns, "nft add table netdev vmqos && nft add counter netdev vmqos to_vqa0_offered && "
                  "nft add counter netdev vmqos other_passed && nft add table netdev foreign && "
                  "nft add counter netdev foreign to_vqa0_offered && "
                  "nft 'add chain netdev vmqos to_vqa0 { type filter hook egress device \"vqa0\" priority 0; }' && "
                  "nft add rule netdev vmqos to_vqa0 counter name to_vqa0_offered")
        sh(netns, "ping -c 5 -i 0.2 -W 0.1 10.99.0.2 >/dev/null 2>&1; true")
        mine = reader.nft_counters()
    theirs = Nft(netns).counters()
    assert set(mine) == set(theirs) == {"to_vqa0_offered", "other_passed"}  # only vmqos's table
    assert mine["to_vqa0_offered"] == theirs["to_vqa0_offered"]
    assert mine["to_vqa0_offered"].packets >= 5 and mine["other_passed"] == CounterValue(0, 0)


def test_the_monitor_plans_again_only_when_the_desired_state_or_a_quarantine_changes(netns, tmp_path):
    from datetime import UTC, datetime

    from vmqos.core.model.host import HostState, InstanceSpec, PortSpec
    from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
    from vmqos.monitor.daemon import Monitor, MonitorConfig
    from vmqos.store import monitor as mstore
    from vmqos.store.store import Store

    def state(bps: int) -> HostState:
        qos = NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(bps)))
        return HostState(instances={"vm1": InstanceSpec("vm1", ports=(PortSpec("vqa0", limits=qos),))})

    with Store(f"sqlite:///{tmp_path}/m.db") as store:
        store.save(netns, state(50_000_000))
        with Monitor(store, netns) as mon:
            plans, instances = mon.plans()
            assert instances == {"vqa0": "vm1"} and plans["vqa0"].egress.rate_bps == 50_000_000
            assert mon.plans()[0] is plans  # nothing changed: the same plans, not planned again
            store.save(netns, state(20_000_000))
            changed = mon.plans()[0]
            assert changed is not plans and changed["vqa0"].egress.rate_bps == 20_000_000
            mstore.put_quarantine(store, netns, mstore.Quarantine("vqa0", MonitorConfig().quarantine, "flood",
                                                                   datetime.now(UTC)))
            quarantined = mon.plans()[0]
            assert quarantined["vqa0"].egress.rate_bps == 1_000_000 and mon.plans()[0] is quarantined
            mstore.lift_quarantine(store, netns, "vqa0")
            assert mon.plans()[0]["vqa0"].egress.rate_bps == 20_000_000
