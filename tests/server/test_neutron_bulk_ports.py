"""Neutron's bulk port create (`POST /v2.0/ports` with {"ports": [...]}), in process on both back ends:
all items made in one answer under "ports" (201), or — one item refused — none made, with the refusal
a single create of that item gets (neutron/api/v2/base.py, prepare_request_body and _create)."""

from __future__ import annotations

import pytest

from vmqos.services import fleet_desired

from .inproc import headers, made, policy, running_api
from .inproc import neutron_error as _error

pytestmark = pytest.mark.server


@pytest.fixture()
def api(db_url):  # on SQLite and on PostgreSQL (tests/pgcluster.py)
    with running_api(db_url) as client:
        yield client


def _network(api, auth, name: str) -> str:
    return str(made(api.post("/v2.0/networks", json={"network": {"name": name}}, headers=auth), "network")["id"])


def _names(api, auth) -> list[str]:
    return sorted(p["name"] for p in api.get("/v2.0/ports", headers=auth).json()["ports"])


def test_a_bulk_create_makes_every_port_and_answers_them_in_order(api):
    admin = headers(api)
    net = _network(api, admin, "bulk")
    limit = policy(api, admin, "limit", 3000)
    body = {"ports": [{"port": {"network_id": net, "name": "a", "binding:host_id": "h1", "qos_policy_id": limit}},
                      {"network_id": net, "name": "b", "mac_address": "fa:16:3e:00:00:01"}]}
    answer = api.post("/v2.0/ports", json=body, headers=admin)
    assert answer.status_code == 201, answer.text
    assert list(answer.json()) == ["ports"]
    ports = answer.json()["ports"]
    assert [(p["name"], p["network_id"], p["binding:host_id"]) for p in ports] == [("a", net, "h1"), ("b", net, "")]
    assert ports[1]["mac_address"] == "fa:16:3e:00:00:01" and ports[0]["mac_address"].startswith("fa:16:3e:")
    assert ports[0]["binding:vif_details"] == {"device": "tap" + ports[0]["id"][:11]}
    assert {p["id"] for p in api.get("/v2.0/ports", headers=admin).json()["ports"]} == {p["id"] for p in ports}
    # the bound port's desired row is written in the batch's transaction, as a single create writes it
    rows = fleet_desired.snapshot(api.app.state.store, "h1").ports
    assert [(r.device, r.port_id) for r in rows] == [("tap" + ports[0]["id"][:11], ports[0]["id"])]


def test_one_refused_item_makes_none_with_a_single_creates_refusal(api):
    admin, alice = headers(api), headers(api, "alice", "demo")
    net = _network(api, admin, "bulk")
    own = _network(api, alice, "own")
    unknown = {"ports": [{"network_id": net, "name": "ok"}, {"network_id": net, "name": "x", "colour": "red"}]}
    assert _error(api.post("/v2.0/ports", json=unknown, headers=admin), 400, "HTTPBadRequest") == \
        "Unrecognized attribute(s) 'colour'"
    missing = {"ports": [{"network_id": net, "name": "ok"}, {"port": {"name": "no-net"}}]}
    assert "Required attribute 'network_id' not specified" in \
        _error(api.post("/v2.0/ports", json=missing, headers=admin), 400, "HTTPBadRequest")
    same_mac = {"ports": [{"network_id": net, "name": "m1", "mac_address": "fa:16:3e:00:00:02"},
                          {"network_id": net, "name": "m2", "mac_address": "fa:16:3e:00:00:02"}]}
    assert "The mac address fa:16:3e:00:00:02 is in use" in \
        _error(api.post("/v2.0/ports", json=same_mac, headers=admin), 409, "MacAddressInUse")
    # a member may not bind a port to a host: the whole batch is refused as a single create would be
    bound = {"ports": [{"network_id": own, "name": "mine"}, {"network_id": own, "binding:host_id": "h1"}]}
    single = api.post("/v2.0/ports", json={"port": {"network_id": own, "binding:host_id": "h1"}}, headers=alice)
    refused = api.post("/v2.0/ports", json=bound, headers=alice)
    assert (refused.status_code, refused.json()) == (single.status_code, single.json())
    assert refused.status_code == 403
    # another project's (unshared) network is not found for the member, nor is anything made
    foreign = {"ports": [{"network_id": own, "name": "mine"}, {"network_id": net, "name": "theirs"}]}
    assert api.post("/v2.0/ports", json=foreign, headers=alice).status_code == 404
    # bodies Neutron cannot read as a bulk create
    assert _error(api.post("/v2.0/ports", json={"ports": []}, headers=admin), 400, "HTTPBadRequest") == \
        "Resources required"
    assert _error(api.post("/v2.0/ports", json={"ports": 7}, headers=admin), 400, "HTTPBadRequest") == \
        "Body contains invalid data"
    assert _error(api.post("/v2.0/ports", json={"ports": ["x"]}, headers=admin), 400, "HTTPBadRequest") == \
        "Object 'port' contains invalid data"
    elsewhere = {"ports": [{"network_id": _network(api, admin, "n")}]}
    with_bob = api.post("/v2.0/ports", json=elsewhere, headers=headers(api, "bob", "other"))
    assert with_bob.status_code == 404  # bob's project does not see admin's network
    assert _names(api, admin) == []
