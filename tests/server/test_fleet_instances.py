"""`GET /v1/instances` in process, on SQLite and PostgreSQL: instances from the Neutron ports that name one,
grouped by device_id with their hosts and devices, and who may see which (services.fleet_instances)."""

from __future__ import annotations

import pytest

from .inproc import add_agent, headers, made, port, running_api

pytestmark = pytest.mark.server


@pytest.fixture()
def api(db_url):
    with running_api(db_url) as client:
        add_agent(client.app.state.store, "agent-h1", "h1")
        yield client


def test_instances_are_the_ports_device_ids_with_their_hosts_and_who_may_see_them(api):
    admin, alice, bob = headers(api), headers(api, "alice", "demo"), headers(api, "bob", "other")
    agent1 = headers(api, "agent-h1", "service")
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n", "shared": True}}, headers=admin), "network")
    vm1 = "11111111-1111-4111-8111-111111111111"
    first = port(api, alice, net["id"], "vm1-a", device_id=vm1, device_owner="compute:nova")
    second = port(api, alice, net["id"], "vm1-b", device_id=vm1, device_owner="compute:nova")
    his = port(api, bob, net["id"], "vm2", device_id="vm2", device_owner="compute:nova")
    port(api, admin, net["id"], "dhcp", device_id="dhcp-n", device_owner="network:dhcp")
    port(api, alice, net["id"], "loose")  # names no instance
    for found, binding in ((first, {"binding:host_id": "h1"}),
                           (second, {"binding:host_id": "h1", "binding:profile": {"device": "vq-vm1b"}}),
                           (his, {"binding:host_id": "h2"})):  # binding attributes are an admin's (Nova's)
        bound = api.put(f"/v2.0/ports/{found['id']}", json={"port": binding}, headers=admin)
        assert bound.status_code == 200, bound.text

    everything = api.get("/v1/instances", headers=admin)
    assert everything.status_code == 200, everything.text
    listed = everything.json()["instances"]
    assert [(i["id"], i["hosts"], [p["device"] for p in i["ports"]]) for i in listed] == [
        (vm1, ["h1"], ["tap" + first["id"][:11], "vq-vm1b"]), ("vm2", ["h2"], ["tap" + his["id"][:11]])]
    assert listed[0]["project_id"] == first["project_id"] != listed[1]["project_id"]

    def ids(auth: dict, query: str = "") -> list[str]:
        answer = api.get(f"/v1/instances{query}", headers=auth)
        assert answer.status_code == 200, answer.text
        return [i["id"] for i in answer.json()["instances"]]

    assert ids(admin, "?host=h2") == ["vm2"]
    assert ids(alice) == [vm1] and ids(bob) == ["vm2"] and ids(bob, "?host=h1") == []
    assert ids(agent1) == [vm1]
    refused = api.get("/v1/instances?host=h2", headers=agent1)
    assert refused.status_code == 403 and "bound to host h1" in refused.json()["NeutronError"]["message"]
    assert api.get("/v1/instances").status_code == 401
