"""Kernel tier: a typed vmqos policy attached to a lab port through the real server, enforced by a real agent.

A one-host lab fleet on SQLite (`vmqos.lab.fleet`, as `test_fleet` builds it: the server in its control
namespace, the agent inside its host). The admin creates a vmqos policy with what Neutron's rules cannot
say (a peak above the rate towards the instance, traffic classes in what it sends) and attaches it with
`vmqos port set tap-vm1 --server URL --host H --policy ID`; the host's kernel is read back with vmqos's
read-back of the agent's cache (`services.ports.show_port`) and must hold exactly that policy. A PUT of the
policy with new rates reaches the kernel live: the same objects by their handles, the same root qdisc
still counting (changed in place, never deleted and re-made). Deleting the policy while the port follows
it is refused (409). The all-in-one server enforces the same rows for its own host (tests/kernel/test_all_in_one.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vmqos.core.errors import NotFound
from vmqos.core.plan.tc_objects import HtbClass, Qdisc
from vmqos.drivers.process import in_netns
from vmqos.lab import fleet as fleets
from vmqos.services.ports import open_store, show_port

pytestmark = pytest.mark.kernel

WAIT_S = 20.0  # the agent follows within a second; the bound covers a backoff on a busy machine
DEVICE = "tap-vm1"
VM1 = "10.247.0.11"  # the lab's instance vm1 (vmqos.lab.topology), behind tap-vm1

HELPER = Path(__file__).with_name("fleet_http.py")  # direct HTTP inside the fleet's control namespace

POLICY = {"name": "gold", "qos": {
    "ingress": {"bandwidth": {"rate_bps": 10_000_000, "peak_bps": 20_000_000}},
    "egress": {"bandwidth": {"rate_bps": 8_000_000},
               "classes": [{"name": "web", "share_percent": 60, "match": {"protocol": "tcp", "ports": [80]}},
                           {"name": "rest", "share_percent": 40}]}}}


def _api(name: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status = fleets.fleet_status(name)
    assert status is not None
    env = {"PATH": "/usr/bin:/bin"} | fleets.admin_env(name)
    done = subprocess.run(in_netns([sys.executable, str(HELPER)], status.ctl_ns),
                          input=json.dumps([{"method": method, "path": path, "body": body}]), env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (answer,) = json.loads(done.stdout)
    return answer["status"], answer["body"]


def _kernel(name: str, host: str) -> dict[str, Any] | None:
    """What the host's kernel holds on tap-vm1 when it is in sync with the agent's desired state: its HTB classes
    by (device, classid) -> (rate, ceil), and its root qdiscs by device -> handle; None while not managed,
    {"in_sync": False, ...} while the kernel differs."""
    cache = f"sqlite:///{fleets.state_dir(name) / f'agent-{host}.db'}"
    try:
        with open_store(cache, read_only=True) as store:
            shown = show_port(store, f"{host}-host", DEVICE)
    except NotFound:
        return None
    objects = shown.kernel.objects
    return {"classes": {(o.dev, o.classid): (o.rate_bps, o.ceil_bps) for o in objects if isinstance(o, HtbClass)},
            "roots": {o.dev: o.handle for o in objects if isinstance(o, Qdisc) and o.parent == "root"},
            "desired": shown.desired, "in_sync": shown.kernel.in_sync,
            "needed": shown.kernel.operations_needed}


def _until(what: str, name: str, host: str, wanted: Callable[[dict[str, Any] | None], bool]) -> dict[str, Any]:
    """The kernel read-back once `wanted` holds of it; the last read-back and the agent's log otherwise."""
    deadline = time.monotonic() + WAIT_S
    while True:
        seen = _kernel(name, host)
        if seen is not None and wanted(seen):
            return seen
        if time.monotonic() > deadline:
            log = (fleets.state_dir(name) / f"agent-{host}.log").read_text()[-3000:]
            raise AssertionError(f"{what}: not within {WAIT_S:g} s; last seen {seen}\nagent log:\n{log}")
        time.sleep(0.1)


def _root_packets(host: str, dev: str) -> int:
    out = subprocess.run(in_netns(["tc", "-s", "-j", "qdisc", "show", "dev", dev], f"{host}-host"),
                         capture_output=True, text=True, check=True).stdout
    return sum(q.get("packets", 0) for q in json.loads(out or "[]") if q.get("root"))


def _holds(kernel: dict[str, Any] | None, ingress: tuple[int, int], egress: int) -> bool:
    """Whether the kernel, in sync with the agent's desired state, holds the policy: towards the instance the
    port's class 1:1 at the rate and a leaf that may borrow up to the peak; from it (on the port's IFB) 1:1 at
    the rate and two leaves sharing it 60:40 beside the sparse class (1:f) that takes the rest."""
    if kernel is None or not kernel["in_sync"]:
        return False
    tap = {cid: rc for (dev, cid), rc in kernel["classes"].items() if dev == DEVICE}
    ifb = {cid: rc for (dev, cid), rc in kernel["classes"].items() if dev != DEVICE}
    rate, peak = ingress
    if tap.get("1:1") != (rate, rate) or max(ceil for _r, ceil in tap.values()) != peak:
        return False
    shares = sorted(r for cid, (r, _c) in ifb.items() if cid not in ("1:1", "1:f"))
    return ifb.get("1:1") == (egress, egress) and len(shares) == 2 and shares[1] * 40 == shares[0] * 60 \
        and sum(shares) + ifb["1:f"][0] == egress


def test_a_typed_policy_attached_through_the_server_is_enforced_by_the_agent_and_changes_live(fleet_name):
    name = fleet_name
    fleets.fleet_up(name, 1, 1)
    host = f"{name}1"
    status, created = _api(name, "POST", "/v1/policies", POLICY)
    assert status == 201, created
    policy_id = created["policy"]["id"]
    url = fleets.fleet_status(name).server_url  # type: ignore[union-attr]
    done = fleets.admin_vmqos(name, ["port", "set", DEVICE, "--server", url, "--host", host, "--policy", policy_id,
                                     "--json"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["policy_id"] == policy_id

    first = _until("the policy on the kernel", name, host,
                   lambda k: _holds(k, (10_000_000, 20_000_000), 8_000_000))
    desired = first["desired"]  # what the agent's cache holds for the device: the policy, resolved
    assert (desired.ingress.rate_bps, desired.ingress.peak_bps) == (10_000_000, 20_000_000)
    assert desired.egress.rate_bps == 8_000_000
    assert [(c["name"], c["share_percent"], c["match"]) for c in desired.egress.classes] == [
        ("web", 60, {"protocol": "tcp", "ports": [80], "dscp": None}), ("rest", 40, None)]
    shown = fleets.admin_vmqos(name, ["port", "show", DEVICE, "--server", url, "--host", host])
    assert shown.returncode == 0 and policy_id in shown.stdout, shown.stderr

    # traffic through the root qdiscs, then the policy replaced: the same objects change in place
    subprocess.run(in_netns(["ping", "-c", "3", "-i", "0.2", "-W", "1", VM1], f"{host}-host"), capture_output=True,
                   timeout=10)  # towards the instance through tap-vm1's root, its answers through the IFB's
    before = {dev: _root_packets(host, dev) for dev in first["roots"]}
    assert before[DEVICE] > 0, before
    faster = json.loads(json.dumps(POLICY))
    faster["qos"]["ingress"]["bandwidth"] = {"rate_bps": 30_000_000, "peak_bps": 40_000_000}
    faster["qos"]["egress"]["bandwidth"] = {"rate_bps": 12_000_000}
    status, replaced = _api(name, "PUT", f"/v1/policies/{policy_id}", faster)
    assert status == 200, replaced
    second = _until("the new rates on the kernel", name, host,
                    lambda k: _holds(k, (30_000_000, 40_000_000), 12_000_000))
    assert second["classes"].keys() == first["classes"].keys()  # the same classes, by their handles
    assert second["roots"] == first["roots"]
    after = {dev: _root_packets(host, dev) for dev in first["roots"]}
    assert all(after[dev] >= before[dev] for dev in before), (before, after)  # not re-created: still counting

    status, refused = _api(name, "DELETE", f"/v1/policies/{policy_id}")
    assert status == 409 and refused["NeutronError"]["type"] == "QosPolicyInUse", refused
    assert f"{DEVICE} on host {host}" in refused["NeutronError"]["message"]
    assert _holds(_kernel(name, host), (30_000_000, 40_000_000), 12_000_000)
    for log in ("server.log", f"agent-{host}.log"):
        assert "Traceback" not in (fleets.state_dir(name) / log).read_text(), log
