"""Kernel tier: `vmqos server --all-in-one` turns the openstack CLI's QoS commands into a device's limits.

The test starts the server as root on a throwaway namespace `vqk…` with veth devices, drives it
with the real `openstack` CLI, and reads the kernel back with vmqos's own read-back
(`services.ports.show_port`, what `vmqos port show --json` prints). A change must reach the kernel
within about a second: each wait below polls for at most WAIT_S, and is a bound, not a measurement.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.server.conftest import ADMIN_PASSWORD, Server, free_port, openstack_cli, vmqos
from vmqos.core.errors import NotFound
from vmqos.services.ports import check_host, show_port
from vmqos.services.serialize import to_json
from vmqos.store import Store
from vmqos.store import neutron_ports as records

pytestmark = pytest.mark.kernel

WAIT_S = 5.0
HOST = "vqhost"


def _link(netns: str, name: str) -> None:
    peer = "vqp" + name[3:]
    subprocess.run(["ip", "-n", netns, "link", "add", name, "type", "veth", "peer", "name", peer], check=True)
    for dev in (name, peer):
        subprocess.run(["ip", "-n", netns, "link", "set", dev, "up"], check=True)


def _wait(what: str, probe: Callable[[], Any], wanted: Callable[[Any], bool], log: Path) -> Any:
    deadline = time.monotonic() + WAIT_S
    while True:
        seen = probe()
        if wanted(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {WAIT_S} s; last seen {seen}\nserver log:\n{log.read_text()}")
        time.sleep(0.1)


def _egress(db: str, netns: str, device: str) -> dict[str, Any]:
    """The device's desired egress and whether the kernel holds it: the rates of the HTB classes read back."""
    with Store(db, read_only=True) as store:
        try:
            shown = to_json(show_port(store, netns, device))
        except NotFound as exc:  # not in the scope's desired state (yet)
            return {"rate": None, "burst": None, "in_sync": False, "kernel_rates": [], "not_found": str(exc)}
    rates = sorted({o["rate_bps"] for o in shown["kernel"]["objects"] if o["kind"] == "class" and "rate_bps" in o})
    return {"rate": shown["desired"]["egress"]["rate_bps"], "burst": shown["desired"]["egress"]["burst_bytes"],
            "in_sync": shown["kernel"]["in_sync"], "kernel_rates": rates}


def _managed(db: str, netns: str) -> set[str]:
    with Store(db, read_only=True) as store:
        return {d.port for d in check_host(store, netns)}


@pytest.fixture
def all_in_one(netns, tmp_path):
    cli = openstack_cli()
    db = f"sqlite:///{tmp_path / 'vmqos.db'}"
    assert vmqos("server", "init", "--admin-password", ADMIN_PASSWORD, "--db", db, cwd=tmp_path).returncode == 0
    port = free_port()
    log_path = tmp_path / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "vmqos.cli.main", "server", "--all-in-one", "--netns", netns,
                             "--host", HOST, "--listen", f"127.0.0.1:{port}", "--db", db], cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start: {log_path.read_text()}")
            time.sleep(0.1)
        yield Server(url, db, cli, tmp_path), proc, log_path
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def test_a_policy_set_on_a_port_limits_its_device_live_and_stopping_leaves_nothing(netns, all_in_one):
    server, proc, log = all_in_one
    _link(netns, "vqa0")
    ok = server.json
    ok("network", "qos", "policy", "create", "bw-limiter")
    rule = ok("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps", "3000",
              "--max-burst-kbits", "300", "--egress", "bw-limiter")
    ok("network", "create", "vq-net")
    port = ok("port", "create", "--network", "vq-net", "--host", HOST, "--binding-profile", "device=vqa0", "vq-port")
    assert port["binding_vif_details"] == {"device": "vqa0"}
    assert server.openstack("port", "set", "--qos-policy", "bw-limiter", "vq-port").returncode == 0

    seen = _wait("the policy on vqa0", lambda: _egress(server.db, netns, "vqa0"),
                 lambda s: s["in_sync"] and 3_000_000 in s["kernel_rates"], log)
    assert (seen["rate"], seen["burst"]) == (3_000_000, 37_500)  # 300 kbit of 1000 bit = 37,500 bytes

    changed = server.openstack("network", "qos", "rule", "set", "--max-kbps", "6000", "bw-limiter", rule["id"])
    assert changed.returncode == 0, changed.stderr
    seen = _wait("the new rate on vqa0", lambda: _egress(server.db, netns, "vqa0"),
                 lambda s: s["in_sync"] and 6_000_000 in s["kernel_rates"], log)
    assert seen["rate"] == 6_000_000 and 3_000_000 not in seen["kernel_rates"]

    assert server.openstack("port", "unset", "--qos-policy", "vq-port").returncode == 0
    _wait("vqa0 released", lambda: _managed(server.db, netns), lambda managed: "vqa0" not in managed, log)
    qdiscs = subprocess.run(["tc", "-n", netns, "qdisc", "show", "dev", "vqa0"], capture_output=True, text=True)
    assert "htb" not in qdiscs.stdout and "ingress" not in qdiscs.stdout, qdiscs.stdout

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, log.read_text()
    text = log.read_text()
    assert "Traceback" not in text and "the enforcer stopped; the limits it placed stay in place" in text
    with Store(server.db, read_only=True) as store:
        assert records.enforced(store, netns) == {}
        state = store.load(netns)
        assert state.ports() == [] and state.policies == {}  # no port, no Neutron policy left in the scope
        assert all(d.ok for d in check_host(store, netns))


def test_a_missing_device_is_retried_and_a_foreign_port_is_left_alone(netns, all_in_one):
    server, proc, log = all_in_one
    _link(netns, "vqa2")
    foreign = vmqos("port", "set", "vqa2", "--outbound", "1000,0,0", "--netns", netns, "--db", server.db,
                    cwd=server.cwd)
    assert foreign.returncode == 0, foreign.stderr
    operators = _egress(server.db, netns, "vqa2")
    ok = server.json
    ok("network", "qos", "policy", "create", "bw")
    ok("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps", "2000", "--egress", "bw")
    ok("network", "create", "--qos-policy", "bw", "vq-net")  # the network's policy: the ports have none
    ok("port", "create", "--network", "vq-net", "--host", HOST, "--binding-profile", "device=vqa1", "late")
    ok("port", "create", "--network", "vq-net", "--host", HOST, "--binding-profile", "device=vqa2", "taken")

    _wait("one line for the missing device", lambda: log.read_text(), lambda t: "device vqa1 does not exist" in t, log)
    _link(netns, "vqa1")
    seen = _wait("the network's policy on vqa1 once it exists", lambda: _egress(server.db, netns, "vqa1"),
                 lambda s: s["in_sync"] and 2_000_000 in s["kernel_rates"], log)
    assert seen["rate"] == 2_000_000
    text = log.read_text()
    assert text.count("device vqa1 does not exist") == 1, text
    assert "device vqa2 of port" in text and "managed by a host file or `vmqos port set`" in text
    assert _egress(server.db, netns, "vqa2") == operators  # the operator's limit, untouched

    assert server.openstack("port", "delete", "late").returncode == 0
    _wait("vqa1 released", lambda: _managed(server.db, netns), lambda managed: "vqa1" not in managed, log)
    assert "vqa2" in _managed(server.db, netns)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0, log.read_text()
