"""Every QoS rule type through the real, unmodified `openstack` CLI (python-openstackclient 10.5.0).

osc 10.5 offers `--type` bandwidth-limit, dscp-marking, minimum-bandwidth and minimum-packet-rate
only: it has no packet-rate-limit type and no --max-kpps option, so a packet_rate_limit rule is made
over HTTP here and then listed, shown and deleted with the CLI (which finds its type in the policy).
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.server.conftest import ADMIN_PASSWORD, PASSWORD

pytestmark = pytest.mark.server


def _token(server, user: str, project: str) -> str:
    password = ADMIN_PASSWORD if user == "admin" else PASSWORD
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}}
    request = urllib.request.Request(f"{server.url}/v3/auth/tokens", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.headers["X-Subject-Token"])


def _post(server, token: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{server.url}{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json", "X-Auth-Token": token})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
        return dict(json.loads(response.read()))


def test_every_rule_type_with_the_cli(server):
    policy = server.json("network", "qos", "policy", "create", "gold", user="alice")
    dscp = server.json("network", "qos", "rule", "create", "--type", "dscp-marking", "--dscp-mark", "26", "gold",
                       user="alice")
    assert set(dscp) == {"id", "dscp_mark"} and dscp["dscp_mark"] == 26
    minbw = server.json("network", "qos", "rule", "create", "--type", "minimum-bandwidth", "--min-kbps", "1000",
                        "--egress", "gold", user="alice")
    assert (minbw["min_kbps"], minbw["direction"]) == (1000, "egress")
    minbw_in = server.json("network", "qos", "rule", "create", "--type", "minimum-bandwidth", "--min-kbps", "500",
                           "--ingress", "gold", user="alice")
    assert minbw_in["direction"] == "ingress"
    minpps = server.json("network", "qos", "rule", "create", "--type", "minimum-packet-rate", "--min-kpps", "20",
                         "--any", "gold", user="alice")
    assert (minpps["min_kpps"], minpps["direction"]) == (20, "any")
    limit = server.json("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps", "5000",
                        "--max-burst-kbits", "500", "gold", user="alice")
    pps = _post(server, _token(server, "alice", "demo"), f"/v2.0/qos/policies/{policy['id']}/packet_rate_limit_rules",
                {"packet_rate_limit_rule": {"max_kpps": 50, "max_burst_kpps": 5}})["packet_rate_limit_rule"]
    assert pps == {"id": pps["id"], "max_kpps": 50, "max_burst_kpps": 5, "direction": "egress"}

    listed = server.json("network", "qos", "rule", "list", "gold", user="alice")
    assert {(r["ID"], r["Type"]) for r in listed} == {
        (dscp["id"], "dscp_marking"), (minbw["id"], "minimum_bandwidth"), (minbw_in["id"], "minimum_bandwidth"),
        (minpps["id"], "minimum_packet_rate"), (limit["id"], "bandwidth_limit"), (pps["id"], "packet_rate_limit")}
    shown = server.json("network", "qos", "rule", "show", "gold", pps["id"], user="alice")
    assert (shown["max_kpps"], shown["max_burst_kpps"], shown["direction"]) == (50, 5, "egress")
    assert server.json("network", "qos", "policy", "show", "gold", user="alice")["revision_number"] == 7

    for args in (("--dscp-mark", "46", dscp["id"]), ("--min-kbps", "2000", minbw["id"]),
                 ("--min-kpps", "30", minpps["id"])):
        result = server.openstack("network", "qos", "rule", "set", *args[:2], "gold", args[2], user="alice")
        assert result.returncode == 0, result.stderr
    assert server.json("network", "qos", "rule", "show", "gold", dscp["id"], user="alice")["dscp_mark"] == 46
    assert server.json("network", "qos", "rule", "show", "gold", minbw["id"], user="alice")["min_kbps"] == 2000
    assert server.json("network", "qos", "rule", "show", "gold", minpps["id"], user="alice")["min_kpps"] == 30

    for rule in (dscp, minbw, minbw_in, minpps, limit, pps):
        gone = server.openstack("network", "qos", "rule", "delete", "gold", rule["id"], user="alice")
        assert gone.returncode == 0, gone.stderr
    assert server.json("network", "qos", "policy", "show", "gold", user="alice")["rules"] == []
    assert server.openstack("network", "qos", "policy", "delete", "gold", user="alice").returncode == 0


def test_neutrons_conflicts_and_invalid_values(server):
    server.json("network", "qos", "policy", "create", "strict2", user="alice")
    server.json("network", "qos", "rule", "create", "--type", "dscp-marking", "--dscp-mark", "8", "strict2",
                user="alice")
    second = server.openstack("network", "qos", "rule", "create", "--type", "dscp-marking", "--dscp-mark", "10",
                              "strict2", user="alice")
    assert second.returncode == 1 and "409" in second.stderr and "Rule dscp_marking conflicts with rule" in second.stderr
    bad_mark = server.openstack("network", "qos", "rule", "create", "--type", "dscp-marking", "--dscp-mark", "42",
                                "strict2", user="alice")
    assert "Invalid input for dscp_mark. Reason: 42 is not in valid_values." in bad_mark.stderr

    server.json("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps", "1000", "--egress",
                "strict2", user="alice")
    above = server.openstack("network", "qos", "rule", "create", "--type", "minimum-bandwidth", "--min-kbps", "2000",
                             "--egress", "strict2", user="alice")
    assert above.returncode == 1 and "409" in above.stderr
    assert "Unable to add the rule with value 2000 to the policy" in above.stderr
    assert "as the existing rule of type bandwidth_limit has value 1000." in above.stderr
    # the other direction has no limit: a minimum there is fine
    server.json("network", "qos", "rule", "create", "--type", "minimum-bandwidth", "--min-kbps", "2000", "--ingress",
                "strict2", user="alice")

    server.json("network", "qos", "rule", "create", "--type", "minimum-packet-rate", "--min-kpps", "5", "--egress",
                "strict2", user="alice")
    mixed = server.openstack("network", "qos", "rule", "create", "--type", "minimum-packet-rate", "--min-kpps", "5",
                             "--any", "strict2", user="alice")
    assert mixed.returncode == 1 and "409" in mixed.stderr
    assert "has value egress" in mixed.stderr and "Unable to add the rule with value any" in mixed.stderr
    assert server.openstack("network", "qos", "policy", "delete", "strict2", user="alice").returncode == 0


def test_rule_types_as_neutron_lists_and_details_them(server):
    listed = server.json("network", "qos", "rule", "type", "list", user="alice")
    assert [t["Type"] for t in listed] == ["bandwidth_limit", "dscp_marking", "minimum_bandwidth",
                                           "minimum_packet_rate", "packet_rate_limit"]
    paged = server.json("network", "qos", "rule", "type", "list", "--all-supported", "--limit", "2")
    assert [t["Type"] for t in paged] == [t["Type"] for t in listed]
    shown = server.json("network", "qos", "rule", "type", "show", "dscp_marking")
    assert shown["rule_type_name"] == "dscp_marking"
    assert shown["drivers"] == [{"name": "vmqos", "supported_parameters": [{
        "parameter_name": "dscp_mark", "parameter_type": "choices",
        "parameter_values": [0, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 44, 46, 48, 56]}]}]
    bw = server.json("network", "qos", "rule", "type", "show", "bandwidth_limit")["drivers"][0]
    assert [(p["parameter_name"], p["parameter_type"]) for p in bw["supported_parameters"]] == \
        [("max_kbps", "range"), ("max_burst_kbps", "range"), ("direction", "choices")]
    # Neutron's plugin shows a rule type's details to admins only
    refused = server.openstack("network", "qos", "rule", "type", "show", "bandwidth_limit", user="alice")
    assert refused.returncode == 1 and "Not authorized." in refused.stderr


def test_a_reader_and_another_project_cannot_touch_rules(server):
    server.json("network", "qos", "policy", "create", "mine", user="alice")
    rule = server.json("network", "qos", "rule", "create", "--type", "minimum-bandwidth", "--min-kbps", "100",
                       "--egress", "mine", user="alice")
    refused = server.openstack("network", "qos", "rule", "create", "--type", "dscp-marking", "--dscp-mark", "8",
                               "mine", user="rita")
    assert refused.returncode == 1 and "rule:create_policy_dscp_marking_rule is disallowed by policy" in refused.stderr
    kept = server.openstack("network", "qos", "rule", "set", "--min-kbps", "5", "mine", rule["id"], user="rita")
    assert kept.returncode == 1 and "rule:update_policy_minimum_bandwidth_rule is disallowed by policy" in kept.stderr
    assert server.json("network", "qos", "rule", "show", "mine", rule["id"], user="rita")["min_kbps"] == 100
    hidden = server.openstack("network", "qos", "rule", "list", "mine", user="bob")
    assert hidden.returncode == 1 and "No QoSPolicy found for mine" in hidden.stderr
    assert server.openstack("network", "qos", "policy", "delete", "mine", user="alice").returncode == 0
