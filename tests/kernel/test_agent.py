"""Kernel tier: `vmqos agent` on a real namespace `vqk…` with real tap and veth devices, following
the fake server of tests/fakefeed.py (the real client comes with the server side of issue 15).

What the kernel holds is read back with vmqos's own read-back (`services.ports.show_port` and
`check_host` on the agent's cache store) and with `tc` itself. Every wait is a bound (WAIT_S),
never a measurement: the window between a tap's creation and its limits is bench/tap_window_bench.py's.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.fakefeed import FakeFeed, FakeServer, wait_for
from vmqos.agent.daemon import Agent, AgentSettings
from vmqos.core.errors import NotFound
from vmqos.core.plan.names import ifb_name
from vmqos.monitor.daemon import MonitorConfig
from vmqos.services.ports import check_host, show_port
from vmqos.services.serialize import to_json
from vmqos.store import Store

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 10.0
# both directions: what is sent towards the instance is shaped on the tap itself, which a new tap
# lacks (egress is shaped on an IFB, and this kernel (6.18) re-attaches a netdev chain to a device
# of the same name that comes back: alone, it would survive a tap's re-creation)
RATE = {"ingress": {"rate": 2_000_000}, "egress": {"rate": 3_000_000}}


def ip(netns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", netns, *args], check=True, capture_output=True, timeout=30)


def tap(netns: str, name: str) -> None:
    ip(netns, "tuntap", "add", name, "mode", "tap")
    ip(netns, "link", "set", name, "up")


def kernel_rates(db: str, netns: str, device: str) -> set[int]:
    """The HTB rates the kernel holds for the port, read back; empty when it is not in sync."""
    with Store(db, read_only=True) as store:
        try:
            shown = to_json(show_port(store, netns, device))
        except NotFound:
            return set()
    if not shown["kernel"]["in_sync"]:
        return set()
    return {o["rate_bps"] for o in shown["kernel"]["objects"] if o["kind"] == "class" and "rate_bps" in o}


class Host:
    def __init__(self, netns: str, tmp: Path) -> None:
        self.netns, self.tmp = netns, tmp
        self.db = f"sqlite:///{tmp / 'agent.db'}"
        self.server = FakeServer(tmp / "server.json")
        self.running: list[tuple[Agent, Store]] = []

    def agent(self, **options: Any) -> Agent:
        store = Store(self.db)
        settings = {"wait_s": 0.5, "report_s": 0.5, "backoff_max_s": 0.5, "use_libvirt": False,
                    "monitor": MonitorConfig(), **options}
        agent = Agent(AgentSettings("http://fake", "vqhost", self.netns, **settings), FakeFeed(self.server), store)
        self.running.append((agent, store))
        return agent.start()

    def stop(self) -> None:
        while self.running:
            agent, store = self.running.pop()
            agent.stop()
            store.close()

    def rates(self, device: str) -> set[int]:
        return kernel_rates(self.db, self.netns, device)

    def report(self, wanted: Callable[[dict[str, Any]], bool], timeout: float = WAIT_S) -> dict[str, Any]:
        return wait_for("a report", lambda: next((r for r in reversed(self.server.all_reports()) if wanted(r)), None),
                        timeout)


@pytest.fixture
def host(netns, tmp_path):
    h = Host(netns, tmp_path)
    try:
        yield h
    finally:
        h.stop()


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {p["device"]: p["status"] for p in report["ports"]}


def test_a_device_wanted_before_it_exists_is_limited_when_created_and_after_a_reboot(host, caplog):
    caplog.set_level(logging.INFO, logger="vmqos")
    ip(host.netns, "link", "add", "vqv0", "type", "veth", "peer", "name", "vqv1")
    host.server.put("vqt0", RATE)
    host.agent(retry_s=3600, resync_s=3600)  # no retry, no resync: only the link event can place it
    assert statuses(host.report(lambda r: bool(r["ports"]))) == {"vqt0": "pending"}
    registered = host.server.path.with_suffix(".registrations").read_text()
    assert '"device": "vqv0", "kind": "veth"' in registered
    tap(host.netns, "vqt0")
    wait_for("the limit on the new tap", lambda: 3_000_000 in host.rates("vqt0"))
    assert statuses(host.report(lambda r: statuses(r) == {"vqt0": "in_sync"})) == {"vqt0": "in_sync"}
    ip(host.netns, "link", "del", "vqt0")  # the VM reboots: libvirt deletes its tap and makes a new one
    host.report(lambda r: statuses(r) == {"vqt0": "pending"})
    tap(host.netns, "vqt0")
    wait_for("the limit on the re-created tap", lambda: 3_000_000 in host.rates("vqt0"))
    assert any("device vqt0 appeared" in r.getMessage() for r in caplog.records)


def test_a_desired_change_through_the_feed_reaches_the_kernel(host):
    tap(host.netns, "vqt1")
    host.server.put("vqt1", {"egress": {"rate": 3_000_000}})
    host.agent()
    wait_for("3 Mbit/s", lambda: 3_000_000 in host.rates("vqt1"))
    revision = host.server.put("vqt1", {"egress": {"rate": 6_000_000}})
    wait_for("6 Mbit/s", lambda: host.rates("vqt1") and 3_000_000 not in host.rates("vqt1")
             and 6_000_000 in host.rates("vqt1"))
    report = host.report(lambda r: r["applied_revision"] == revision)
    assert report["ports"] == [{"device": "vqt1", "revision": revision, "status": "in_sync", "message": ""}]
    assert [s["device"] for s in host.report(lambda r: bool(r["samples"]))["samples"]] == ["vqt1"]


def test_a_restart_keeps_the_limits_and_reapplies_the_cache_with_the_server_down(host):
    tap(host.netns, "vqt2")
    host.server.put("vqt2", RATE)
    host.agent()
    wait_for("limited", lambda: 3_000_000 in host.rates("vqt2"))
    host.stop()
    assert 3_000_000 in host.rates("vqt2")  # stopping the agent removed nothing
    host.server.set_down(True)
    ip(host.netns, "link", "del", "vqt2")  # the host reboots: the tap comes back bare
    tap(host.netns, "vqt2")
    assert not host.rates("vqt2")
    agent = host.agent()
    assert {2_000_000, 3_000_000} <= host.rates("vqt2")  # from the cache, by start(), the server unreachable
    wait_for("the server seen down", lambda: agent.follower.reach.failing == "ServerUnreachable")
    assert {2_000_000, 3_000_000} <= host.rates("vqt2")


def test_kill_9_during_a_pass_then_a_restart_converges_with_no_orphans(host):
    devices = [f"vqk{i:02d}" for i in range(80)]
    for device in devices:
        ip(host.netns, "link", "add", device, "type", "veth", "peer", "name", "vqp" + device[3:])
        host.server.put(device, RATE)
    argv = [sys.executable, "-m", "tests.kernel.agent_proc", str(host.server.path), host.db, host.netns, "vqhost"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    log = open(host.tmp / "agent.log", "w")
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:  # as soon as the first IFB exists
            if subprocess.run(["ip", "-n", host.netns, "-o", "link", "show", "type", "ifb"], capture_output=True,
                              text=True).stdout.strip():
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed = (host.tmp / "agent.log").read_text()
        assert "revision none -> 80" in killed and "reconcile pass" not in killed, killed  # during its first pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for device in devices[::2]:  # while it was dead, half of them stopped being wanted
        host.server.delete(device)
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        revision = host.server.state["revision"]
        host.report(lambda r: r["applied_revision"] == revision and all(p["status"] == "in_sync" for p in r["ports"])
                    and len([p for p in r["ports"] if p["message"] != "released"]) == 40, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (host.tmp / "agent.log").read_text()
        log.close()
    with Store(host.db, read_only=True) as store:
        drift = check_host(store, host.netns)
    assert all(d.ok for d in drift), [to_json(d) for d in drift if not d.ok]  # no orphan, no drift
    assert {d.port for d in drift} == set(devices[1::2])
    for device in devices[::2]:
        out = subprocess.run(["tc", "-n", host.netns, "qdisc", "show", "dev", device], capture_output=True, text=True)
        assert "htb" not in out.stdout and "ingress" not in out.stdout, out.stdout
    ifbs = subprocess.run(["ip", "-n", host.netns, "-o", "link", "show", "type", "ifb"], capture_output=True,
                          text=True).stdout
    assert sorted(line.split(":")[1].strip() for line in ifbs.splitlines()) == sorted(
        ifb_name(d) for d in devices[1::2])
    assert "Traceback" not in (host.tmp / "agent.log").read_text()


def test_resync_repairs_a_deleted_qdisc_and_a_deleted_chain(host):
    tap(host.netns, "vqt3")
    host.server.put("vqt3", RATE)
    host.agent(resync_s=1.0)
    wait_for("limited", lambda: {2_000_000, 3_000_000} <= host.rates("vqt3"))
    ip(host.netns, "link", "set", "vqt3", "mtu", "1400")  # news of the same link: not an event that places it
    subprocess.run(["tc", "-n", host.netns, "qdisc", "del", "dev", "vqt3", "root"], check=True)
    assert not host.rates("vqt3")
    wait_for("the qdisc repaired", lambda: {2_000_000, 3_000_000} <= host.rates("vqt3"))
    listed = subprocess.run(["ip", "netns", "exec", host.netns, "nft", "list", "table", "netdev", "vmqos"],
                            capture_output=True, text=True, check=True).stdout
    chain = next(line.split()[1] for line in listed.splitlines() if line.strip().startswith("chain "))
    subprocess.run(["ip", "netns", "exec", host.netns, "nft", "flush", "chain", "netdev", "vmqos", chain],
                   check=True)
    wait_for("the chain repaired", lambda: {2_000_000, 3_000_000} <= host.rates("vqt3"))
    report = host.report(lambda r: bool(r["ports"]) and r["ports"][0]["status"] == "in_sync")
    assert report["ports"][0]["device"] == "vqt3"
