"""Networks and ports with QoS policies, driven by the real, unmodified `openstack` CLI (issue 14).

What the client prints (-f json) after each command, and Neutron's refusals in Neutron's words:
another project's port does not exist, a reader cannot write, a member cannot bind a port to a
host, a policy still attached cannot be deleted (QosPolicyInUse), a network with ports neither.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.server


def _ok(result):
    assert result.returncode == 0, result.stderr
    return result


def test_network_and_port_lifecycle_as_the_seed_commands(server):
    policy = server.json("network", "qos", "policy", "create", "net-limit")
    net = server.json("network", "create", "--qos-policy", "net-limit", "vq-net")
    assert (net["name"], net["qos_policy_id"], net["status"], net["subnets"], net["mtu"], net["shared"]) == \
        ("vq-net", policy["id"], "ACTIVE", [], 1500, False)
    assert net["revision_number"] == 1 and net["admin_state_up"] is True

    port = server.json("port", "create", "--network", "vq-net", "--host", "vqhost", "--binding-profile",
                       "device=vqdev0", "--device", "vm-1", "--device-owner", "compute:nova", "p1")
    assert (port["network_id"], port["binding_host_id"], port["binding_profile"], port["device_id"]) == \
        (net["id"], "vqhost", {"device": "vqdev0"}, "vm-1")
    assert (port["binding_vif_type"], port["binding_vif_details"], port["binding_vnic_type"]) == \
        ("tap", {"device": "vqdev0"}, "normal")
    assert (port["qos_policy_id"], port["qos_network_policy_id"]) == (None, policy["id"])
    assert port["mac_address"].startswith("fa:16:3e:") and port["fixed_ips"] == [] and port["status"] == "DOWN"
    assert port["project_id"] == net["project_id"] and port["security_group_ids"] == []

    own = server.json("network", "qos", "policy", "create", "port-limit")
    _ok(server.openstack("port", "set", "--qos-policy", "port-limit", "p1"))
    shown = server.json("port", "show", "p1")
    assert (shown["qos_policy_id"], shown["qos_network_policy_id"], shown["revision_number"]) == \
        (own["id"], policy["id"], 2)
    _ok(server.openstack("port", "unset", "--qos-policy", "p1"))
    assert server.json("port", "show", "p1")["qos_policy_id"] is None

    listed = server.json("port", "list", "--host", "vqhost")
    assert [(p["ID"], p["Name"], p["Status"]) for p in listed] == [(port["id"], "p1", "DOWN")]
    assert server.json("port", "list", "--host", "elsewhere") == []
    assert [p["Name"] for p in server.json("port", "list", "--network", "vq-net")] == ["p1"]

    _ok(server.openstack("network", "set", "--no-qos-policy", "vq-net"))
    assert server.json("port", "show", "p1")["qos_network_policy_id"] is None
    _ok(server.openstack("network", "set", "--qos-policy", "port-limit", "--name", "vq-net2", "vq-net"))
    renamed = server.json("network", "show", "vq-net2")
    assert (renamed["qos_policy_id"], renamed["revision_number"]) == (own["id"], 3)
    assert [n["Name"] for n in server.json("network", "list")] == ["vq-net2"]

    busy = server.openstack("network", "delete", "vq-net2")
    assert busy.returncode == 1 and "There are one or more ports still in use on the network" in busy.stderr
    _ok(server.openstack("port", "delete", "p1"))
    gone = server.openstack("port", "show", port["id"])
    assert gone.returncode == 1 and f"No Port found for {port['id']}" in gone.stderr
    _ok(server.openstack("network", "delete", "vq-net2"))
    _ok(server.openstack("network", "qos", "policy", "delete", "net-limit"))
    _ok(server.openstack("network", "qos", "policy", "delete", "port-limit"))


def test_the_device_is_novas_tap_name_unless_the_profile_names_one(server):
    _ok(server.openstack("network", "create", "vq-dev"))
    plain = server.json("port", "create", "--network", "vq-dev", "--host", "vqhost", "plain")
    assert plain["binding_vif_details"] == {"device": "tap" + plain["id"][:11]}
    unbound = server.json("port", "create", "--network", "vq-dev", "unbound")
    assert (unbound["binding_host_id"], unbound["binding_vif_type"], unbound["binding_vif_details"]) == \
        ("", "unbound", {})
    bad = server.openstack("port", "create", "--network", "vq-dev", "--binding-profile", "device=a/b", "bad")
    assert bad.returncode == 1 and "400" in bad.stderr
    assert "Invalid input for binding:profile. Reason: binding:profile device: 'a/b' is not valid" in bad.stderr
    for name in ("plain", "unbound"):
        _ok(server.openstack("port", "delete", name))
    _ok(server.openstack("network", "delete", "vq-dev"))


def test_a_project_sees_only_its_ports_and_a_reader_only_reads(server):
    net = server.json("network", "create", "vq-alice", user="alice")
    port = server.json("port", "create", "--network", "vq-alice", "mine", user="alice")
    assert "binding_host_id" not in port or port["binding_host_id"] is None  # an admin's attribute
    assert [p["ID"] for p in server.json("port", "list", user="alice")] == [port["id"]]
    assert server.json("port", "list", user="bob") == []
    assert server.json("network", "list", user="bob") == []
    hidden = server.openstack("port", "show", port["id"], user="bob")
    assert hidden.returncode == 1 and f"No Port found for {port['id']}" in hidden.stderr
    assert server.openstack("port", "delete", port["id"], user="bob").returncode == 1
    no_net = server.openstack("port", "create", "--network", net["id"], "theirs", user="bob")
    assert no_net.returncode == 1 and f"No Network found for {net['id']}" in no_net.stderr

    assert [p["ID"] for p in server.json("port", "list", user="rita")] == [port["id"]]
    refused = server.openstack("port", "create", "--network", "vq-alice", "nope", user="rita")
    assert refused.returncode == 1 and "rule:create_port is disallowed by policy" in refused.stderr
    kept = server.openstack("port", "set", "--name", "renamed", "mine", user="rita")
    assert kept.returncode == 1 and "rule:update_port is disallowed by policy" in kept.stderr
    no_net = server.openstack("network", "create", "nope", user="rita")
    assert no_net.returncode == 1 and "rule:create_network is disallowed by policy" in no_net.stderr

    bound = server.openstack("port", "create", "--network", "vq-alice", "--host", "vqhost", "bound", user="alice")
    assert bound.returncode == 1 and "403" in bound.stderr
    assert "(rule:create_port and rule:create_port:binding:host_id) is disallowed by policy" in bound.stderr
    shared = server.openstack("network", "create", "--share", "everyone", user="alice")
    assert "(rule:create_network and rule:create_network:shared) is disallowed by policy" in shared.stderr

    assert port["id"] in [p["ID"] for p in server.json("port", "list")]  # the admin sees every project's
    _ok(server.openstack("port", "delete", "mine", user="alice"))
    _ok(server.openstack("network", "delete", "vq-alice", user="alice"))


def test_a_shared_network_takes_other_projects_ports(server):
    net = server.json("network", "create", "--share", "vq-shared")
    assert net["shared"] is True
    assert [n["ID"] for n in server.json("network", "list", user="bob")] == [net["id"]]
    port = server.json("port", "create", "--network", "vq-shared", "bobs", user="bob")
    assert port["network_id"] == net["id"]
    changed = server.openstack("network", "set", "--name", "taken", "vq-shared", user="bob")
    assert changed.returncode == 1 and "rule:update_network is disallowed by policy" in changed.stderr
    _ok(server.openstack("port", "delete", "bobs", user="bob"))
    _ok(server.openstack("network", "delete", "vq-shared"))


def test_a_policy_the_project_may_not_use_is_not_found_and_a_shared_one_is(server):
    private = server.json("network", "qos", "policy", "create", "bob-only", user="bob")
    shared = server.json("network", "qos", "policy", "create", "--share", "bob-shared", user="bob")
    server.json("network", "create", "vq-attach", user="alice")
    server.json("port", "create", "--network", "vq-attach", "attach", user="alice")
    refused = server.openstack("port", "set", "--qos-policy", private["id"], "attach", user="alice")
    assert refused.returncode == 1 and f"No QoSPolicy found for {private['id']}" in refused.stderr
    _ok(server.openstack("port", "set", "--qos-policy", shared["id"], "attach", user="alice"))
    assert server.json("port", "show", "attach", user="alice")["qos_policy_id"] == shared["id"]
    in_use = server.openstack("network", "qos", "policy", "delete", "bob-shared", user="bob")
    assert in_use.returncode == 1 and "409" in in_use.stderr
    assert f"QoS Policy {shared['id']} is used by port" in in_use.stderr
    _ok(server.openstack("port", "delete", "attach", user="alice"))
    _ok(server.openstack("network", "set", "--qos-policy", shared["id"], "vq-attach", user="alice"))
    in_use = server.openstack("network", "qos", "policy", "delete", "bob-shared", user="bob")
    assert in_use.returncode == 1 and f"is used by network {server.json('network', 'show', 'vq-attach')['id']}" \
        in in_use.stderr
    _ok(server.openstack("network", "delete", "vq-attach", user="alice"))
    for name in ("bob-only", "bob-shared"):
        _ok(server.openstack("network", "qos", "policy", "delete", name, user="bob"))


def test_tags_and_pages_with_the_cli(server):
    net = server.json("network", "create", "--tag", "red", "--tag", "blue", "vq-tagged")  # create, then PUT tags
    assert sorted(net["tags"]) == ["blue", "red"]
    _ok(server.openstack("network", "set", "--tag", "green", "vq-tagged"))
    _ok(server.openstack("network", "unset", "--tag", "blue", "vq-tagged"))
    assert sorted(server.json("network", "show", "vq-tagged")["tags"]) == ["green", "red"]
    assert [n["Name"] for n in server.json("network", "list", "--tags", "green,red")] == ["vq-tagged"]
    assert server.json("network", "list", "--tags", "green,blue") == []
    assert [n["Name"] for n in server.json("network", "list", "--any-tags", "blue,red")] == ["vq-tagged"]
    assert server.json("network", "list", "--not-tags", "red") == []

    made = server.json("port", "create", "--network", "vq-tagged", "--tag", "web", "--tag", "db", "p-b")
    assert sorted(made["tags"]) == ["db", "web"]  # in the POST: the server lists tag-ports-during-bulk-creation
    _ok(server.openstack("port", "set", "--tag", "cache", "p-b"))
    _ok(server.openstack("port", "unset", "--tag", "db", "p-b"))
    assert sorted(server.json("port", "show", "p-b")["tags"]) == ["cache", "web"]
    for name in ("p-c", "p-a"):
        _ok(server.openstack("port", "create", "--network", "vq-tagged", name))
    assert [p["Name"] for p in server.json("port", "list", "--tags", "web", "--long")] == ["p-b"]
    # a page of one port at a time: the client follows the ports_links Neutron's way until a short page
    paged = server.json("port", "list", "--network", "vq-tagged", "--limit", "1", "--sort-column", "Name",
                        "--sort-descending")
    assert [p["Name"] for p in paged] == ["p-c", "p-b", "p-a"]
    assert len(server.json("port", "list", "--limit", "2", "--max-items", "2")) == 2
    unknown = server.openstack("network", "list", "--external")  # router:external: no such extension here
    assert unknown.returncode == 1 and "['router:external'] is invalid attribute for filtering" in unknown.stderr
    for name in ("p-a", "p-b", "p-c"):
        _ok(server.openstack("port", "delete", name))
    _ok(server.openstack("network", "delete", "vq-tagged"))
