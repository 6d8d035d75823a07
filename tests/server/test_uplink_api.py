"""A host's uplink on /v1 and the ports' addresses in the desired rows (issue 16), in process, on SQLite and
PostgreSQL: the admin's PUT/GET/DELETE and their errors, the uplink in /desired and /desired/changes (a
change wakes the host's long poll as a port's does), Neutron's fixed_ips and minimum_bandwidth rules in
a port's row, a native row's addresses, and the agent's report on the uplink in the uplink's answer.
"""

from __future__ import annotations

import threading
import time

import pytest

from .inproc import add_agent, headers, made, port, running_api
from .inproc import neutron_error as _error

pytestmark = pytest.mark.server

UPLINK = {"device": "wan0", "capacity_bps": 100_000_000}


@pytest.fixture()
def api(db_url):  # on SQLite and on PostgreSQL (tests/pgcluster.py)
    with running_api(db_url) as client:
        add_agent(client.app.state.store, "agent-h1", "h1")
        yield client


def test_the_admin_sets_reads_and_removes_a_hosts_uplink_and_others_may_not(api):
    admin, alice = headers(api), headers(api, "alice", "demo")
    agent = headers(api, "agent-h1", "service")
    assert "PUT /v1/hosts/h1/uplink" in _error(api.get("/v1/hosts/h1/uplink", headers=admin), 404, "NotFound")

    set_ = api.put("/v1/hosts/h1/uplink", json=UPLINK, headers=admin)
    assert set_.status_code == 200, set_.text
    shown = set_.json()["uplink"]
    assert (shown["host"], shown["uplink"], shown["status"], shown["message"]) == \
        ("h1", {**UPLINK, "oversubscribe": False}, "unknown", "")
    revision = shown["revision"]
    assert revision > 0
    again = api.put("/v1/hosts/h1/uplink", json=UPLINK, headers=admin).json()["uplink"]
    assert again["revision"] == revision  # the same uplink again is no change: no new revision
    changed = api.put("/v1/hosts/h1/uplink", json={**UPLINK, "oversubscribe": True}, headers=admin).json()["uplink"]
    assert changed["revision"] > revision and changed["uplink"]["oversubscribe"] is True
    assert api.get("/v1/hosts/h1/uplink", headers=admin).json()["uplink"] == changed

    for who in (alice, agent):  # admin only, the host's own agent too
        _error(api.get("/v1/hosts/h1/uplink", headers=who), 403, "Forbidden")
        _error(api.put("/v1/hosts/h1/uplink", json=UPLINK, headers=who), 403, "Forbidden")
        _error(api.delete("/v1/hosts/h1/uplink", headers=who), 403, "Forbidden")

    for bad, field in (({**UPLINK, "capacity_bps": 999_999}, "capacity_bps"), ({"device": "wan0"}, "capacity_bps"),
                       ({**UPLINK, "device": "no/such"}, "device"), ({**UPLINK, "device": "x" * 16}, "device"),
                       ({**UPLINK, "speed": 1}, "speed")):
        message = _error(api.put("/v1/hosts/h1/uplink", json=bad, headers=admin), 422, "UplinkInvalid")
        assert field in message, message
    assert api.get("/v1/hosts/h1/uplink", headers=admin).json()["uplink"]["revision"] == changed["revision"]

    assert api.delete("/v1/hosts/h1/uplink", headers=admin).status_code == 204
    _error(api.get("/v1/hosts/h1/uplink", headers=admin), 404, "NotFound")
    _error(api.delete("/v1/hosts/h1/uplink", headers=admin), 404, "NotFound")


def _poll(api, auth: dict, since: int, into: dict) -> None:
    start = time.monotonic()
    response = api.get("/v1/hosts/h1/desired/changes", params={"since": since, "wait": 30}, headers=auth)
    into["answer"] = (response.status_code, response.json(), time.monotonic() - start)


def test_the_uplink_is_in_the_hosts_desired_state_and_its_change_wakes_the_long_poll(api):
    admin, agent = headers(api), headers(api, "agent-h1", "service")
    snapshot = api.get("/v1/hosts/h1/desired", headers=agent).json()
    assert snapshot["uplink"] is None
    since = snapshot["revision"]
    assert "uplink" not in api.get("/v1/hosts/h1/desired/changes", params={"since": since},
                                   headers=agent).json()  # unchanged: as before uplinks existed

    found: dict = {}
    poll = threading.Thread(target=_poll, args=(api, agent, since, found))
    poll.start()
    time.sleep(0.5)  # the poll waits (not a timed assertion: it is only checked to answer before its 30 s)
    revision = api.put("/v1/hosts/h1/uplink", json=UPLINK, headers=admin).json()["uplink"]["revision"]
    poll.join(40)
    status, body, took = found["answer"]
    assert status == 200 and took < 20, (status, body, took)
    assert body["uplink"] == {"revision": revision, "uplink": {**UPLINK, "oversubscribe": False}}
    assert body["changes"] == [] and body["revision"] >= revision

    snapshot = api.get("/v1/hosts/h1/desired", headers=agent).json()
    assert snapshot["uplink"] == body["uplink"]
    assert api.get("/v1/hosts/h2/desired", headers=admin).json()["uplink"] is None  # another host's is not

    assert api.delete("/v1/hosts/h1/uplink", headers=admin).status_code == 204
    gone = api.get("/v1/hosts/h1/desired/changes", params={"since": body["revision"]}, headers=agent).json()
    assert gone["uplink"]["uplink"] is None and gone["uplink"]["revision"] > revision  # a tombstone
    assert api.get("/v1/hosts/h1/desired", headers=agent).json()["uplink"] is None
    assert "uplink" not in api.get("/v1/hosts/h1/desired/changes", params={"since": gone["revision"]},
                                   headers=agent).json()


def _min_policy(api, admin: dict, name: str, min_kbps: int) -> str:
    """A QoS policy with minimum_bandwidth rules in both directions and an egress limit."""
    found = made(api.post("/v2.0/qos/policies", json={"policy": {"name": name}}, headers=admin), "policy")
    base = f"/v2.0/qos/policies/{found['id']}"
    for direction in ("ingress", "egress"):
        made(api.post(f"{base}/minimum_bandwidth_rules", headers=admin,
                      json={"minimum_bandwidth_rule": {"min_kbps": min_kbps, "direction": direction}}),
             "minimum_bandwidth_rule")
    made(api.post(f"{base}/bandwidth_limit_rules", headers=admin,
                  json={"bandwidth_limit_rule": {"max_kbps": 80_000, "direction": "egress"}}), "bandwidth_limit_rule")
    return str(found["id"])


def test_a_neutron_ports_fixed_ips_and_minimum_bandwidth_reach_its_desired_row(api):
    admin, agent = headers(api), headers(api, "agent-h1", "service")
    policy = _min_policy(api, admin, "floor", 30_000)
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=admin), "network")["id"]
    made_port = port(api, admin, net, "a", qos_policy_id=policy, **{
        "binding:host_id": "h1", "binding:profile": {"device": "tap-vm1"},
        "fixed_ips": [{"ip_address": "10.247.0.11"}, {"ip_address": "FD00::0b"}]})
    assert made_port["fixed_ips"] == [{"subnet_id": None, "ip_address": "10.247.0.11"},
                                      {"subnet_id": None, "ip_address": "fd00::b"}]
    listed = api.get("/v2.0/ports", params={"fixed_ips": "ip_address=fd00::b"}, headers=admin).json()["ports"]
    assert [p["id"] for p in listed] == [made_port["id"]]
    assert api.get("/v2.0/ports", params={"fixed_ips": "ip_address=10.247.0.99"}, headers=admin).json()["ports"] == []
    row = api.get("/v1/hosts/h1/desired", headers=agent).json()["ports"][0]
    assert (row["device"], row["addresses"]) == ("tap-vm1", ["10.247.0.11", "fd00::b"])
    assert (row["policy"]["ingress"]["min"], row["policy"]["egress"]["min"]) == ("30mbit", "30mbit"), row["policy"]

    since = row["revision"]
    updated = api.put(f"/v2.0/ports/{made_port['id']}", json={"port": {"fixed_ips": [{"ip_address": "10.247.0.12"}]}},
                      headers=admin)
    assert updated.status_code == 200, updated.text
    changes = api.get("/v1/hosts/h1/desired/changes", params={"since": since}, headers=agent).json()["changes"]
    assert [(c["device"], c["addresses"]) for c in changes] == [("tap-vm1", ["10.247.0.12"])]
    rule = api.get(f"/v2.0/qos/policies/{policy}/minimum_bandwidth_rules", headers=admin).json()
    first = rule["minimum_bandwidth_rules"][0]
    since = changes[0]["revision"]
    assert api.put(f"/v2.0/qos/policies/{policy}/minimum_bandwidth_rules/{first['id']}", headers=admin,
                   json={"minimum_bandwidth_rule": {"min_kbps": 40_000}}).status_code == 200
    changes = api.get("/v1/hosts/h1/desired/changes", params={"since": since}, headers=agent).json()["changes"]
    assert [c["policy"][first["direction"]]["min"] for c in changes] == ["40mbit"]  # a guarantee's change wakes it

    for fixed_ips, status, kind in (([{"ip_address": "10.0.0.300"}], 400, "InvalidInput"),
                                    ([{"subnet_id": "s1", "ip_address": "10.0.0.5"}], 404, "SubnetNotFound"),
                                    ([{}], 400, "InvalidInput"),
                                    ([{"ip_address": "10.0.0.5"}, {"ip_address": "10.0.0.5"}], 400, "InvalidInput"),
                                    ([{"ip_address": f"10.0.0.{i}"} for i in range(6)], 400, "InvalidInput")):
        _error(api.post("/v2.0/ports", json={"port": {"network_id": net, "fixed_ips": fixed_ips}}, headers=admin),
               status, kind)


def test_a_native_row_carries_its_addresses(api):
    admin, agent = headers(api), headers(api, "agent-h1", "service")
    body = {"policy": {"egress": {"rate": "50mbit", "min": "20mbit"}}, "addresses": ["10.247.0.13", "fd00::d"]}
    assert api.put("/v1/hosts/h1/ports/tap-vm3", json=body, headers=admin).status_code == 200
    row = api.get("/v1/hosts/h1/desired", headers=agent).json()["ports"][0]
    assert (row["device"], row["addresses"], row["policy"]["egress"]["min"]) == \
        ("tap-vm3", ["10.247.0.13", "fd00::d"], "20mbit")
    assert api.get("/v1/hosts/h1/ports/tap-vm3", headers=admin).json()["port"]["addresses"] == body["addresses"]
    bad = api.put("/v1/hosts/h1/ports/tap-vm3", json={**body, "addresses": ["10.0.0.1/24"]}, headers=admin)
    assert bad.status_code == 400 and "addresses" in bad.text, bad.text


def test_the_agents_report_on_the_uplink_is_the_uplinks_status(api):
    admin, agent = headers(api), headers(api, "agent-h1", "service")
    assert api.put("/v1/hosts/h1", json={"agent_version": "0.1.0"}, headers=agent).status_code == 200
    revision = api.put("/v1/hosts/h1/uplink", json=UPLINK, headers=admin).json()["uplink"]["revision"]
    refused = ("uplink refused: uplink wan0: the guaranteed minimums towards the instances add up to 120 Mbit/s, "
               "more than its capacity of 100 Mbit/s (tap-vm1 70 Mbit/s, tap-vm2 50 Mbit/s)")

    def report(status: str, message: str = "") -> dict:
        sent = api.post("/v1/hosts/h1/reports", headers=agent, json={
            "applied_revision": revision, "ports": [{"device": "wan0", "revision": revision, "status": status,
                                                     "message": message}]})
        assert sent.status_code == 200, sent.text
        return dict(api.get("/v1/hosts/h1/uplink", headers=admin).json()["uplink"])

    shown = report("error", refused)
    assert (shown["status"], shown["message"]) == ("error", refused)
    assert api.get("/v1/hosts/h1", headers=admin).json()["host"]["status"] == "error"
    assert report("in_sync")["status"] == "in_sync"  # kept, not taken for a released device
    assert api.get("/v1/hosts/h1", headers=admin).json()["host"]["status"] == "in_sync"
