"""Kernel tier, issue 19: `vmqos-cni` chained after Debian's real `bridge` + `host-local`, driven through the CNI
protocol (each plugin exec'd with CNI_* and its configuration, as libcni does), in a host namespace `vqch…`
with containers `vqcc…`. ADD limits the host veth and makes the container an instance of the store;
CHECK fails on drift; DEL leaves no IFB, chain or row, twice, without the container's namespace, and
after a plugin killed mid-ADD. A `port set` changes the running container's limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import cni_chain as cni
from tests.kernel.conftest import require
from vmqos.core.desired.ports import PortChange
from vmqos.services.ports import set_port, show_port
from vmqos.store import Store
from vmqos.store import containers as rows

pytestmark = pytest.mark.kernel

VMQOS = {"type": "vmqos-cni", "ingressRate": 10_000_000, "ingressBurst": 80_000, "egressRate": 5_000_000,
         "egressPacketRate": 20_000, "capabilities": {"bandwidth": True}}


@pytest.fixture
def host():
    require("kernel", cni.missing())
    name = cni.new_name("vqch")
    cni.netns_add(name)
    try:
        yield name
    finally:
        cni.netns_del(name)


@pytest.fixture
def containers():
    made: list[str] = []

    def make() -> tuple[str, str]:
        name = cni.new_name("vqcc")
        made.append(name)
        return name, cni.netns_add(name)

    yield make
    for name in made:
        cni.netns_del(name)


@pytest.fixture
def chain(host, tmp_path):
    db = tmp_path / "vq.db"
    conf = cni.conflist("vqnet", "10.199.0.0/24", "vqbr0", [{**VMQOS, "vmqosDatabase": str(db)}], tmp_path / "ipam")
    made = cni.Chain(host, cni.plugin_dir(tmp_path), conf)
    made.db = f"sqlite:///{db}"  # type: ignore[attr-defined]
    return made


def _veth(result: dict) -> str:
    return [i["name"] for i in result["interfaces"] if not i.get("sandbox") and i["name"].startswith("veth")][0]


def _ok(out: cni.Outcome) -> None:
    assert out.returncode == 0, (out.plugin, out.stdout, out.stderr[-2000:])


def _nothing_of_vmqos(host: str) -> None:
    assert cni.links(host, "ifb") == []
    assert cni.nft_chains(host) == []


def test_add_check_del_through_the_real_bridge_plugin(chain, containers, host):
    ctr, path = containers()
    out = chain.add("vqcontainer1", path)
    _ok(out)
    result = out.answer
    assert [i["name"] for i in result["interfaces"]][0] == "vqbr0"  # prevResult handed back unchanged
    veth = _veth(result)
    with Store(chain.db) as store:
        shown = show_port(store, host, veth)
        assert shown.instance == "cni-vqcontainer1"
        assert shown.kernel.in_sync
        assert shown.desired.ingress.rate_bps == 10_000_000 and shown.desired.ingress.burst_bytes == 10_000
        assert shown.desired.egress.rate_bps == 5_000_000
        assert shown.desired.egress.pps == 20_000
        found = rows.find(store, "vqnet", "vqcontainer1", "eth0")
        assert found.state == rows.ADDED and found.device == veth and found.scope == host and found.netns == path
    assert len(cni.links(host, "ifb")) == 1
    assert len(cni.nft_chains(host)) == 2
    cli = subprocess.run([sys.executable, "-c", "from vmqos.cli.main import main; main()", "port", "show", veth,
                          "--netns", host, "--db", chain.db, "--json"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(cni.SRC)})
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["instance"] == "cni-vqcontainer1"  # the operator's `vmqos port show` sees it
    _ok(chain.check("vqcontainer1", path))

    # drift: a foreign root qdisc on the veth -> CHECK fails with the spec's error object
    subprocess.run(["ip", "netns", "exec", host, "tc", "qdisc", "replace", "dev", veth, "root", "pfifo"], check=True)
    out = chain.check("vqcontainer1", path)
    assert out.returncode != 0 and out.plugin == "vmqos-cni"
    assert out.answer["code"] == 5 and "drifted" in out.answer["msg"]
    out = chain.add("vqcontainer1", path, only="vmqos-cni")  # vmqos does not fight a foreign qdisc silently
    assert out.returncode == 1 and "vmqos did not make" in out.answer["details"], out.stdout
    # drift of vmqos's own objects (the foreign qdisc removed, and vmqos's HTB with it): ADD again repairs
    subprocess.run(["ip", "netns", "exec", host, "tc", "qdisc", "del", "dev", veth, "root"], check=True)
    assert chain.check("vqcontainer1", path).returncode == 1
    _ok(chain.add("vqcontainer1", path, only="vmqos-cni"))
    _ok(chain.check("vqcontainer1", path))

    _ok(chain.delete("vqcontainer1", path))
    _nothing_of_vmqos(host)
    assert cni.links(host) == ["lo", "vqbr0"]
    with Store(chain.db) as store:
        assert rows.find(store, "vqnet", "vqcontainer1", "eth0") is None
        assert "cni-vqcontainer1" not in store.load(host).instances
    _ok(chain.delete("vqcontainer1", path))  # DEL twice


def test_add_is_idempotent_and_a_port_set_changes_the_running_container(chain, containers, host):
    ctr, path = containers()
    _ok(chain.add("vqidem", path))
    veth = _veth(chain.results["vqidem"])
    ifbs = cni.links(host, "ifb")
    for _ in range(2):
        _ok(chain.add("vqidem", path, only="vmqos-cni"))
    assert cni.links(host, "ifb") == ifbs and len(cni.nft_chains(host)) == 2
    with Store(chain.db) as store:
        report = set_port(store, host, veth, PortChange(inbound="2500"))  # domiftune: 2500 kB/s = 20 Mbit/s
        assert report.ok, report
        shown = show_port(store, host, veth)
    assert shown.kernel.in_sync and shown.desired.ingress.rate_bps == 20_000_000
    classes = subprocess.run(["ip", "netns", "exec", host, "tc", "class", "show", "dev", veth], capture_output=True,
                             text=True, check=True).stdout
    assert "rate 20Mbit" in classes, classes
    _ok(chain.check("vqidem", path))  # CHECK compares with the store, where the live change is
    _ok(chain.delete("vqidem", path))
    _nothing_of_vmqos(host)


def test_del_without_the_containers_namespace_and_after_the_veth_is_gone(chain, containers, host):
    ctr, path = containers()
    _ok(chain.add("vqgone", path))
    cni.netns_del(ctr)  # the runtime lost the container: its veth went with its namespace
    out = chain.delete("vqgone", path, only="vmqos-cni")
    _ok(out)
    _nothing_of_vmqos(host)  # the IFB of a port whose device is gone is vmqos's to remove
    _ok(chain.delete("vqgone", path))
    with Store(chain.db) as store:
        assert rows.listed(store) == [] and store.load(host).instances == {}


def _killing_nft(tmp: Path) -> Path:
    """An `nft` first on PATH that kills its caller (the plugin) when asked to write: a crash between the
    IFB and qdiscs (made) and the nft chains (never made), at the worst moment."""
    bin_dir = tmp / "killer"
    bin_dir.mkdir()
    real = subprocess.run(["sh", "-c", "command -v nft"], capture_output=True, text=True, check=True).stdout.strip()
    (bin_dir / "nft").write_text('#!/bin/sh\ncase " $* " in *" -f "*) kill -9 $PPID; exit 1;; esac\n'
                                 f'exec {real} "$@"\n')
    (bin_dir / "nft").chmod(0o755)
    return bin_dir


def test_a_plugin_killed_mid_add_leaves_nothing_after_del_and_add_again_converges(chain, containers, host, tmp_path):
    ctr, path = containers()
    killer = {"PATH": f"{_killing_nft(tmp_path)}:{os.environ['PATH']}"}
    out = chain.add("vqcrash", path, env=killer)  # bridge and host-local made the veth; vmqos-cni is killed
    assert out.plugin == "vmqos-cni" and out.returncode == -9, (out.returncode, out.stdout, out.stderr[-1000:])
    assert len(cni.links(host, "ifb")) == 1 and cni.nft_chains(host) == []  # the half state
    with Store(chain.db) as store:
        assert rows.find(store, "vqnet", "vqcrash", "eth0").state == rows.ADDING  # the intent was recorded first
    chain.results["vqcrash"] = chain.partial["vqcrash"]  # the bridge's result, as the runtime would chain it
    _ok(chain.delete("vqcrash", path, only="vmqos-cni"))  # a runtime's answer to a failed ADD
    _nothing_of_vmqos(host)

    out = chain.add("vqcrash", path, env=killer, only="vmqos-cni")  # killed again...
    assert out.returncode == -9 and len(cni.links(host, "ifb")) == 1
    _ok(chain.add("vqcrash", path, only="vmqos-cni"))  # ...and ADD after the crash converges
    assert len(cni.links(host, "ifb")) == 1 and len(cni.nft_chains(host)) == 2
    _ok(chain.check("vqcrash", path))
    _ok(chain.delete("vqcrash", path))
    _nothing_of_vmqos(host)
    with Store(chain.db) as store:
        assert rows.listed(store) == [] and store.applied(host) == {}


def _neutron_policy(store: Store, name: str, max_kbps: int) -> None:
    from datetime import UTC, datetime

    from vmqos.store import qos

    now = datetime.now(UTC)
    qos.save_policy(store, qos.StoredPolicy(
        id=f"{name}-id", project_id="p", name=name, description="", shared=True, is_default=False, revision_number=1,
        tags=(), created_at=now, updated_at=now,
        rules=(qos.StoredRule(f"{name}-r", f"{name}-id", "bandwidth_limit",
                              {"max_kbps": max_kbps, "direction": "ingress"}),)))


def test_a_neutron_policy_by_name_limits_the_container_and_an_unknown_one_is_code_7(host, containers, tmp_path):
    db = tmp_path / "vq.db"
    with Store(f"sqlite:///{db}") as store:  # the all-in-one server's policy, in the database it shares
        _neutron_policy(store, "gold", 3000)
    conf = cni.conflist("vqnet", "10.199.0.0/24", "vqbr0",
                        [{**VMQOS, "vmqosDatabase": str(db), "policy": "gold"}], tmp_path / "ipam")
    chain = cni.Chain(host, cni.plugin_dir(tmp_path), conf)
    ctr, path = containers()
    _ok(chain.add("vqgold", path))
    veth = _veth(chain.results["vqgold"])
    with Store(f"sqlite:///{db}") as store:
        shown = show_port(store, host, veth)
    assert shown.desired.ingress.rate_bps == 3_000_000  # the policy's 3 Mbit/s beats the config's 10: lowest wins
    assert "policy gold" in shown.desired.ingress.source["rate_bps"] and shown.kernel.in_sync
    _ok(chain.delete("vqgold", path))

    conf["plugins"][1]["policy"] = "platinum"
    ctr2, path2 = containers()
    out = chain.add("vqplat", path2)
    assert out.returncode == 1 and out.answer["code"] == 7 and "gold" in out.answer["msg"], out.stdout
    _ok(chain.delete("vqplat", path2))
    _nothing_of_vmqos(host)


def test_two_containers_whose_ids_share_12_characters_stay_two_instances(chain, containers, host):
    ids = ("vqtwin-000000-a", "vqtwin-000000-b")  # the same first 12 characters
    paths = [containers()[1] for _ in ids]
    for cid, path in zip(ids, paths):
        _ok(chain.add(cid, path))
    with Store(chain.db) as store:
        instances = store.load(host).instances
    assert sorted(instances) == ["cni-vqtwin-00000", "cni-vqtwin-000000-b"]
    assert all(len(i.ports) == 1 for i in instances.values())
    _ok(chain.delete(ids[0], paths[0]))
    with Store(chain.db) as store:
        assert sorted(store.load(host).instances) == ["cni-vqtwin-000000-b"]
    _ok(chain.delete(ids[1], paths[1]))
    _nothing_of_vmqos(host)


def test_police_mode_and_dscp_make_no_ifb(host, containers, tmp_path):
    db = tmp_path / "vq.db"
    conf = cni.conflist("vqnet", "10.199.0.0/24", "vqbr0", [{
        "type": "vmqos-cni", "vmqosDatabase": str(db), "egressRate": 5_000_000, "egressBurst": 400_000,
        "egressMode": "police", "dscp": 18}], tmp_path / "ipam")
    chain = cni.Chain(host, cni.plugin_dir(tmp_path), conf)
    ctr, path = containers()
    _ok(chain.add("vqpolice", path))
    veth = _veth(chain.results["vqpolice"])
    with Store(f"sqlite:///{db}") as store:
        shown = show_port(store, host, veth)
    assert shown.egress_mode.value == "police" and shown.desired.egress.dscp == 18 and shown.kernel.in_sync
    assert shown.desired.egress.burst_bytes == 50_000
    assert cni.links(host, "ifb") == [] and cni.nft_chains(host)  # policed and marked by nft on the veth
    _ok(chain.check("vqpolice", path))
    _ok(chain.delete("vqpolice", path))
    _nothing_of_vmqos(host)
