"""`vmqos lab` builds a routed hypervisor of namespaces, grows it, enters it and removes exactly it.

Every test uses its own lab `vq<6 hex>` and removes it in a finalizer, even when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from vmqos.lab import Lab, lab_down, lab_exec, lab_status, lab_up

from .conftest import _missing, require

pytestmark = pytest.mark.kernel

VMQOS = [sys.executable, "-m", "vmqos.cli.main"]  # the real entry point: one-line errors, exit codes


def _namespaces() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


def _remove_leftovers(name: str) -> None:
    """Whatever lab_down could not remove: the name is random, so its prefix is this test's alone."""
    for ns in _namespaces():
        if ns.startswith(f"{name}-"):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                subprocess.run(["kill", "-9", pid], check=False)
            subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.fixture
def lab_name():
    require("kernel", _missing() or (None if shutil.which("ping") else "needs ping (apt-get install iputils-ping)"))
    name = f"vq{uuid.uuid4().hex[:6]}"
    try:
        yield name
    finally:
        try:
            lab_down(name)
        finally:
            _remove_leftovers(name)


def ip_json(ns: str | None, *args: str) -> list[dict]:
    return json.loads(subprocess.run(["ip", "-j", *(["-n", ns] if ns else []), *args], capture_output=True,
                                     text=True, check=True).stdout)


def ping(ns: str, address: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", address], capture_output=True,
                          text=True, timeout=10)


def vmqos(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VMQOS_DEBUG"}
    return subprocess.run([*VMQOS, *args], capture_output=True, text=True, timeout=60, env=env)


def _root() -> tuple[list[str], list[dict]]:
    return sorted(link["ifname"] for link in ip_json(None, "link", "show")), ip_json(None, "route", "show")


def test_up_builds_a_routed_lab_and_leaves_the_root_namespace_alone(lab_name):
    lab = Lab(lab_name)
    root_before = _root()
    status = lab_up(lab_name, 2)

    assert status.namespaces == (lab.host_ns, lab.ns("vm1"), lab.ns("vm2"), lab.wan_ns)
    assert _namespaces() >= set(status.namespaces)
    assert status.instances == lab.instances(2) and status.wan == lab.wan and status.problems == ()
    assert (status.gateway, status.bridge_mac) == ("10.247.0.1", lab.bridge_mac)

    (bridge,) = ip_json(lab.host_ns, "-d", "link", "show", "br-int")
    assert bridge["linkinfo"]["info_kind"] == "bridge"
    ports = ip_json(lab.host_ns, "link", "show", "master", "br-int")
    assert sorted(p["ifname"] for p in ports) == ["tap-vm1", "tap-vm2"]
    for inst in lab.instances(2):
        (eth0,) = ip_json(inst.netns, "addr", "show", "eth0")
        assert eth0["address"] == inst.mac and "UP" in eth0["flags"]
        assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"] == [
            (inst.address, 25)]
        assert ip_json(inst.netns, "route", "show", "default")[0]["gateway"] == "10.247.0.1"
    (wan0,) = ip_json(lab.host_ns, "addr", "show", "wan0")
    assert [a["local"] for a in wan0["addr_info"] if a["family"] == "inet"] == ["10.247.0.129"]
    forwarding = subprocess.run(["ip", "netns", "exec", lab.host_ns, "sysctl", "-n", "net.ipv4.ip_forward"],
                                capture_output=True, text=True)
    assert forwarding.stdout.strip() == "1"

    vm1, vm2 = lab.instances(2)
    assert ping(vm1.netns, vm2.address).returncode == 0, "vm1 -> vm2 through br-int"
    assert ping(lab.wan_ns, vm1.address).returncode == 0, "wan -> vm1 routed by the host namespace"
    assert ping(vm2.netns, lab.wan_address).returncode == 0, "vm2 -> wan routed by the host namespace"
    assert _root() == root_before


def test_up_again_changes_nothing_finishes_and_grows(lab_name):
    lab = Lab(lab_name)
    first = lab_up(lab_name, 2)
    links = ip_json(lab.host_ns, "link", "show")
    assert lab_up(lab_name, 2) == first
    assert ip_json(lab.host_ns, "link", "show") == links  # same devices, same ifindexes: nothing recreated

    # Half-broken: vm2 lost its address and route, tap-vm1 (and so vm1's eth0) is gone.
    subprocess.run(["ip", "-n", lab.ns("vm2"), "addr", "flush", "dev", "eth0"], check=True)
    subprocess.run(["ip", "-n", lab.host_ns, "link", "del", "tap-vm1"], check=True)
    assert lab_status(lab_name).problems
    assert lab_up(lab_name, 2) == first

    grown = lab_up(lab_name, 3)
    assert grown.instances == lab.instances(3) and grown.problems == ()
    assert ping(lab.ns("vm3"), lab.instance(1).address).returncode == 0

    shrink = vmqos("lab", "up", "--name", lab_name, "--instances", "1", "--json")
    assert shrink.returncode == 0, shrink.stderr
    assert [i["name"] for i in json.loads(shrink.stdout)["instances"]] == ["vm1", "vm2", "vm3"]
    assert "keeps vm2, vm3" in shrink.stderr


def test_cli_list_and_exec(lab_name, capfd):
    lab = Lab(lab_name)
    missing = vmqos("lab", "list", "--name", lab_name)
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0 and f"no lab '{lab_name}' is up" in missing.stderr
    assert "Traceback" not in missing.stderr

    assert vmqos("lab", "up", "--name", lab_name, "--instances", "2").returncode == 0
    listed = vmqos("lab", "list", "--name", lab_name, "--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert [(i["name"], i["port"], i["address"], i["mac"]) for i in data["instances"]] == [
        (i.name, i.port, i.address, i.mac) for i in lab.instances(2)]
    assert data["wan"]["address"] == "10.247.0.130" and data["problems"] == []
    table = vmqos("lab", "list", "--name", lab_name)
    assert "tap-vm2" in table.stdout and "10.247.0.12/25" in table.stdout and lab.instance(2).mac in table.stdout

    assert vmqos("lab", "exec", "--name", lab_name, "vm1", "--", "sh", "-c", "exit 3").returncode == 3
    assert vmqos("lab", "exec", "--name", lab_name, "wan", "--", "ping", "-c", "1", "-W", "1",
                 "10.247.0.11").returncode == 0
    unknown = vmqos("lab", "exec", "--name", lab_name, "vm7", "--", "true")
    assert unknown.returncode == 1 and "has no vm7" in unknown.stderr

    capfd.readouterr()
    assert lab_exec(lab_name, "vm1", ["sh", "-c", "ip -br addr show eth0; exit 0"]) == 0
    assert "10.247.0.11/25" in capfd.readouterr().out  # not captured: the command wrote to our stdout itself
    assert lab_exec(lab_name, "host", ["sh", "-c", "kill -TERM $$"]) == 128 + 15


def test_down_removes_the_lab_its_processes_and_nothing_else(lab_name, netns):
    lab = Lab(lab_name)
    lab_up(lab_name, 2)
    root_before = _root()
    sleeper = subprocess.Popen(["ip", "netns", "exec", lab.ns("vm1"), "sleep", "60"])
    try:
        assert sorted(lab_down(lab_name)) == sorted([lab.host_ns, lab.ns("vm1"), lab.ns("vm2"), lab.wan_ns])
        assert sleeper.wait(timeout=10) == -9
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
    assert not {ns for ns in _namespaces() if ns.startswith(f"{lab_name}-")}
    assert netns in _namespaces(), "an unrelated vq namespace survives"
    assert lab_status(lab_name) is None
    assert _root() == root_before
    assert lab_down(lab_name) == []
    again = vmqos("lab", "down", "--name", lab_name)
    assert again.returncode == 0 and "nothing to remove" in again.stdout
