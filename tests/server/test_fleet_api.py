"""The fleet's /v1 API in process, on SQLite and PostgreSQL: the long poll, who may do what, the agents'
reports and what the views make of them, the native API (docs/fleet-protocol.md).

No timed assertion: a long poll woken by a change is only checked to answer well before its own
wait ends, and one that is not woken to answer empty after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from vmqos.core.formats.hostfile import policy_from_data
from vmqos.services import fleet_desired, fleet_hosts, identity

from .inproc import PASSWORD, add_agent, headers, made, policy, port, running_api
from .inproc import neutron_error as _error

pytestmark = pytest.mark.server

NOW = datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC)


@pytest.fixture()
def api(db_url):  # on SQLite and on PostgreSQL (tests/pgcluster.py)
    with running_api(db_url) as client:
        for name, host in (("agent-h1", "h1"), ("agent-h2", "h2"), ("svc", None)):
            add_agent(client.app.state.store, name, host)
        client.db_url = db_url
        yield client


def _neutron(api, admin: dict) -> dict:
    """p3 (3 Mbit/s) on port a of h1, p6 on port d of h3; their ids and devices."""
    p3, p6 = policy(api, admin, "p3", 3000), policy(api, admin, "p6", 6000)
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=admin), "network")
    a = port(api, admin, net["id"], "a", qos_policy_id=p3, **{"binding:host_id": "h1"})
    d = port(api, admin, net["id"], "d", qos_policy_id=p6, **{"binding:host_id": "h3"})
    rules = api.get(f"/v2.0/qos/policies/{p3}/bandwidth_limit_rules", headers=admin).json()
    return {"p3": p3, "p6": p6, "net": net["id"], "a": a["id"], "tap_a": "tap" + a["id"][:11],
            "tap_d": "tap" + d["id"][:11],
            "rule": f"/v2.0/qos/policies/{p3}/bandwidth_limit_rules/{rules['bandwidth_limit_rules'][0]['id']}"}


def _poll(api, auth: dict, host: str, since: int, wait: float, into: dict) -> None:
    start = time.monotonic()
    response = api.get(f"/v1/hosts/{host}/desired/changes", params={"since": since, "wait": wait}, headers=auth)
    into[host] = (response.status_code, response.json(), time.monotonic() - start)


def test_the_long_poll_answers_at_once_when_woken_or_empty_after_its_wait(api):
    admin = headers(api)
    objects = _neutron(api, admin)
    snapshot = api.get("/v1/hosts/h1/desired", headers=admin).json()
    since = snapshot["revision"]
    assert [(r["device"], r["port_id"], r["source"]) for r in snapshot["ports"]] == \
        [(objects["tap_a"], objects["a"], "neutron")]

    start = time.monotonic()
    empty = api.get("/v1/hosts/h1/desired/changes", params={"since": since, "wait": 0}, headers=admin)
    assert empty.json() == {"host": "h1", "revision": since, "changes": []}
    pending = api.get("/v1/hosts/h1/desired/changes", params={"since": 0, "wait": 30}, headers=admin).json()
    assert [r["device"] for r in pending["changes"]] == [objects["tap_a"]]
    assert time.monotonic() - start < 15  # neither waited its 30 s: there was something to say

    found: dict = {}
    polls = [threading.Thread(target=_poll, args=(api, admin, "h1", since, 30, found)),
             threading.Thread(target=_poll, args=(api, admin, "h3", since, 1.5, found))]
    for poll in polls:
        poll.start()
    time.sleep(0.5)
    changed = api.put(objects["rule"], json={"bandwidth_limit_rule": {"max_kbps": 4000}}, headers=admin)
    assert changed.status_code == 200, changed.text
    for poll in polls:
        poll.join(60)
    status, body, waited = found["h1"]
    assert status == 200 and waited < 20, (status, waited)  # woken, long before its 30 s
    assert [(r["device"], r["policy"]["egress"]["rate"]) for r in body["changes"]] == [(objects["tap_a"], "4mbit")]
    assert body["revision"] == since + 1
    status, body, waited = found["h3"]  # its rows did not change: not woken, empty after its wait
    assert (status, body["changes"], body["revision"]) == (200, [], since + 1) and waited >= 1.5


def test_a_change_made_by_another_process_wakes_the_long_poll(api):
    admin = headers(api)
    fleet_desired.set_port(api.app.state.store, "h2", "vq-2", policy_from_data("gold", {"egress": {"rate": "1mbit"}}))
    since = api.get("/v1/hosts/h1/desired", headers=admin).json()["revision"]
    assert since > 0
    found: dict = {}
    polls = [threading.Thread(target=_poll, args=(api, admin, "h1", since, 30, found)),  # answered from the batch
             threading.Thread(target=_poll, args=(api, admin, "h1", 0, 30, older := {}))]  # reads its own
    for poll in polls:
        poll.start()
    time.sleep(0.3)
    code = ("import sys; from vmqos.store import Store; from vmqos.services import fleet_desired; "
            "from vmqos.core.formats.hostfile import policy_from_data; "
            "fleet_desired.set_port(Store(sys.argv[1]), 'h1', 'vq-other', "
            "policy_from_data('gold', {'egress': {'rate': '20mbit'}}))")
    done = subprocess.run([sys.executable, "-c", code, api.db_url], capture_output=True, text=True, timeout=60,
                          env=os.environ)
    assert done.returncode == 0, done.stderr
    for poll in polls:
        poll.join(60)
    for answer in (found, older):
        status, body, waited = answer["h1"]
        assert status == 200 and waited < 20
        assert [(r["device"], r["source"], r["policy_name"]) for r in body["changes"]] == \
            [("vq-other", "native", "gold")]
        assert body["revision"] == since + 1


def test_410_below_the_compacted_floor_and_400_above_the_revision(api):
    admin = headers(api)
    objects = _neutron(api, admin)
    since = api.get("/v1/hosts/h1/desired", headers=admin).json()["revision"]
    assert api.delete(f"/v2.0/ports/{objects['a']}", headers=admin).status_code == 204
    assert fleet_desired.compact(api.app.state.store, now=datetime.now(UTC) + timedelta(days=30)) == 1
    gone = api.get("/v1/hosts/h1/desired/changes", params={"since": since, "wait": 0}, headers=admin)
    assert "read /v1/hosts/h1/desired again" in _error(gone, 410, "RevisionGone")
    again = api.get("/v1/hosts/h1/desired", headers=admin).json()
    assert again["ports"] == [] and again["revision"] == since + 1
    after = api.get("/v1/hosts/h1/desired/changes", params={"since": again["revision"]}, headers=admin)
    assert after.status_code == 200 and after.json()["changes"] == []
    ahead = api.get("/v1/hosts/h1/desired/changes", params={"since": since + 5}, headers=admin)
    assert "since" in _error(ahead, 400, "InvalidValue")
    for bad in ({"since": -1}, {"since": 0, "wait": -1}, {"wait": 1}):
        assert _error(api.get("/v1/hosts/h1/desired/changes", params=bad, headers=admin), 400, "InvalidInput")


def test_an_agent_reads_and_reports_for_its_own_host_only_and_a_member_sees_its_ports(api):
    admin, store = headers(api), api.app.state.store
    agent1, agent2 = headers(api, "agent-h1", "service"), headers(api, "agent-h2", "service")
    unbound, alice, bob = headers(api, "svc", "service"), headers(api, "alice", "demo"), headers(api, "bob", "other")
    mine = policy(api, alice, "mine", 3000)
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=alice), "network")
    hers = port(api, alice, net["id"], "hers", qos_policy_id=mine)
    theirs = policy(api, bob, "theirs", 6000)
    bobs_net = made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=bob), "network")
    his = port(api, bob, bobs_net["id"], "his", qos_policy_id=theirs)
    for found in (hers, his):
        bound = api.put(f"/v2.0/ports/{found['id']}", json={"port": {"binding:host_id": "h1"}}, headers=admin)
        assert bound.status_code == 200, bound.text
    fleet_desired.set_port(store, "h2", "vq-2", policy_from_data("gold", {"egress": {"rate": "20mbit"}}))
    register = {"agent_version": "0.1.0"}

    assert api.put("/v1/hosts/h1", json=register, headers=agent1).status_code == 200
    for method, path, body in (("PUT", "/v1/hosts/h2", register), ("GET", "/v1/hosts/h2", None),
                               ("GET", "/v1/hosts/h2/desired", None),
                               ("GET", "/v1/hosts/h2/desired/changes?since=0", None),
                               ("POST", "/v1/hosts/h2/reports", {}), ("GET", "/v1/hosts", None),
                               ("GET", "/v1/ports?host=h2", None), ("GET", "/v1/hosts/h2/ports/vq-2", None),
                               ("PUT", "/v1/hosts/h1/ports/vq-1", {"policy": {}}),
                               ("DELETE", "/v1/hosts/h1/ports/vq-1", None), ("GET", "/v1/events?host=h2", None)):
        _error(api.request(method, path, json=body, headers=agent1), 403, "Forbidden")
    assert "reading the desired state for host h2 (user agent-h1 is bound to host h1)" in \
        _error(api.get("/v1/hosts/h2/desired", headers=agent1), 403, "Forbidden")
    assert api.get("/v1/hosts/h1/desired", headers=agent1).json()["host"] == "h1"
    assert api.get("/v1/hosts/h1/desired/changes?since=0", headers=agent1).status_code == 200
    assert {p["host"] for p in api.get("/v1/ports", headers=agent1).json()["ports"]} == {"h1"}
    assert api.get("/v1/hosts/h2/desired", headers=agent2).status_code == 200
    assert "bound to no host" in _error(api.get("/v1/hosts/h1/desired", headers=unbound), 403, "Forbidden")
    _error(api.get("/v1/ports", headers=unbound), 403, "Forbidden")

    assert [p["port_id"] for p in api.get("/v1/ports", headers=alice).json()["ports"]] == [hers["id"]]
    assert [p["port_id"] for p in api.get("/v1/ports", headers=bob).json()["ports"]] == [his["id"]]
    assert api.get(f"/v1/hosts/h1/ports/tap{hers['id'][:11]}", headers=alice).status_code == 200
    _error(api.get(f"/v1/hosts/h1/ports/tap{his['id'][:11]}", headers=alice), 404, "NotFound")
    for method, path in (("GET", "/v1/hosts"), ("GET", "/v1/hosts/h1"), ("GET", "/v1/hosts/h1/desired"),
                         ("PUT", "/v1/hosts/h1")):
        _error(api.request(method, path, json=register, headers=alice), 403, "Forbidden")
    assert api.get("/v1/ports").status_code == 401
    assert {p["host"] for p in api.get("/v1/ports", headers=admin).json()["ports"]} == {"h1", "h2"}


def test_reports_make_the_port_views_and_the_hosts_status(api):
    admin, store = headers(api), api.app.state.store
    agent, alice = headers(api, "agent-h1", "service"), headers(api, "alice", "demo")
    objects = _neutron(api, admin)
    tap = objects["tap_a"]
    inventory = {"ports": [{"device": tap, "kind": "tun", "mac": "fa:16:3e:00:00:01"}],
                 "domains": [{"name": "instance-1", "state": "running", "interfaces": [{"device": tap}],
                              "nova": {"instance_uuid": "u1", "flavor": "m1.small", "port_ids": [objects["a"]]}}],
                 "instances": [{"name": "vm1", "ports": [tap], "cgroup": "vmqos/vm1"}]}
    host = api.put("/v1/hosts/h1", json={"agent_version": "0.1.0", "netns": "lab-host", "inventory": inventory},
                   headers=agent).json()["host"]
    revision = host["desired_revision"]
    assert (host["status"], host["ports"], host["applied_revision"], host["netns"]) == ("unknown", 1, None, "lab-host")
    assert host["inventory"]["instances"][0]["cgroup"] == "vmqos/vm1"  # kept as the agent sent it

    rates = {"offered_bps": 9_000_000, "delivered_bps": 3_000_000, "dropped_bps": 6_000_000}
    report = {"applied_revision": revision,
              "ports": [{"device": tap, "revision": revision, "status": "in_sync"}],
              "samples": [{"device": tap, "at": "2026-12-07T01:02:03Z", "interval_s": 1.0, "egress": rates}],
              "events": [{"device": tap, "at": "2026-12-07T01:02:03Z", "kind": "detected", "message": "syn flood",
                          "direction": "egress", "detector": "syn"}],
              "quarantines": [{"device": tap, "since": "2026-12-07T01:02:04Z", "reason": "syn flood",
                               "qos": {"egress": {"pps": 100}}}]}
    sent = api.post("/v1/hosts/h1/reports", json=report, headers=agent)
    assert (sent.status_code, sent.json()) == (200, {"lift": []}), sent.text
    assert api.get("/v1/hosts/h1", headers=agent).json()["host"]["status"] == "in_sync"
    shown = api.get(f"/v1/hosts/h1/ports/{tap}", headers=admin).json()["port"]
    assert (shown["status"], shown["applied_revision"], shown["desired_revision"]) == ("in_sync", revision, revision)
    assert shown["rates"]["egress"]["dropped_bps"] == 6_000_000 and shown["rates"]["ingress"]["offered_bps"] == 0
    assert (shown["quarantine"]["reason"], shown["quarantine"]["qos"]) == ("syn flood", {"egress": {"pps": 100}})
    events = api.get("/v1/events", params={"host": "h1"}, headers=admin).json()["events"]
    assert [(e["device"], e["kind"], e["detector"]) for e in events] == [(tap, "detected", "syn")]
    assert api.get("/v1/events", headers=alice).json()["events"] == []  # not her project's port
    assert len(api.get("/v1/quarantines", headers=agent).json()["quarantines"]) == 1

    def status_after(*ports: dict, applied: int | None = None) -> str:
        sent = api.post("/v1/hosts/h1/reports", json={"applied_revision": applied, "ports": list(ports)},
                        headers=agent)
        assert sent.status_code == 200, sent.text
        return str(api.get("/v1/hosts/h1", headers=admin).json()["host"]["status"])

    assert status_after({"device": tap, "revision": revision, "status": "error", "message": "tc: no such device"}) \
        == "error"
    assert api.get("/v1/ports?host=h1", headers=admin).json()["ports"][0]["message"] == "tc: no such device"
    assert status_after({"device": tap, "revision": revision, "status": "drift"}) == "drift"
    assert status_after({"device": tap, "revision": revision, "status": "in_sync"}) == "in_sync"
    api.put(objects["rule"], json={"bandwidth_limit_rule": {"max_kbps": 4000}}, headers=admin).raise_for_status()
    behind = api.get("/v1/hosts/h1", headers=admin).json()["host"]
    assert (behind["status"], behind["applied_revision"]) == ("drift", revision)  # behind the new row
    newer = behind["desired_revision"]
    assert newer > revision
    assert status_after({"device": tap, "revision": newer, "status": "in_sync"}, applied=newer) == "in_sync"
    lift = {"quarantines": [{"device": tap, "since": "2026-12-07T01:02:04Z", "lifted": True}]}
    assert api.post("/v1/hosts/h1/reports", json=lift, headers=agent).status_code == 200
    assert api.get("/v1/quarantines", headers=admin).json()["quarantines"] == []

    assert api.delete(f"/v2.0/ports/{objects['a']}", headers=admin).status_code == 204
    tombstone = api.get(f"/v1/hosts/h1/ports/{tap}", headers=admin).json()["port"]["desired_revision"]
    assert tombstone > newer
    assert status_after({"device": tap, "revision": tombstone, "status": "error", "message": "busy"},
                        applied=tombstone) == "error"
    h1_ports = api.get("/v1/ports", params={"host": "h1"}, headers=admin).json()["ports"]
    assert [(p["device"], p["policy"], p["status"]) for p in h1_ports] == [(tap, None, "error")]  # a failed release
    assert status_after({"device": tap, "revision": tombstone, "status": "in_sync"}) == "in_sync"
    assert api.get("/v1/ports", params={"host": "h1"}, headers=admin).json()["ports"] == []  # released: forgotten
    released = api.get(f"/v1/hosts/h1/ports/{tap}", headers=admin).json()["port"]
    assert (released["policy"], released["status"], released["desired_revision"]) == (None, "unknown", tombstone)

    caller = identity.authenticate(store, {"name": "admin"}, PASSWORD, {"name": "admin"}).caller
    seen = fleet_hosts.show_host(store, caller, "h1").last_seen
    assert fleet_hosts.show_host(store, caller, "h1", now=seen + timedelta(seconds=29)).status == "in_sync"
    assert fleet_hosts.show_host(store, caller, "h1", now=seen + timedelta(seconds=31)).status == "unreachable"
    assert [h.name for h in fleet_hosts.list_hosts(store, caller)] == ["h1", "h3"]  # h3: rows, no agent yet
    assert fleet_hosts.show_host(store, caller, "h3").status == "unknown"

    unregistered = api.post("/v1/hosts/h2/reports", json={}, headers=headers(api, "agent-h2", "service"))
    assert "PUT /v1/hosts/h2 first" in _error(unregistered, 404, "NotFound")
    # a known field with a bad value is refused; an unknown one is a newer agent's, ignored (test_wire_skew.py)
    for bad in ({"ports": [{"device": "a b", "revision": 1, "status": "in_sync"}]},
                {"ports": [{"device": tap, "revision": 1, "status": "bogus"}]}):
        assert _error(api.post("/v1/hosts/h1/reports", json=bad, headers=agent), 400, "InvalidInput")


def test_the_native_api_sets_and_clears_a_device_no_neutron_port_names(api):
    admin = headers(api)
    objects = _neutron(api, admin)
    body = {"policy": {"egress": {"rate": "50mbit"}, "ingress": {"rate": "20mbit", "burst": "64kb"}},
            "policy_name": "gold"}
    set_ = api.put("/v1/hosts/h1/ports/vq-n", json=body, headers=admin)
    assert set_.status_code == 200, set_.text
    shown = set_.json()["port"]
    assert (shown["source"], shown["policy_name"], shown["port_id"], shown["policy"]["egress"]) == \
        ("native", "gold", None, {"rate": "50mbit"})
    assert api.get("/v1/hosts/h1/ports/vq-n", headers=admin).json()["port"] == shown
    changes = api.get("/v1/hosts/h1/desired/changes", params={"since": shown["desired_revision"] - 1},
                      headers=admin).json()["changes"]
    assert [(r["device"], r["source"]) for r in changes] == [("vq-n", "native")]
    neutron = api.put(f"/v1/hosts/h1/ports/{objects['tap_a']}", json=body, headers=admin)
    assert f"Neutron port {objects['a']}'s" in _error(neutron, 409, "ConflictError")
    bad = api.put("/v1/hosts/h1/ports/vq-n", json={"policy": {"egress": {"rate": "fast"}}}, headers=admin)
    assert "egress.rate" in _error(bad, 400, "FormatError")
    assert "device" in _error(api.put("/v1/hosts/h1/ports/a%20b", json=body, headers=admin), 400, "InvalidValue")
    assert api.delete("/v1/hosts/h1/ports/vq-n", headers=admin).status_code == 204
    assert "no limit set with the native API" in _error(api.delete("/v1/hosts/h1/ports/vq-n", headers=admin), 404,
                                                         "NotFound")
    assert api.get("/v1/hosts/h1/ports/vq-n", headers=admin).json()["port"]["policy"] is None


def test_the_openapi_document_describes_the_protocol(api):
    document = api.get("/openapi.json").json()
    paths = document["paths"]
    assert {"/v1/hosts", "/v1/hosts/{host}", "/v1/hosts/{host}/desired", "/v1/hosts/{host}/desired/changes",
            "/v1/hosts/{host}/reports", "/v1/ports", "/v1/hosts/{host}/ports/{device}", "/v1/events",
            "/v1/quarantines"} <= set(paths)
    changes = paths["/v1/hosts/{host}/desired/changes"]["get"]
    assert changes["responses"]["200"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/Changes"}
    assert {"Snapshot", "Changes", "Desired", "Report", "Registration", "Host", "Port"} <= \
        set(document["components"]["schemas"])


def _usage(device: str, at: str, *lines: tuple[str, str, str, int]) -> dict:
    """A port's usage as an agent reports it: (direction, remote, granularity, bytes) per line."""
    starts = {"hour": "2026-12-07T01:00:00Z", "day": "2026-12-07T00:00:00Z"}
    return {"device": device, "at": at,
            "lines": [{"direction": d, "local_ip": "10.0.0.5", "remote_ip": r, "granularity": g,
                       "period_start": starts[g], "bytes": b, "packets": b // 1000} for d, r, g, b in lines]}


def test_per_ip_usage_is_kept_per_port_replaced_by_the_next_and_shown_to_who_may_read_the_port(api):
    admin, agent = headers(api), headers(api, "agent-h1", "service")
    alice, bob = headers(api, "alice", "demo"), headers(api, "bob", "other")
    mine = policy(api, alice, "mine", 3000)
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=alice), "network")
    hers = port(api, alice, net["id"], "hers", qos_policy_id=mine)
    api.put(f"/v2.0/ports/{hers['id']}", json={"port": {"binding:host_id": "h1"}}, headers=admin).raise_for_status()
    tap = "tap" + hers["id"][:11]
    revision = api.put("/v1/hosts/h1", json={"agent_version": "0.1.0"}, headers=agent).json()["host"][
        "desired_revision"]
    path = f"/v1/hosts/h1/ports/{tap}/usage"
    assert api.get(path, headers=admin).json() == {"usage": None}  # nothing reported yet

    first = _usage(tap, "2026-12-07T01:30:00Z", ("egress", "192.0.2.1", "hour", 5_000),
                   ("egress", "192.0.2.1", "day", 9_000), ("ingress", "192.0.2.2", "day", 7_000))
    stranger = _usage("vq-unknown", "2026-12-07T01:30:00Z", ("egress", "192.0.2.9", "day", 1))
    report = {"applied_revision": revision, "ports": [{"device": tap, "revision": revision, "status": "in_sync"}],
              "usage": [first, stranger]}
    assert api.post("/v1/hosts/h1/reports", json=report, headers=agent).status_code == 200
    shown = api.get(path, headers=alice).json()["usage"]  # her port: she reads its usage
    assert shown["at"] == "2026-12-07T01:30:00Z"
    assert [(ln["direction"], ln["remote_ip"], ln["granularity"], ln["bytes"], ln["packets"]) for ln in shown["lines"]] \
        == [("egress", "192.0.2.1", "hour", 5_000, 5), ("egress", "192.0.2.1", "day", 9_000, 9),
            ("ingress", "192.0.2.2", "day", 7_000, 7)]
    _error(api.get(path, headers=bob), 404, "NotFound")  # not his project's port
    _error(api.get("/v1/hosts/h1/ports/vq-unknown/usage", headers=admin), 404, "NotFound")  # no row, no status: dropped

    older = {"applied_revision": revision, "ports": [{"device": tap, "revision": revision, "status": "in_sync"}]}
    assert api.post("/v1/hosts/h1/reports", json=older, headers=agent).status_code == 200  # an agent without usage
    assert api.get(path, headers=admin).json()["usage"] == shown  # the last word stays
    second = _usage(tap, "2026-12-07T01:31:00Z", ("egress", "192.0.2.3", "day", 100))
    assert api.post("/v1/hosts/h1/reports", json={"usage": [second]}, headers=agent).status_code == 200
    assert [ln["remote_ip"] for ln in api.get(path, headers=admin).json()["usage"]["lines"]] == ["192.0.2.3"]

    too_many = _usage(tap, "2026-12-07T01:32:00Z", *[("egress", f"192.0.2.{i % 250}", "day", i) for i in range(1001)])
    bad_direction = _usage(tap, "2026-12-07T01:32:00Z", ("sideways", "192.0.2.1", "day", 1))
    for bad in (too_many, bad_direction):
        assert _error(api.post("/v1/hosts/h1/reports", json={"usage": [bad]}, headers=agent), 400, "InvalidInput")
    assert [ln["remote_ip"] for ln in api.get(path, headers=admin).json()["usage"]["lines"]] == ["192.0.2.3"]
