"""Issue 13 item 5 ("Trust"): a foreign netdev chain hooking several managed ports at once, ahead of
vmqos's chains, is drift for every one of them: `check` reports it, `apply` refuses the ports unless
forced. nft 1.0.6 lists such a chain as `devices = { vqa0, vqa1 }` and leaves devices out of JSON."""

from __future__ import annotations

import subprocess

import pytest

from tests.kernel.conftest import sh
from vmqos.core.model.host import HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.core.plan.host import plan_host
from vmqos.reconcile.execute import Reconciler
from vmqos.services.ports import check_host
from vmqos.store import Store

pytestmark = pytest.mark.kernel

DEVICES = ("vqa0", "vqa1")


@pytest.fixture
def ports(netns):
    for a, b in (("vqa0", "vqb0"), ("vqa1", "vqb1"), ("vqa2", "vqb2")):
        subprocess.run(["ip", "-n", netns, "link", "add", a, "type", "veth", "peer", "name", b], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", a, "up"], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", b, "up"], check=True)
    return netns


def _state() -> HostState:
    qos = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(10_000_000)),
                     egress=DirectionQos(bandwidth=BandwidthLimit(10_000_000)))
    return HostState(instances={d: InstanceSpec(d, ports=(PortSpec(d, limits=qos),)) for d in DEVICES})


def test_a_foreign_chain_on_two_ports_is_drift_for_both(ports, tmp_path):
    with Reconciler(ports) as rec:
        results, _ = rec.reconcile(plan_host(_state()))
        assert all(r.error is None for r in results)
    made = sh(ports, "nft add table netdev vqforeign && nft 'add chain netdev vqforeign divert { type filter hook "
                     "ingress devices = { \"vqa0\", \"vqa1\" } priority -1000; policy accept; }' && "
                     "nft 'add rule netdev vqforeign divert fwd to \"vqa2\"'")
    assert made.returncode == 0, made.stderr
    with Store(f"sqlite:///{tmp_path}/vq.db") as store:
        store.save(ports, _state())
        drift = {d.port: d for d in check_host(store, ports)}
    for dev in DEVICES:
        assert not drift[dev].ok, f"{dev}: a foreign chain diverts it, yet check says in sync"
        assert [(h.table, h.chain, h.hook) for h in drift[dev].foreign_hooks] == [("vqforeign", "divert", "ingress")]
    with Reconciler(ports) as rec:
        results, record = rec.reconcile(plan_host(_state()))
        assert all(r.error and "vqforeign" in r.error and "--force" in r.error for r in results) and record == {}
        results, _ = rec.reconcile(plan_host(_state()), force=True)
        assert all(r.error is None for r in results)
    assert "divert" in sh(ports, "nft list table netdev vqforeign").stdout  # not vmqos's to delete
