"""Kernel tier: `vmqos server --all-in-one` turns the openstack CLI's QoS commands into a device's limits,
and the native API's ports (a typed vmqos policy) and the host's uplink too: every desired row of its host.

The test starts the server as root on a throwaway namespace `vqk…` with veth devices, drives it
with the real `openstack` CLI, and reads the kernel back with vmqos's own read-back
(`services.ports.show_port`, what `vmqos port show --json` prints). A change must reach the kernel
within about a second: each wait below polls for at most WAIT_S, and is a bound, not a measurement.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.server.conftest import ADMIN_PASSWORD, Server, free_port, openstack_cli, vmqos
from vmqos.core.errors import NotFound
from vmqos.core.plan.tc_objects import HtbClass, Qdisc
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


# a typed vmqos policy with what Neutron's rules cannot say: a peak towards the instance, classes in what it sends
GOLD = {"name": "gold", "qos": {
    "ingress": {"bandwidth": {"rate_bps": 10_000_000, "peak_bps": 20_000_000}},
    "egress": {"bandwidth": {"rate_bps": 8_000_000}, "min_bps": 3_000_000,  # held on the host's uplink
               "classes": [{"name": "web", "share_percent": 60, "match": {"protocol": "tcp", "ports": [80]}},
                           {"name": "rest", "share_percent": 40}]}}}


def _api(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request of the native API as admin (a token first), its status and JSON body."""
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"name": "Default"}, "password": ADMIN_PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}
    req = urllib.request.Request(url + "/v3/auth/tokens", json.dumps(auth).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=20) as answer:
        token = answer.headers["X-Subject-Token"]
    req = urllib.request.Request(url + path, json.dumps(body).encode() if body is not None else None, method=method,
                                 headers={"X-Auth-Token": token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    return status, json.loads(text) if text else None


def _kernel(db: str, netns: str, device: str) -> dict[str, Any] | None:
    """The device's HTB classes by (device, classid) -> (rate, ceil) and root qdiscs by device -> handle, as
    vmqos reads the kernel back; None while the device is not in the scope's desired state."""
    with Store(db, read_only=True) as store:
        try:
            shown = show_port(store, netns, device)
        except NotFound:
            return None
    objects = shown.kernel.objects
    return {"classes": {(o.dev, o.classid): (o.rate_bps, o.ceil_bps) for o in objects if isinstance(o, HtbClass)},
            "roots": {o.dev: o.handle for o in objects if isinstance(o, Qdisc) and o.parent == "root"},
            "in_sync": shown.kernel.in_sync}


def _holds_gold(kernel: dict[str, Any] | None, device: str, ingress: tuple[int, int], egress: int) -> bool:
    """In sync, and: towards the instance (the device's own tree) 1:1 at the rate with a leaf borrowing up to
    the peak; from it (the device's IFB) 1:1 at the rate and two leaves sharing it 60:40 beside 1:f."""
    if kernel is None or not kernel["in_sync"]:
        return False
    tap = {cid: rc for (dev, cid), rc in kernel["classes"].items() if dev == device}
    ifb = {cid: rc for (dev, cid), rc in kernel["classes"].items() if dev != device}
    rate, peak = ingress
    if not tap or tap.get("1:1") != (rate, rate) or max(ceil for _r, ceil in tap.values()) != peak:
        return False
    shares = sorted(r for cid, (r, _c) in ifb.items() if cid not in ("1:1", "1:f"))
    return ifb.get("1:1") == (egress, egress) and len(shares) == 2 and shares[1] * 40 == shares[0] * 60 \
        and "1:f" in ifb and sum(shares) + ifb["1:f"][0] == egress


def _arrivals(netns: str, device: str) -> int:
    """Packets that reached the device's root qdisc (sent + dropped): a qdisc made again starts from 0."""
    out = subprocess.run(["tc", "-n", netns, "-s", "-j", "qdisc", "show", "dev", device], capture_output=True,
                         text=True, check=True).stdout
    return sum(q.get("packets", 0) + q.get("drops", 0) for q in json.loads(out or "[]") if q.get("root"))


def _send_frames(netns: str, device: str, count: int = 5) -> None:
    """Raw broadcast frames out of `device` (through its root qdisc), from a packet socket in the namespace."""
    code = ("import socket; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((%r, 0)); "
            "[s.send(b'\\xff' * 6 + b'\\x02' * 6 + b'\\x88\\xb5' + bytes(46)) for _ in range(%d)]" % (device, count))
    subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code], check=True, timeout=10)


def _uplink_classes(netns: str, device: str) -> dict[str, str]:
    """The HTB classes on the device, classid -> "rate R ceil C" as tc prints them (its JSON has no HTB class)."""
    out = subprocess.run(["tc", "-n", netns, "class", "show", "dev", device], capture_output=True, text=True,
                         check=True).stdout
    return {m.group(1): f"rate {m.group(2)} ceil {m.group(3)}"
            for m in re.finditer(r"^class htb (\S+) .*?rate (\S+) ceil (\S+)", out, re.MULTILINE)}


def test_a_native_port_with_a_typed_policy_and_the_uplink_are_enforced_live(netns, all_in_one):
    server, proc, log = all_in_one
    _link(netns, "vqa3")
    _link(netns, "vqw0")  # the host's uplink in this namespace
    status, created = _api(server.url, "POST", "/v1/policies", GOLD)
    assert status == 201, created
    policy_id = created["policy"]["id"]
    status, answer = _api(server.url, "PUT", f"/v1/hosts/{HOST}/ports/vqa3", {"policy_id": policy_id})
    assert status == 200, answer

    first = _wait("the typed policy on vqa3", lambda: _kernel(server.db, netns, "vqa3"),
                  lambda k: _holds_gold(k, "vqa3", (10_000_000, 20_000_000), 8_000_000), log)
    _send_frames(netns, "vqa3")
    before = _arrivals(netns, "vqa3")
    assert before >= 5, before

    faster = json.loads(json.dumps(GOLD))
    faster["qos"]["ingress"]["bandwidth"] = {"rate_bps": 30_000_000, "peak_bps": 40_000_000}
    faster["qos"]["egress"]["bandwidth"] = {"rate_bps": 12_000_000}
    status, replaced = _api(server.url, "PUT", f"/v1/policies/{policy_id}", faster)
    assert status == 200, replaced
    second = _wait("the policy's new rates on vqa3", lambda: _kernel(server.db, netns, "vqa3"),
                   lambda k: _holds_gold(k, "vqa3", (30_000_000, 40_000_000), 12_000_000), log)
    assert second["classes"].keys() == first["classes"].keys() and second["roots"] == first["roots"]
    assert _arrivals(netns, "vqa3") >= before  # changed in place: the root qdisc still counts what it saw

    status, answer = _api(server.url, "PUT", f"/v1/hosts/{HOST}/uplink", {"device": "vqw0", "capacity_bps": 100_000_000})
    assert status == 200, answer
    tree = _wait("the uplink's tree on vqw0", lambda: _uplink_classes(netns, "vqw0"), lambda c: len(c) >= 3, log)
    # the link, the default class, and vqa3's guarantee from the instance up to its own limit (the new one)
    assert tree["1:1"] == "rate 100Mbit ceil 100Mbit" and "1:10" in tree, tree
    assert sorted(v for k, v in tree.items() if k not in ("1:1", "1:10")) == ["rate 3Mbit ceil 12Mbit"], tree
    assert _holds_gold(_kernel(server.db, netns, "vqa3"), "vqa3", (30_000_000, 40_000_000), 12_000_000)
    assert "vqw0" in _managed(server.db, netns)

    status, _ = _api(server.url, "DELETE", f"/v1/hosts/{HOST}/uplink")
    assert status == 204
    _wait("vqw0's tree removed", lambda: _uplink_classes(netns, "vqw0"), lambda c: not c, log)
    _wait("vqw0 released", lambda: _managed(server.db, netns), lambda managed: "vqw0" not in managed, log)
    status, _ = _api(server.url, "DELETE", f"/v1/hosts/{HOST}/ports/vqa3")
    assert status == 204
    _wait("vqa3 released", lambda: _managed(server.db, netns), lambda managed: "vqa3" not in managed, log)
    qdiscs = subprocess.run(["tc", "-n", netns, "qdisc", "show", "dev", "vqa3"], capture_output=True, text=True)
    assert "htb" not in qdiscs.stdout, qdiscs.stdout

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, log.read_text()
    assert "Traceback" not in log.read_text()
    with Store(server.db, read_only=True) as store:
        assert records.enforced(store, netns) == {}
        state = store.load(netns)
        assert state.ports() == [] and state.policies == {} and state.uplink is None
