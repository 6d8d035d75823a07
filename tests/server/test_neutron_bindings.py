"""The desired state the API's ports compute for a host (services.neutron_bindings), the change
counter the enforcer follows, and Neutron's bodies for what the CLI checks before it sends.

In process (FastAPI's TestClient) on a real SQLite file; no root: nothing here touches a kernel.
"""

from __future__ import annotations

import pytest

from vmqos.core.desired.neutron_ports import (
    device_name,
    effective_policy,
    network_policy_applies,
    without_unused_policies,
)
from vmqos.core.errors import InvalidValue
from vmqos.core.model.host import HostState, InstanceSpec, NetworkSpec, Policy, PortSpec
from vmqos.core.model.network import NetworkQos
from vmqos.services.neutron_bindings import host_bindings
from vmqos.store import neutron_ports as records

from .inproc import headers as _headers
from .inproc import made as _made
from .inproc import policy as _policy
from .inproc import port as _port
from .inproc import running_api

pytestmark = pytest.mark.server


@pytest.fixture()
def api(db_url):  # on SQLite and on PostgreSQL (tests/pgcluster.py)
    with running_api(db_url) as client:
        yield client


def test_the_desired_state_of_a_host_follows_neutrons_rules(api):
    admin = _headers(api)
    own, net_policy = _policy(api, admin, "own", 3000), _policy(api, admin, "net", 6000)
    net = _made(api.post("/v2.0/networks", json={"network": {"name": "n", "qos_policy_id": net_policy}},
                         headers=admin), "network")
    by_port = _port(api, admin, net["id"], "by-port", qos_policy_id=own, **{"binding:host_id": "h1"})
    by_net = _port(api, admin, net["id"], "by-net", device_owner="compute:nova",
                   **{"binding:host_id": "h1", "binding:profile": {"device": "veth-web1"}})
    dhcp = _port(api, admin, net["id"], "dhcp", device_owner="network:dhcp", **{"binding:host_id": "h1"})
    gateway = _port(api, admin, net["id"], "gw", device_owner="network:router_gateway", **{"binding:host_id": "h1"})
    _port(api, admin, net["id"], "elsewhere", qos_policy_id=own, **{"binding:host_id": "h2"})
    _port(api, admin, net["id"], "unbound", qos_policy_id=own)

    found = host_bindings(api.app.state.store, "h1")
    assert found.problems == ()
    got = {b.port_id: (device, b.policy_id, b.source) for device, b in found.ports.items()}
    assert got == {
        by_port["id"]: ("tap" + by_port["id"][:11], own, "port"),
        by_net["id"]: ("veth-web1", net_policy, "network"),
        dhcp["id"]: ("tap" + dhcp["id"][:11], None, None),  # a network device gets no network policy
        gateway["id"]: ("tap" + gateway["id"][:11], net_policy, "network"),  # but a router's gateway does
    }
    policy = found.ports["veth-web1"].policy
    assert policy is not None and policy.name == f"neutron:{net_policy}" and policy.origin == "neutron"
    assert (policy.qos.egress.bandwidth.rate_bps, policy.qos.egress.bandwidth.burst_bytes) == (6_000_000, 37_500)
    assert found.ports["veth-web1"].limits and not found.ports["tap" + dhcp["id"][:11]].limits

    # the port's own policy wins over its network's; unsetting it falls back to the network's
    api.put(f"/v2.0/ports/{by_net['id']}", json={"port": {"qos_policy_id": own}}, headers=admin).raise_for_status()
    assert host_bindings(api.app.state.store, "h1").ports["veth-web1"].source == "port"
    api.put(f"/v2.0/ports/{by_net['id']}", json={"port": {"qos_policy_id": None}}, headers=admin).raise_for_status()
    assert host_bindings(api.app.state.store, "h1").ports["veth-web1"].policy_id == net_policy


def test_two_ports_naming_one_device_on_a_host_the_first_keeps_it(api):
    admin = _headers(api)
    net = _made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=admin), "network")
    first = _port(api, admin, net["id"], "a", **{"binding:host_id": "h1", "binding:profile": {"device": "vq0"}})
    second = _port(api, admin, net["id"], "b", **{"binding:host_id": "h1", "binding:profile": {"device": "vq0"}})
    found = host_bindings(api.app.state.store, "h1")
    assert found.ports["vq0"].port_id == first["id"]
    assert found.problems == (f"port {second['id']}: device vq0 on host h1 is port {first['id']}'s; give one of "
                              "them another binding:profile device",)


def test_every_neutron_change_raises_the_counter(api):
    admin = _headers(api)
    store = api.app.state.store
    seen = [records.changes(store)]

    def moved() -> bool:
        seen.append(records.changes(store))
        return seen[-1] > seen[-2]

    policy = _policy(api, admin, "p", 1000)
    assert moved()
    rule = api.get(f"/v2.0/qos/policies/{policy}/bandwidth_limit_rules", headers=admin).json()
    rule_id = rule["bandwidth_limit_rules"][0]["id"]
    api.put(f"/v2.0/qos/policies/{policy}/bandwidth_limit_rules/{rule_id}", headers=admin,
            json={"bandwidth_limit_rule": {"max_kbps": 2000}}).raise_for_status()
    assert moved()
    net = _made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=admin), "network")
    assert moved()
    port = _port(api, admin, net["id"], "p", **{"binding:host_id": "h1"})
    assert moved()
    api.put(f"/v2.0/ports/{port['id']}", json={"port": {"qos_policy_id": policy}}, headers=admin).raise_for_status()
    assert moved()
    assert api.delete(f"/v2.0/ports/{port['id']}", headers=admin).status_code == 204
    assert moved()
    assert api.delete(f"/v2.0/qos/policies/{policy}", headers=admin).status_code == 204
    assert moved()


def test_neutrons_bodies_for_what_the_cli_checks_before_sending(api):
    alice, bob = _headers(api, "alice", "demo"), _headers(api, "bob", "other")
    theirs = _policy(api, bob, "theirs", 1000)
    net = _made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=alice), "network")
    port = _port(api, alice, net["id"], "p")
    refused = api.put(f"/v2.0/ports/{port['id']}", json={"port": {"qos_policy_id": theirs}}, headers=alice)
    assert refused.status_code == 404
    assert refused.json() == {"NeutronError": {"type": "QosPolicyNotFound", "detail": "",
                                               "message": f"QoS policy {theirs} could not be found."}}
    bad = api.put(f"/v2.0/ports/{port['id']}", json={"port": {"qos_policy_id": "nope"}}, headers=alice)
    assert bad.status_code == 400
    assert bad.json()["NeutronError"]["message"] == "Invalid input for qos_policy_id. Reason: 'nope' is not a valid UUID."
    assert api.get(f"/v2.0/ports/{port['id']}", headers=bob).json()["NeutronError"]["type"] == "PortNotFound"
    sneaky = api.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}, headers=bob)
    assert (sneaky.status_code, sneaky.json()["NeutronError"]["type"]) == (404, "NetworkNotFound")
    unknown = api.post("/v2.0/ports", json={"port": {"network_id": net["id"], "port_security_enabled": False}},
                       headers=alice)
    assert unknown.json()["NeutronError"]["message"] == "Unrecognized attribute(s) 'port_security_enabled'"
    assert api.get("/v2.0/subnets", headers=alice).json() == {"subnets": []}
    assert api.get("/v2.0/security-groups", headers=alice).json() == {"security_groups": []}
    only = api.get("/v2.0/ports", params={"fields": ["id", "name"]}, headers=alice).json()
    assert only == {"ports": [{"id": port["id"], "name": "p"}]}
    aliases = {e["alias"] for e in api.get("/v2.0/extensions", headers=alice).json()["extensions"]}
    assert {"binding", "qos-port-network-policy", "net-mtu"} <= aliases
    collections = [r["collection"] for r in api.get("/v2.0", headers=alice).json()["resources"]]
    assert {"networks", "ports"} <= set(collections)


def test_the_pure_rules():
    assert device_name("0123456789abcdef-rest") == "tap0123456789a"
    assert device_name("0123456789abcdef", {"device": "veth-web1", "other": 1}) == "veth-web1"
    with pytest.raises(InvalidValue, match="binding:profile device"):
        device_name("x", {"device": "much-too-long-for-linux"})
    assert network_policy_applies("") and network_policy_applies("compute:nova")
    assert not network_policy_applies("network:dhcp") and not network_policy_applies("neutron:LOADBALANCERV2")
    assert network_policy_applies("network:floatingip_agent_gateway")
    assert effective_policy("a", "b", "network:dhcp").source == "port"
    assert effective_policy(None, "b", "network:dhcp") is None
    state = HostState(policies={"neutron:a": Policy("neutron:a", NetworkQos()), "neutron:b": Policy("neutron:b", NetworkQos()),
                                "mine": Policy("mine", NetworkQos())},
                      networks={"n": NetworkSpec("n", "neutron:b")},
                      instances={"i": InstanceSpec("i", ports=(PortSpec("d", policy=None),))})
    assert set(without_unused_policies(state).policies) == {"neutron:b", "mine"}


def test_a_member_filters_on_the_binding_it_does_not_see(api):
    admin, alice = _headers(api), _headers(api, "alice", "demo")
    net = _made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=alice), "network")
    demo = net["project_id"]
    bound = _port(api, admin, net["id"], "bound", project_id=demo, **{"binding:host_id": "h1"})
    _port(api, alice, net["id"], "free")
    listed = api.get("/v2.0/ports", params={"binding:host_id": "h1"}, headers=alice).json()["ports"]
    assert [p["id"] for p in listed] == [bound["id"]]
    assert "binding:host_id" not in listed[0] and listed[0]["binding:vnic_type"] == "normal"
