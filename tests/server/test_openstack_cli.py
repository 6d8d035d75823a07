"""The seed commands of issue 14, run by the real, unmodified `openstack` CLI against `vmqos server`.

Each test checks what the client prints (-f json) and that the server refused what Neutron
refuses, with Neutron's words: a reader cannot write, another project's policy does not exist for
a project, a negative rate is Neutron's range message.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.server, pytest.mark.both_backends]


def test_policy_and_rule_lifecycle_as_the_seed_commands(server):
    created = server.json("network", "qos", "policy", "create", "bw-limiter")
    assert created["name"] == "bw-limiter" and created["rules"] == [] and created["shared"] is False
    assert created["is_default"] is False and created["revision_number"] == 1 and created["tags"] == []
    rule = server.json("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps", "3000",
                       "--max-burst-kbits", "300", "--egress", "bw-limiter")
    assert {k: rule[k] for k in ("max_kbps", "max_burst_kbps", "direction")} == \
        {"max_kbps": 3000, "max_burst_kbps": 300, "direction": "egress"}

    listed = server.json("network", "qos", "policy", "list")
    assert [(p["Name"], p["ID"]) for p in listed] == [("bw-limiter", created["id"])]
    shown = server.json("network", "qos", "policy", "show", "bw-limiter")
    assert shown["revision_number"] == 2  # a rule's change raises its policy's revision, as Neutron does
    assert shown["rules"] == [{"id": rule["id"], "max_kbps": 3000, "max_burst_kbps": 300, "direction": "egress",
                               "type": "bandwidth_limit", "qos_policy_id": created["id"]}]
    rules = server.json("network", "qos", "rule", "list", "bw-limiter")
    assert [(r["ID"], r["Type"], r["Max Kbps"], r["Max Burst Kbits"], r["Direction"]) for r in rules] == \
        [(rule["id"], "bandwidth_limit", 3000, 300, "egress")]

    assert server.openstack("network", "qos", "rule", "set", "--max-kbps", "4000", "--ingress", "bw-limiter",
                            rule["id"]).returncode == 0
    changed = server.json("network", "qos", "rule", "show", "bw-limiter", rule["id"])
    assert (changed["max_kbps"], changed["max_burst_kbps"], changed["direction"]) == (4000, 300, "ingress")
    assert server.openstack("network", "qos", "policy", "set", "--name", "bw4", "--description", "4 Mbit/s",
                            "--share", "bw-limiter").returncode == 0
    renamed = server.json("network", "qos", "policy", "show", "bw4")
    assert (renamed["description"], renamed["shared"], renamed["revision_number"]) == ("4 Mbit/s", True, 4)

    assert server.openstack("network", "qos", "rule", "delete", "bw4", rule["id"]).returncode == 0
    assert server.json("network", "qos", "policy", "show", "bw4")["rules"] == []
    assert server.openstack("network", "qos", "policy", "delete", "bw4").returncode == 0
    assert server.json("network", "qos", "policy", "list") == []


def test_a_bad_value_is_refused_with_neutrons_message(server):
    server.json("network", "qos", "policy", "create", "strict", user="alice")
    result = server.openstack("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps", "-1",
                              "strict", user="alice")
    assert result.returncode == 1
    assert "400" in result.stderr
    assert "Invalid input for max_kbps. Reason: '-1' is too small - must be at least '0'." in result.stderr
    server.json("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps", "1000", "strict",
                user="alice")
    again = server.openstack("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps", "2000",
                             "--egress", "strict", user="alice")
    assert again.returncode == 1 and "409" in again.stderr
    assert "Rule bandwidth_limit conflicts with rule" in again.stderr
    assert server.openstack("network", "qos", "policy", "delete", "strict", user="alice").returncode == 0


def test_a_reader_reads_but_cannot_write(server):
    mine = server.json("network", "qos", "policy", "create", "team", user="alice")
    assert [p["ID"] for p in server.json("network", "qos", "policy", "list", user="rita")] == [mine["id"]]
    refused = server.openstack("network", "qos", "policy", "create", "nope", user="rita")
    assert refused.returncode == 1
    assert "403" in refused.stderr and "rule:create_policy is disallowed by policy" in refused.stderr
    kept = server.openstack("network", "qos", "policy", "delete", "team", user="rita")
    assert kept.returncode == 1 and "rule:delete_policy is disallowed by policy" in kept.stderr
    no_rule = server.openstack("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps",
                               "100", "team", user="rita")
    assert no_rule.returncode == 1
    assert "rule:create_policy_bandwidth_limit_rule is disallowed by policy" in no_rule.stderr
    assert server.json("network", "qos", "policy", "show", "team", user="alice")["revision_number"] == 1
    assert server.openstack("network", "qos", "policy", "delete", "team", user="alice").returncode == 0


def test_another_projects_policy_does_not_exist_for_a_project(server):
    theirs = server.json("network", "qos", "policy", "create", "private", user="bob")
    assert server.json("network", "qos", "policy", "list", user="alice") == []
    hidden = server.openstack("network", "qos", "policy", "show", theirs["id"], user="alice")
    assert hidden.returncode == 1 and f"No QoSPolicy found for {theirs['id']}" in hidden.stderr
    gone = server.openstack("network", "qos", "policy", "delete", theirs["id"], user="alice")
    assert gone.returncode == 1
    # the admin sees every project's policies, as Neutron's admin does
    assert theirs["id"] in [p["ID"] for p in server.json("network", "qos", "policy", "list")]
    assert server.json("network", "qos", "policy", "show", "private", user="bob")["id"] == theirs["id"]
    assert server.openstack("network", "qos", "policy", "delete", "private", user="bob").returncode == 0


def test_a_wrong_password_gets_no_token(server):
    result = server.openstack("network", "qos", "policy", "list", user="alice", password="wrong")
    assert result.returncode == 1 and "The request you have made requires authentication. (HTTP 401)" in result.stderr
