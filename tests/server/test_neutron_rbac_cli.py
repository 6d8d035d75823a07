"""Sharing a QoS policy with another project through RBAC, with the real `openstack` CLI.

A target project sees the shared policy (its `shared` is true for it) and may attach it, but never
changes it: 403 on the policy, "not found" on its rules alone, as Neutron's default policies answer;
it does not see the RBAC entry either. Only the owner (or an admin) shares; only an admin shares
with every project ('*').
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.server


def _columns(rows: list[dict]) -> dict[str, dict]:
    return {row["ID"]: row for row in rows}


def test_sharing_a_policy_with_another_project(server):
    policy = server.json("network", "qos", "policy", "create", "team-bw", user="alice")
    rule = server.json("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps", "2000",
                       "team-bw", user="alice")
    hidden = server.openstack("network", "qos", "policy", "show", policy["id"], user="bob")
    assert hidden.returncode == 1 and f"No QoSPolicy found for {policy['id']}" in hidden.stderr

    # A member may not look projects up in Keystone (403): the client passes the name on, Neutron refuses it.
    by_name = server.openstack("network", "rbac", "create", "--target-project", "other", "--action",
                               "access_as_shared", "--type", "qos_policy", "team-bw", user="alice")
    assert by_name.returncode == 1
    assert "'other' is not a valid target project ID; expected a UUID or '*'" in by_name.stderr
    other = server.json("project", "show", "other")  # an admin may
    assert other["name"] == "other"
    entry = server.json("network", "rbac", "create", "--target-project", other["id"], "--action", "access_as_shared",
                        "--type", "qos_policy", "team-bw", user="alice")
    assert {k: entry[k] for k in ("action", "object_id", "object_type", "target_project_id")} == \
        {"action": "access_as_shared", "object_id": policy["id"], "object_type": "qos_policy",
         "target_project_id": other["id"]}
    assert entry["project_id"] == policy["project_id"]
    assert list(_columns(server.json("network", "rbac", "list", user="alice"))) == [entry["id"]]
    assert server.json("network", "rbac", "show", entry["id"], user="alice")["object_id"] == policy["id"]
    assert list(_columns(server.json("network", "rbac", "list", user="rita"))) == [entry["id"]]  # a reader reads

    # bob sees the policy, shared with his project, and changes nothing of it
    seen = _columns(server.json("network", "qos", "policy", "list", user="bob"))
    assert seen[policy["id"]]["Shared"] is True
    assert server.json("network", "qos", "policy", "show", "team-bw", user="bob")["rules"][0]["id"] == rule["id"]
    assert server.json("network", "qos", "policy", "show", "team-bw", user="alice")["shared"] is False
    renamed = server.openstack("network", "qos", "policy", "set", "--name", "mine-now", "team-bw", user="bob")
    assert renamed.returncode == 1 and "rule:update_policy is disallowed by policy" in renamed.stderr
    deleted = server.openstack("network", "qos", "policy", "delete", "team-bw", user="bob")
    assert deleted.returncode == 1
    added = server.openstack("network", "qos", "rule", "create", "--type", "dscp-marking", "--dscp-mark", "8",
                             "team-bw", user="bob")
    assert added.returncode == 1 and "rule:create_policy_dscp_marking_rule is disallowed by policy" in added.stderr
    changed = server.openstack("network", "qos", "rule", "set", "--max-kbps", "9999", "team-bw", rule["id"], user="bob")
    # the rule alone is "not found" for bob (404), so the client's find comes back empty
    assert changed.returncode == 1 and "Request requires an ID but none was found" in changed.stderr
    assert server.json("network", "qos", "rule", "show", "team-bw", rule["id"], user="alice")["max_kbps"] == 2000
    assert server.json("network", "rbac", "list", user="bob") == []
    not_his = server.openstack("network", "rbac", "show", entry["id"], user="bob")
    assert not_his.returncode == 1
    reshare = server.openstack("network", "rbac", "create", "--target-project", other["id"], "--action",
                               "access_as_shared", "--type", "qos_policy", "team-bw", user="bob")
    assert reshare.returncode == 1
    assert "Only admins can manipulate policies on objects they do not own" in reshare.stderr

    # retargeted to another project, the policy leaves bob's sight; set back, it returns
    admin_project = server.json("project", "show", "admin")["id"]
    assert server.openstack("network", "rbac", "set", "--target-project", admin_project, entry["id"],
                            user="alice").returncode == 0
    assert server.json("network", "qos", "policy", "list", user="bob") == []
    assert server.openstack("network", "rbac", "set", "--target-project", other["id"], entry["id"],
                            user="alice").returncode == 0
    assert server.json("network", "rbac", "show", entry["id"], user="alice")["target_project_id"] == other["id"]

    # the same entry twice is a conflict; a reader shares nothing; only an admin shares with everyone
    twice = server.openstack("network", "rbac", "create", "--target-project", other["id"], "--action",
                             "access_as_shared", "--type", "qos_policy", "team-bw", user="alice")
    assert twice.returncode == 1 and "An RBAC policy already exists with those values." in twice.stderr
    reader = server.openstack("network", "rbac", "create", "--target-project", other["id"], "--action",
                              "access_as_shared", "--type", "qos_policy", "team-bw", user="rita")
    assert reader.returncode == 1 and "rule:create_rbac_policy is disallowed by policy" in reader.stderr
    everyone = server.openstack("network", "rbac", "create", "--target-all-projects", "--action", "access_as_shared",
                                "--type", "qos_policy", "team-bw", user="alice")
    assert everyone.returncode == 1 and "rule:create_rbac_policy:target_tenant is disallowed by policy" in \
        everyone.stderr
    wildcard = server.json("network", "rbac", "create", "--target-all-projects", "--action", "access_as_shared",
                           "--type", "qos_policy", "team-bw")
    assert wildcard["target_project_id"] == "*"
    assert server.json("network", "qos", "policy", "show", "team-bw", user="alice")["shared"] is True
    assert server.openstack("network", "qos", "policy", "set", "--no-share", "team-bw", user="alice").returncode == 0
    assert wildcard["id"] not in _columns(server.json("network", "rbac", "list"))

    # removing the entry hides the policy from bob again
    assert server.openstack("network", "rbac", "delete", entry["id"], user="alice").returncode == 0
    assert server.json("network", "qos", "policy", "list", user="bob") == []
    gone = server.openstack("network", "qos", "policy", "show", policy["id"], user="bob")
    assert gone.returncode == 1 and "No QoSPolicy found" in gone.stderr
    assert server.openstack("network", "qos", "policy", "delete", "team-bw", user="alice").returncode == 0
