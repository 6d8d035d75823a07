"""Issue 14's last items in process, on SQLite and PostgreSQL: a native port that follows a typed vmqos policy
(attach, re-derived on the policy's change in its own transaction, deletion refused while attached), the
policies' list paged as Neutron pages, and an instance's flavor recorded on the server for a port's effective
QoS. One in-process application per test (no server process); about 1 s per test and back end.
"""

from __future__ import annotations

import copy
from urllib.parse import parse_qs, urlsplit

import pytest

from vmqos.services.fleet_wire import Desired

from .inproc import add_agent, headers, made, policy, port, running_api
from .inproc import neutron_error as _error

pytestmark = pytest.mark.server

# a peak above the rate and traffic classes: what Neutron's rules cannot say
GOLD = {"name": "gold", "qos": {
    "ingress": {"bandwidth": {"rate_bps": 10_000_000, "peak_bps": 20_000_000, "burst_bytes": 65_536}},
    "egress": {"bandwidth": {"rate_bps": 5_000_000},
               "classes": [{"name": "web", "share_percent": 60, "match": {"protocol": "tcp", "ports": [80, 443]}},
                           {"name": "rest", "share_percent": 40}]}}}


@pytest.fixture()
def api(db_url):  # on SQLite and on PostgreSQL (tests/pgcluster.py)
    with running_api(db_url) as client:
        add_agent(client.app.state.store, "agent-h1", "h1")
        add_agent(client.app.state.store, "agent-h2", "h2")
        yield client


def _create(api, auth, body) -> dict:
    return made(api.post("/v1/policies", json=body, headers=auth), "policy")


def _ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def test_a_port_follows_a_typed_policy_and_every_change_of_it(api):
    admin, alice, bob = headers(api), headers(api, "alice", "demo"), headers(api, "bob", "other")
    agent = headers(api, "agent-h1", "service")
    gold = _create(api, alice, GOLD)
    # an admin may attach any project's policy; the row holds the content resolved, and the id
    one = _ok(api.put("/v1/hosts/h1/ports/vq-a", json={"policy_id": gold["id"]}, headers=admin))["port"]
    assert (one["source"], one["policy_id"], one["policy_name"]) == ("native", gold["id"], f"vmqos:{gold['id']}")
    assert one["policy"] == {"ingress": {"rate": "10mbit", "peak": "20mbit", "burst": "64kb"},
                             "egress": {"rate": "5mbit", "classes": [
                                 {"name": "web", "share": 60, "match": {"protocol": "tcp", "ports": [80, 443]}},
                                 {"name": "rest", "share": 40}]}}
    two = _ok(api.put("/v1/hosts/h1/ports/vq-b", json={"policy_id": gold["id"]}, headers=admin))["port"]
    snapshot = _ok(api.get("/v1/hosts/h1/desired", headers=agent))
    rows = {p["device"]: p for p in snapshot["ports"]}
    # the agents' protocol is unchanged: the content resolved, the policy named vmqos:<id> in the agent's scope
    assert rows["vq-a"]["policy_name"] == rows["vq-b"]["policy_name"] == f"vmqos:{gold['id']}"
    held = Desired.model_validate(rows["vq-a"]).as_policy()
    assert held is not None and held.qos.ingress.bandwidth is not None
    assert (held.qos.ingress.bandwidth.rate_bps, held.qos.ingress.bandwidth.peak_bps) == (10_000_000, 20_000_000)
    assert [c.name for c in held.qos.egress.classes] == ["web", "rest"]
    # the effective view names the policy as the source of its values
    effective = _ok(api.get("/v1/hosts/h1/ports/vq-a/effective", headers=admin))["effective"]
    assert effective["sources"] == [f"vmqos policy {gold['id']}"]
    assert effective["ingress"]["peak_bps"] == {"value": 20_000_000, "source": f"vmqos policy {gold['id']}"}
    # setting it again changes nothing (same revision): an agent is not woken for nothing
    again = _ok(api.put("/v1/hosts/h1/ports/vq-a", json={"policy_id": gold["id"]}, headers=admin))["port"]
    assert again["desired_revision"] == one["desired_revision"]

    # the owner replaces the policy: both rows take its content, with one new revision above what the agent read
    faster = copy.deepcopy(GOLD)
    faster["qos"]["ingress"]["bandwidth"] = {"rate_bps": 30_000_000, "peak_bps": 40_000_000, "burst_bytes": 65_536}
    _ok(api.put(f"/v1/policies/{gold['id']}", json=faster, headers=alice))
    changes = _ok(api.get("/v1/hosts/h1/desired/changes", params={"since": snapshot["revision"], "wait": 5},
                          headers=agent))
    assert sorted(c["device"] for c in changes["changes"]) == ["vq-a", "vq-b"]
    assert len({c["revision"] for c in changes["changes"]}) == 1 and changes["revision"] > two["desired_revision"]
    moved = Desired.model_validate(changes["changes"][0]).as_policy()
    assert moved is not None and moved.qos.ingress.bandwidth is not None
    assert moved.qos.ingress.bandwidth.rate_bps == 30_000_000
    # a change of the description only: same content, the rows keep their revision
    _ok(api.put(f"/v1/policies/{gold['id']}", json={**faster, "description": "renamed"}, headers=alice))
    assert _ok(api.get("/v1/hosts/h1/desired/changes", params={"since": changes["revision"]},
                       headers=agent))["changes"] == []

    # deleting it while ports follow it: 409 naming them (Neutron's QosPolicyInUse); the policy stays
    message = _error(api.delete(f"/v1/policies/{gold['id']}", headers=alice), 409, "QosPolicyInUse")
    assert "vq-a on host h1" in message and "vq-b on host h1" in message
    assert api.get(f"/v1/policies/{gold['id']}", headers=alice).status_code == 200
    # the port goes back to inline limits (the existing form), the other is cleared: then it may go
    inline = _ok(api.put("/v1/hosts/h1/ports/vq-a", json={"policy": {"ingress": {"rate": "1mbit"}}},
                         headers=admin))["port"]
    assert (inline["policy_id"], inline["policy_name"]) == (None, "native:vq-a")
    assert api.delete("/v1/hosts/h1/ports/vq-b", headers=admin).status_code == 204
    assert api.delete(f"/v1/policies/{gold['id']}", headers=alice).status_code == 204
    # who may attach: a member sets no native port; an unknown or deleted policy is 404, named by its field
    _error(api.put("/v1/hosts/h1/ports/vq-c", json={"policy_id": gold["id"]}, headers=bob), 403, "Forbidden")
    assert _error(api.put("/v1/hosts/h1/ports/vq-c", json={"policy_id": gold["id"]}, headers=admin), 404,
                  "NotFound").startswith("policy_id: ")


def test_attaching_refuses_neutrons_devices_and_policies_and_ambiguous_bodies(api):
    admin, alice = headers(api), headers(api, "alice", "demo")
    gold = _create(api, alice, GOLD)
    neutron_id = policy(api, admin, "bw-limiter", 3000)
    assert "Neutron QoS policy" in _error(api.put("/v1/hosts/h1/ports/vq-n", json={"policy_id": neutron_id},
                                                  headers=admin), 409, "ConflictError")
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=admin), "network")
    vm = port(api, admin, net["id"], "p", **{"binding:host_id": "h1", "device_id": "vm-1"})
    tap = "tap" + vm["id"][:11]
    assert vm["id"] in _error(api.put(f"/v1/hosts/h1/ports/{tap}", json={"policy_id": gold["id"]}, headers=admin),
                              409, "ConflictError")  # a Neutron port's device stays Neutron's
    both = {"policy_id": gold["id"], "policy": {"ingress": {"rate": "1mbit"}}}
    assert "exactly one" in _error(api.put("/v1/hosts/h1/ports/vq-x", json=both, headers=admin), 400, "InvalidInput")
    named = {"policy_id": gold["id"], "policy_name": "mine"}
    assert "policy_name" in _error(api.put("/v1/hosts/h1/ports/vq-x", json=named, headers=admin), 400,
                                   "InvalidInput")
    # a conditional attach: If-None-Match: * refuses a device that has limits already
    _ok(api.put("/v1/hosts/h1/ports/vq-x", json={"policy_id": gold["id"]}, headers=admin | {"If-None-Match": "*"}))
    _error(api.put("/v1/hosts/h1/ports/vq-x", json={"policy_id": gold["id"]}, headers=admin | {"If-None-Match": "*"}),
           412, "PreconditionFailed")
    # a Neutron port that comes to name a followed device takes it over; the policy is then free to go
    vm2 = port(api, admin, net["id"], "q", **{"binding:host_id": "h2", "device_id": "vm-2",
                                              "binding:profile": {"device": "vq-x"}})
    assert vm2["id"]
    assert api.put(f"/v2.0/ports/{vm2['id']}", json={"port": {"binding:host_id": "h1"}},
                   headers=admin).status_code == 200
    taken = _ok(api.get("/v1/hosts/h1/ports/vq-x", headers=admin))["port"]
    assert (taken["source"], taken["policy_id"]) == ("neutron", None)
    assert api.delete(f"/v1/policies/{gold['id']}", headers=alice).status_code == 204


def _links(body: dict) -> dict[str, dict[str, list[str]]]:
    return {link["rel"]: parse_qs(urlsplit(link["href"]).query) for link in body.get("policies_links", [])}


@pytest.mark.parametrize("size", [2, 5])
def test_the_policies_list_pages_as_neutron_pages(api, size):
    alice, bob = headers(api, "alice", "demo"), headers(api, "bob", "other")
    made_ids = sorted(_create(api, alice, {**GOLD, "name": f"p{i}"})["id"] for i in range(7))
    _create(api, bob, {**GOLD, "name": "bobs"})  # another project's: never on alice's pages
    unpaged = _ok(api.get("/v1/policies", headers=alice))
    assert "policies_links" not in unpaged and len(unpaged["policies"]) == 7
    seen: list[str] = []
    marker = None
    for _ in range(10):
        query = {"limit": size} | ({"marker": marker} if marker else {})
        page = _ok(api.get("/v1/policies", params=query, headers=alice))
        assert len(page["policies"]) <= size
        seen += [p["id"] for p in page["policies"]]
        links = _links(page)
        assert links["previous"]["page_reverse"] == ["True"]
        if "next" not in links:
            break
        assert links["next"]["limit"] == [str(size)]
        marker = links["next"]["marker"][0]
        assert marker == seen[-1]
    assert seen == made_ids  # every policy once, by id, and nothing of bob's
    # the page before a marker (page_reverse), as Neutron's previous link asks
    back = _ok(api.get("/v1/policies", params={"limit": size, "marker": made_ids[size], "page_reverse": True},
                       headers=alice))
    assert [p["id"] for p in back["policies"]] == made_ids[:size]


def test_the_policies_lists_limit_and_marker_are_checked_as_neutron_checks_them(api):
    alice, bob = headers(api, "alice", "demo"), headers(api, "bob", "other")
    ids = sorted(_create(api, alice, {**GOLD, "name": f"p{i}"})["id"] for i in range(3))
    hidden = _create(api, bob, {**GOLD, "name": "bobs"})["id"]
    for bad in ("-1", "two", "1.5"):
        assert "limit" in _error(api.get("/v1/policies", params={"limit": bad}, headers=alice), 400, "InvalidInput")
    assert "policies_links" not in _ok(api.get("/v1/policies", params={"limit": 0}, headers=alice))  # 0: all
    everything = _ok(api.get("/v1/policies", params={"limit": 2**40}, headers=alice))
    assert [p["id"] for p in everything["policies"]] == ids and set(_links(everything)) == {"previous"}
    # a marker the caller cannot see (another project's, or none at all) starts from the beginning, as Neutron's
    # object pager does with a marker it cannot load: no 404 that would tell another project's ids apart
    for marker in (hidden, "no-such-id"):
        page = _ok(api.get("/v1/policies", params={"limit": 2, "marker": marker}, headers=alice))
        assert [p["id"] for p in page["policies"]] == ids[:2]


def test_an_instances_flavor_recorded_on_the_server_feeds_the_effective_qos(api):
    admin, agent, other_agent = headers(api), headers(api, "agent-h1", "service"), headers(api, "agent-h2", "service")
    flavor = api.post("/compute/v2.1/flavors", headers=admin, json={"flavor": {
        "name": "m1.resquota", "ram": 512, "vcpus": 1, "disk": 1}})
    assert flavor.status_code == 200, flavor.text
    api.post(f"/compute/v2.1/flavors/{flavor.json()['flavor']['id']}/os-extra_specs", headers=admin, json={
        "extra_specs": {"quota:vif_outbound_average": "250"}}).raise_for_status()  # 250 kB/s = 2 Mbit/s
    p3 = policy(api, admin, "p3", 3000)
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=admin), "network")
    vm = port(api, admin, net["id"], "a", qos_policy_id=p3, **{"binding:host_id": "h1", "device_id": "vm-1"})
    tap = "tap" + vm["id"][:11]
    path = f"/v1/hosts/h1/ports/{tap}/effective"
    before = _ok(api.get(path, headers=admin))["effective"]
    assert (before["flavor"], before["flavor_source"]) == (None, None)

    # the Neutron port's instance, recorded by the host's agent: found by its device_id
    answer = api.put("/v1/hosts/h1/instances/vm-1", json={"flavor": "m1.resquota"}, headers=agent)
    assert answer.status_code == 201, answer.text
    after = _ok(api.get(path, headers=admin))["effective"]
    assert (after["flavor"], after["flavor_source"]) == ("m1.resquota", "server")
    assert after["egress"]["rate_bps"] == {"value": 2_000_000, "source": "flavor m1.resquota"}
    # a native device, listed by the instance's record
    _ok(api.put("/v1/hosts/h1/ports/vq-lab", json={"policy": {"egress": {"rate": "5mbit"}}}, headers=admin))
    assert api.put("/v1/hosts/h1/instances/lab-1", json={"flavor": "m1.resquota", "devices": ["vq-lab"]},
                   headers=admin).status_code == 201
    lab = _ok(api.get("/v1/hosts/h1/ports/vq-lab/effective", headers=admin))["effective"]
    assert (lab["flavor_source"], lab["egress"]["rate_bps"]["value"]) == ("server", 2_000_000)
    assert _ok(api.get("/v1/hosts/h1/instances/lab-1", headers=agent))["instance"]["devices"] == ["vq-lab"]
    # what is refused: an unknown flavor (named), another host's agent, a bad device
    assert "flavor" in _error(api.put("/v1/hosts/h1/instances/vm-2", json={"flavor": "m1.nope"}, headers=admin), 400,
                              "InvalidValue")
    _error(api.put("/v1/hosts/h1/instances/vm-1", json={"flavor": "m1.resquota"}, headers=other_agent), 403,
           "Forbidden")
    _error(api.put("/v1/hosts/h1/instances/vm-2", json={"flavor": "m1.resquota", "devices": ["a/b"]},
                   headers=admin), 400, "InvalidInput")
    # forgotten: the effective view falls back (here: no agent inventory, so no flavor)
    assert api.delete("/v1/hosts/h1/instances/vm-1", headers=agent).status_code == 204
    assert _ok(api.get(path, headers=admin))["effective"]["flavor"] is None
    _error(api.get("/v1/hosts/h1/instances/vm-1", headers=admin), 404, "NotFound")
