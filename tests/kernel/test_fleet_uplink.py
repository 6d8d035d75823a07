"""Kernel tier: a host's uplink set through the server's API and held by the host's agent (issue 16).

A lab fleet of one host with two instances (`vmqos lab up --hosts 1`, the server in its control
namespace on SQLite, the agent in the host's namespace). Through the server's HTTP API (admin,
tests/kernel/fleet_http.py): the host's uplink wan0 at 100 Mbit/s, and a Neutron port of vm1 with
fixed_ips 10.247.0.11 and a policy with minimum_bandwidth rules of 30 Mbit/s both ways and an egress
limit of 80 Mbit/s. Then, read back from the host's kernel over netlink:
- the uplink's two HTB trees: on wan0 (from the instances) vm1's class at rate 30 Mbit/s, ceil its
  own limit of 80; on wan0's IFB (towards them) rate 30, ceil the capacity; `check` over the agent's
  cache finds nothing to do, the uplink included, and the API says the uplink is in_sync;
- the egress guarantee changed to 40 Mbit/s: the same class (same handle) now at 40, its byte counter
  not reset (pings from vm1 went through it before): replaced in place, never deleted and added;
- the link's capacity lowered to 35 Mbit/s, under vm1's 40: the agent refuses the uplink (its tree
  goes, the host's status is error with one line naming tap-vm1 and the rates), vm1's own limit
  stays; `oversubscribe: true` on the uplink brings the tree back, scaled to fit;
- the uplink removed: wan0 holds nothing of vmqos any more (no qdisc, class, IFB or chain) and vm1's
  port no longer marks its packets for it; its own limit stays.
No traffic measurement: tests/traffic/test_uplink_floor.py proves the floors. Cost: about 30 s.
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

from vmqos.core.plan.names import ifb_name
from vmqos.core.plan.nft_objects import NftChain
from vmqos.core.plan.tc_objects import HtbClass
from vmqos.drivers.process import in_netns
from vmqos.lab import fleet as fleets
from vmqos.lab.fleet_topology import Fleet
from vmqos.reconcile.execute import Reconciler
from vmqos.services.ports import check_host, device_objects, open_store, show_port

pytestmark = [pytest.mark.kernel]

MBIT = 1_000_000
WAIT_S = 20.0  # the agent follows within a second; the bound covers a busy 2-vCPU machine
HELPER = Path(__file__).with_name("fleet_http.py")


def _until(what: str, check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        seen = check()
        if seen:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.2)


class Lab:
    def __init__(self, name: str) -> None:
        self.name = name
        self.fleet = Fleet(name, 1)
        self.host = self.fleet.host(1)
        self.netns = self.host.netns
        self.vm1 = self.host.lab.instance(1)
        self.cache = f"sqlite:///{fleets.state_dir(name) / f'agent-{self.host.name}.db'}"

    def http(self, *steps: dict[str, Any]) -> list[dict[str, Any]]:
        done = subprocess.run(in_netns([sys.executable, str(HELPER)], self.fleet.ctl_ns), input=json.dumps(steps),
                              capture_output=True, text=True, timeout=60, env=fleets.admin_env(self.name))
        assert done.returncode == 0, done.stderr
        answers: list[dict[str, Any]] = json.loads(done.stdout)
        for step, answer in zip(steps, answers):
            assert answer["status"] < 300, (step, answer)
        return answers

    def classes(self, dev: str) -> dict[str, tuple[int, int, int]]:
        """classid -> (rate, ceil, bytes sent) of the HTB classes the kernel holds on the uplink's `dev`."""
        with Reconciler(self.netns) as rec:
            seen = rec.observe(["wan0"])
        stats = seen.tc_stats["wan0"]
        return {o.classid: (o.rate_bps, o.ceil_bps, stats[o.key].bytes if o.key in stats else 0)
                for o in seen.objects["wan0"] if isinstance(o, HtbClass) and o.dev == dev}

    def port_class(self, dev: str, rate: int) -> tuple[str, tuple[int, int, int]] | None:
        found = [(cid, v) for cid, v in self.classes(dev).items() if v[0] == rate and cid not in ("1:1", "1:10")]
        return found[0] if len(found) == 1 else None

    def uplink_status(self) -> dict[str, Any]:
        return dict(self.http({"method": "GET", "path": f"/v1/hosts/{self.host.name}/uplink"})[0]["body"]["uplink"])

    def drift(self) -> dict[str, list[str]]:
        with open_store(self.cache, read_only=True) as store:
            return {d.port: d.operations for d in check_host(store, self.netns)}

    def vm1_marks(self) -> bool:
        """Whether vm1's port marks its packets for the uplink (its ingress chain sets a mark)."""
        return any(r.set_mark is not None for o in device_objects(self.netns, self.vm1.port)
                   if isinstance(o, NftChain) for r in o.rules)


def test_the_uplink_set_through_the_api_is_planned_replaced_refused_and_removed_by_the_agent(fleet_name):
    name = fleet_name
    fleets.fleet_up(name, 1, 2)
    lab = Lab(name)
    host, ifb = lab.host.name, ifb_name("wan0")
    rules = "/v2.0/qos/policies/{1:policy.id}"
    made = lab.http(
        {"method": "PUT", "path": f"/v1/hosts/{host}/uplink", "body": {"device": "wan0", "capacity_bps": 100 * MBIT}},
        {"method": "POST", "path": "/v2.0/qos/policies", "body": {"policy": {"name": "floor"}}},
        {"method": "POST", "path": f"{rules}/minimum_bandwidth_rules",
         "body": {"minimum_bandwidth_rule": {"min_kbps": 30_000, "direction": "ingress"}}},
        {"method": "POST", "path": f"{rules}/minimum_bandwidth_rules",
         "body": {"minimum_bandwidth_rule": {"min_kbps": 30_000, "direction": "egress"}}},
        {"method": "POST", "path": f"{rules}/bandwidth_limit_rules",
         "body": {"bandwidth_limit_rule": {"max_kbps": 80_000, "direction": "egress"}}},
        {"method": "POST", "path": "/v2.0/networks", "body": {"network": {"name": "uplink-net"}}},
        {"method": "POST", "path": "/v2.0/ports", "body": {"port": {
            "network_id": "{5:network.id}", "name": "vm1", "binding:host_id": host,
            "binding:profile": {"device": lab.vm1.port}, "qos_policy_id": "{1:policy.id}",
            "fixed_ips": [{"ip_address": lab.vm1.address}]}}})
    policy = made[1]["body"]["policy"]["id"]
    min_out = made[3]["body"]["minimum_bandwidth_rule"]["id"]

    # the two trees, vm1's class in each
    out_id, out = _until("vm1's class on wan0", lambda: lab.port_class("wan0", 30 * MBIT))
    in_id, inward = _until("vm1's class on wan0's IFB", lambda: lab.port_class(ifb, 30 * MBIT))
    assert out[1] == 80 * MBIT and inward[1] == 100 * MBIT, (out, inward)  # ceil: its own limit, else the link
    assert lab.classes("wan0")["1:1"][:2] == (100 * MBIT, 100 * MBIT)  # the link shaped to its capacity
    assert lab.vm1_marks()
    _until("the uplink reported in sync", lambda: lab.uplink_status()["status"] == "in_sync")
    drift = lab.drift()
    assert "wan0" in drift and not any(drift.values()), drift  # `check` sees the uplink, and nothing to do

    # the egress guarantee changed: the same class replaced in place, its counters go on
    ping = subprocess.run(in_netns(["ping", "-c", "5", "-i", "0.2", "-q", "10.247.0.130"], lab.vm1.netns),
                          capture_output=True, text=True, timeout=30)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    before = lab.classes("wan0")[out_id][2]
    assert before > 0, "vm1's pings went through its class on the uplink"
    lab.http({"method": "PUT", "path": f"/v2.0/qos/policies/{policy}/minimum_bandwidth_rules/{min_out}",
              "body": {"minimum_bandwidth_rule": {"min_kbps": 40_000}}})
    new_id, changed = _until("vm1's class at 40 Mbit/s", lambda: lab.port_class("wan0", 40 * MBIT))
    assert new_id == out_id and changed[2] >= before, (out_id, new_id, before, changed)
    assert (lab.port_class(ifb, 30 * MBIT) or ("none",))[0] == in_id  # the other direction's class untouched

    # guarantees above the link (the link's capacity lowered under vm1's 40 Mbit/s): refused, the port's own
    # limit stays, the host says why
    lab.http({"method": "PUT", "path": f"/v1/hosts/{host}/uplink",
              "body": {"device": "wan0", "capacity_bps": 35 * MBIT}})
    refused = _until("the uplink refused", lambda: (s := lab.uplink_status())["status"] == "error" and s)
    assert "tap-vm1 40 Mbit/s" in refused["message"] and "35 Mbit/s" in refused["message"], refused
    assert "\n" not in refused["message"]
    _until("the refused tree gone from wan0", lambda: not lab.classes("wan0") and not lab.classes(ifb))
    assert not lab.vm1_marks()
    shown = lab.http({"method": "GET", "path": f"/v1/hosts/{host}"})[0]["body"]["host"]
    assert shown["status"] == "error", shown
    with open_store(lab.cache, read_only=True) as store:
        vm1 = show_port(store, lab.netns, lab.vm1.port)
    assert vm1.kernel.in_sync and vm1.desired.egress.rate_bps == 80 * MBIT  # its own limit still held

    lab.http({"method": "PUT", "path": f"/v1/hosts/{host}/uplink",
              "body": {"device": "wan0", "capacity_bps": 35 * MBIT, "oversubscribe": True}})
    scaled = _until("the tree back, scaled", lambda: [v for c, v in lab.classes("wan0").items()
                                                       if c not in ("1:1", "1:10")])
    assert len(scaled) == 1 and scaled[0][0] < 35 * MBIT, scaled  # 40 scaled down to fit the link
    _until("the uplink in sync again", lambda: lab.uplink_status()["status"] == "in_sync")

    # removed: nothing of vmqos is left on wan0, vm1 keeps its own limit
    lab.http({"method": "DELETE", "path": f"/v1/hosts/{host}/uplink"})
    _until("wan0 clean", lambda: not device_objects(lab.netns, "wan0"))
    assert not lab.vm1_marks()
    links = subprocess.run(in_netns(["ip", "-o", "link", "show"], lab.netns), capture_output=True, text=True).stdout
    assert f" {ifb}:" not in links and f" {ifb}@" not in links, links
    drift = lab.drift()
    assert not any(drift.values()), drift
    with open_store(lab.cache, read_only=True) as store:
        assert show_port(store, lab.netns, lab.vm1.port).kernel.in_sync
