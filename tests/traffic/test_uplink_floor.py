"""Guaranteed minimums on the uplink (issue 16): 50 / 30 / 0 Mbit/s for vm1 / vm2 / vm3 on a 100 Mbit/s wan0.

The lab's host namespace reaches the wan through `wan0`: towards the instances the traffic arrives on
wan0 (classified on its IFB by destination address), from them it leaves through wan0 (classified by
the mark each port's ingress chain sets). The plan is applied with `apply_host` from a host file, as
`vmqos apply` does, and pruned at the end (the kernel must be clean after). Each case runs one cubic
TCP flow per sending instance for 5 s at once (vm3, without a guarantee, sends four), and reads each
receiver's L2 frame rate from 1.5 s on. Every guarantee must hold within −5 %; the link must be used
(the surplus goes to someone); an idle instance's part goes to the others. IPv4 both directions,
and IPv6 both directions with vm1 against vm3; vm1 also has a 90 Mbit/s limit of its own, so its port
shapes on an IFB and the mark must survive it; `check` sees a changed class of the uplink. Cost: about
40 s.
"""

from __future__ import annotations

import subprocess
from contextlib import ExitStack
from typing import Any

import pytest

from vmqos.core.formats.hostfile import read_host
from vmqos.drivers.process import in_netns
from vmqos.services.ports import apply_host, check_host
from vmqos.services.serialize import to_json
from vmqos.store import Store

from .harness import finish_client, iperf_server, kill, log, sh

pytestmark = [pytest.mark.traffic, pytest.mark.kernel]

MBIT = 1_000_000
CAPACITY = 100 * MBIT
GUARANTEE = {1: 50 * MBIT, 2: 30 * MBIT, 3: 0}
SECONDS = 5
SETTLED_S = 1.5
V6_NET, V6_WAN = "fd00:247::", "fd00:247:1::"
# TCP payload per 1514-byte frame: 1448 bytes over IPv4, 1428 over IPv6 (timestamps on)
GOODPUT_PER_FRAME = {4: 1448 / 1514, 6: 1428 / 1514}


def _v6(index: int) -> str:
    return f"{V6_NET}{10 + index}"


def _host_file(lab: Any) -> str:
    ports = "\n".join(
        f"  vm{i}:\n    ports: [{{device: {lab.instance(i).port}"
        + (f", policy: g{i}" if GUARANTEE[i] else "")
        + f", addresses: [{lab.instance(i).address}, '{_v6(i)}']}}]"
        for i in GUARANTEE)
    # vm1 also has a limit of its own (90 Mbit/s, its class's ceiling): its port shapes what it sends on an
    # IFB, and the mark its ingress chain set must survive the IFB to reach the uplink's class
    limit = {1: ", rate: 90mbit"}
    policies = "\n".join(f"  g{i}: {{ingress: {{min: {g // MBIT}mbit{limit.get(i, '')}}}, "
                         f"egress: {{min: {g // MBIT}mbit{limit.get(i, '')}}}}}"
                         for i, g in GUARANTEE.items() if g)
    return (f"version: 1\nuplink: {{device: wan0, capacity: {CAPACITY // MBIT}mbit}}\n"
            f"policies:\n{policies}\ninstances:\n{ports}\n")


def _add_ipv6(lab: Any) -> None:
    """The lab is IPv4 only: give it a /64 on br-int and one on wan0, forwarded by the host namespace."""
    host = lab.host_ns
    sh(host, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    sh(host, "ip", "-6", "addr", "replace", f"{V6_NET}1/64", "dev", "br-int", "nodad")
    sh(host, "ip", "-6", "addr", "replace", f"{V6_WAN}1/64", "dev", "wan0", "nodad")
    for i in GUARANTEE:
        ns = lab.instance(i).netns
        sh(ns, "ip", "-6", "addr", "replace", f"{_v6(i)}/64", "dev", "eth0", "nodad")
        sh(ns, "ip", "-6", "route", "replace", "default", "via", f"{V6_NET}1")
    sh(lab.wan_ns, "ip", "-6", "addr", "replace", f"{V6_WAN}2/64", "dev", "eth0", "nodad")
    sh(lab.wan_ns, "ip", "-6", "route", "replace", "default", "via", f"{V6_WAN}1")


def _remove_ipv6(lab: Any) -> None:
    sh(lab.host_ns, "ip", "-6", "addr", "del", f"{V6_NET}1/64", "dev", "br-int", check=False)
    sh(lab.host_ns, "ip", "-6", "addr", "del", f"{V6_WAN}1/64", "dev", "wan0", check=False)
    for i in GUARANTEE:
        sh(lab.instance(i).netns, "ip", "-6", "addr", "del", f"{_v6(i)}/64", "dev", "eth0", check=False)
    sh(lab.wan_ns, "ip", "-6", "addr", "del", f"{V6_WAN}2/64", "dev", "eth0", check=False)


@pytest.fixture(scope="module")
def uplink(lab, tmp_path_factory):
    """The uplink plan applied to the lab; pruned after, and the kernel checked clean."""
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('uplink')}/vq.db")
    text = _host_file(lab)
    try:
        _add_ipv6(lab)
        report = apply_host(store, lab.host_ns, read_host(text))
        assert report.ok, to_json(report)
        drift = [d for d in check_host(store, lab.host_ns) if d.operations or d.missing_device]
        assert not drift, to_json(drift)
        yield lab, store, text
    finally:
        try:
            report = apply_host(store, lab.host_ns, read_host("version: 1\n"), prune=True)
            assert report.ok, to_json(report)
            left = sh(lab.host_ns, "tc", "qdisc", "show", "dev", "wan0").stdout
            assert "htb" not in left, left
            assert "wan0" not in sh(lab.host_ns, "nft", "list", "ruleset").stdout
        finally:
            _remove_ipv6(lab)
            store.close()


def _settled(server: dict[str, Any], family: int) -> float:
    late = [i["sum"] for i in server["intervals"] if i["sum"]["start"] >= SETTLED_S - 0.01]
    assert late, "the receiver reported no interval after the flows settled"
    return sum(i["bytes"] for i in late) * 8 / sum(i["seconds"] for i in late) / GOODPUT_PER_FRAME[family]


def _flows(lab_store: Any, senders: list[int], towards: bool, family: int = 4) -> dict[int, float]:
    """One cubic flow per sending instance (vm3: four), all at once; each receiver's frame rate."""
    lab = lab_store[0]
    wan_address = lab.wan_address if family == 4 else f"{V6_WAN}2"
    with ExitStack() as stack:
        servers, clients = {}, {}
        for i in senders:
            vm = lab.instance(i)
            port = 5300 + i
            receiver = vm.netns if towards else lab.wan_ns
            servers[i] = stack.enter_context(iperf_server(receiver, "-i", "0.5", port=port))
        for i in senders:
            vm = lab.instance(i)
            sender, address = (lab.wan_ns, vm.address if family == 4 else _v6(i)) if towards \
                else (vm.netns, wan_address)
            argv = ["iperf3", "-c", address, "-p", str(5300 + i), "-t", str(SECONDS), "-J", "-C", "cubic",
                    "-P", "4" if i == 3 else "1"]
            clients[i] = subprocess.Popen(in_netns(argv, sender), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True)
        try:
            for proc in clients.values():
                finish_client(proc, SECONDS)
            return {i: _settled(servers[i].result(), family) for i in senders}
        finally:
            for proc in clients.values():
                kill(proc)


def _judge(rates: dict[int, float], what: str) -> None:
    shown = ", ".join(f"vm{i} (guarantee {GUARANTEE[i] // MBIT}) {r / MBIT:.1f}" for i, r in rates.items())
    total = sum(rates.values())
    log(f"{what}: {shown}; sum {total / MBIT:.1f} of {CAPACITY // MBIT} Mbit/s")
    for i, rate in rates.items():
        assert rate >= 0.95 * GUARANTEE[i], f"{what}: vm{i} got less than its guarantee: {shown}"
    # The surplus is handed out, not lost: the senders together fill the link.
    assert total >= 0.93 * CAPACITY, f"{what}: the link is not used: {shown}"


@pytest.mark.parametrize("towards", [True, False], ids=["towards-instances", "from-instances"])
def test_each_guarantee_holds_and_the_surplus_is_shared(uplink, towards):
    rates = _flows(uplink, [1, 2, 3], towards)
    _judge(rates, f"IPv4 {'towards' if towards else 'from'} the instances, all sending")
    # vm3 (four flows, no guarantee) cannot take more than what the guarantees leave, plus noise
    assert rates[3] <= (CAPACITY - 80 * MBIT) * 1.5, rates
    # the surplus above the guarantees goes to someone: 20 Mbit/s, vm3's default class here
    assert rates[3] >= 0.5 * (CAPACITY - 80 * MBIT), rates


@pytest.mark.parametrize("towards,idle", [(True, 1), (False, 2)], ids=["towards-vm1-idle", "from-vm2-idle"])
def test_an_idle_guarantee_goes_to_the_others(uplink, towards, idle):
    senders = [i for i in GUARANTEE if i != idle]
    rates = _flows(uplink, senders, towards)
    _judge(rates, f"IPv4 {'towards' if towards else 'from'} the instances, vm{idle} idle")
    # each sender gets more than its own rate in the tree (its guarantee, or the default class's 20)
    for i in senders:
        own = GUARANTEE[i] or CAPACITY - 80 * MBIT
        assert rates[i] >= own + 0.25 * GUARANTEE[idle], rates


@pytest.mark.parametrize("towards", [True, False], ids=["towards-instances", "from-instances"])
def test_ipv6_no_guarantee_cannot_starve_a_guarantee(uplink, towards):
    rates = _flows(uplink, [1, 3], towards, family=6)
    _judge(rates, f"IPv6 {'towards' if towards else 'from'} the instances, vm1 against vm3's four flows")


def test_check_sees_the_uplinks_drift_and_apply_puts_it_back(uplink):
    lab, store, text = uplink
    sh(lab.host_ns, "tc", "class", "change", "dev", "wan0", "parent", "1:1", "classid", "1:10", "htb", "rate", "5mbit",
       "ceil", "100mbit")
    drift = {d.port: d.operations for d in check_host(store, lab.host_ns) if d.operations}
    assert drift == {"wan0": ["replace class wan0 1:10"]}, drift
    report = apply_host(store, lab.host_ns, read_host(text))
    assert report.ok and [r.ops for r in report.results if r.ops], to_json(report)
    assert not [d for d in check_host(store, lab.host_ns) if d.operations]
