"""Identity management with the real, unmodified `openstack` CLI against `vmqos server` (issue 14).

An admin runs `openstack project|user|role|role assignment|domain ...` as against Keystone; a
member gets Keystone's 403 for what only an admin may do but sees its own user and projects; a
user changes its own password; a project that still owns a QoS policy is not deleted; a service
user (an agent's, bound to a host) is refused by the Neutron API; failed logins lock a user out
for the window the server was given (its end, and the window's other rules, are proved with an
injected clock in test_identity_services.py). The server runs with `--lockout-attempts 3
--lockout-seconds 60 --token-ttl 600`: each `openstack` call takes seconds on a loaded machine, and
failures further apart than the window are forgotten. The module runs on
SQLite, as the tier's other CLI modules do (the use cases and the management API are tested on
both back ends in process: test_identity_services.py, test_identity_command.py).
"""

from __future__ import annotations

import pytest

from .conftest import ADMIN_PASSWORD, vmqos
from .serving import call, running_server, token

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def keystone(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vq-identity")
    db = f"sqlite:///{tmp / 'vmqos.db'}"
    init = vmqos("server", "init", "--admin-password", ADMIN_PASSWORD, "--db", db, cwd=tmp)
    assert init.returncode == 0, init.stderr
    with running_server(tmp, db, "--lockout-attempts", "3", "--lockout-seconds", "60", "--token-ttl", "600") as s:
        yield s


def _as(server, user: str, project: str, password: str, *args: str):
    return server.openstack(*args, user=user, project=project, password=password)


def _json(server, user: str, project: str, password: str, *args: str):
    import json

    result = _as(server, user, project, password, *args, "-f", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_an_admin_manages_projects_users_and_roles(keystone):
    s = keystone
    made = s.json("project", "create", "--description", "team one", "p-one")
    assert {k: made[k] for k in ("name", "description", "domain_id", "enabled", "is_domain", "parent_id", "tags")} \
        == {"name": "p-one", "description": "team one", "domain_id": "default", "enabled": True, "is_domain": False,
            "parent_id": "default", "tags": []}
    assert s.json("project", "show", "p-one")["id"] == made["id"]
    assert "p-one" in [p["Name"] for p in s.json("project", "list")]
    twice = s.openstack("project", "create", "p-one")
    assert twice.returncode == 1 and "409" in twice.stderr and "Duplicate entry found with name p-one" in twice.stderr
    assert s.openstack("project", "set", "--description", "team 1", "--disable", "p-one").returncode == 0
    assert (s.json("project", "show", "p-one")["description"], s.json("project", "show", "p-one")["enabled"]) == \
        ("team 1", False)
    assert s.openstack("project", "set", "--enable", "p-one").returncode == 0

    user = s.json("user", "create", "--project", "p-one", "--password", "pw-1", "--email", "u1@example.org", "u1")
    assert (user["name"], user["default_project_id"], user["email"], user["enabled"], user["domain_id"]) == \
        ("u1", made["id"], "u1@example.org", True, "default")
    assert user["password_expires_at"] is None and "password" not in user
    assert s.json("user", "show", "u1")["id"] == user["id"]
    assert "u1" in [u["Name"] for u in s.json("user", "list")]
    # a default project is no role: Keystone issues no token scoped to it until a role is given
    assert _as(s, "u1", "p-one", "pw-1", "network", "qos", "policy", "list").returncode == 1

    roles = {r["Name"]: r["ID"] for r in s.json("role", "list")}
    assert set(roles) == {"admin", "member", "reader", "service"}
    assert s.openstack("role", "add", "--user", "u1", "--project", "p-one", "member").returncode == 0
    assert _json(s, "u1", "p-one", "pw-1", "network", "qos", "policy", "list") == []
    named = s.json("role", "assignment", "list", "--user", "u1", "--names")
    assert [(a["Role"], a["User"], a["Project"], a["Inherited"]) for a in named] == \
        [("member", "u1@Default", "p-one@Default", False)]
    by_project = s.json("role", "assignment", "list", "--project", "p-one")
    assert [(a["Role"], a["User"], a["Project"]) for a in by_project] == [(roles["member"], user["id"], made["id"])]
    assert [d["Name"] for d in s.json("domain", "list")] == ["Default"]
    assert s.json("domain", "show", "Default")["id"] == "default"

    assert s.openstack("user", "set", "--password", "pw-2", "u1").returncode == 0
    assert _as(s, "u1", "p-one", "pw-1", "network", "qos", "policy", "list").returncode == 1
    assert _as(s, "u1", "p-one", "pw-2", "network", "qos", "policy", "list").returncode == 0
    assert s.openstack("role", "remove", "--user", "u1", "--project", "p-one", "member").returncode == 0
    assert s.json("role", "assignment", "list", "--user", "u1") == []
    assert _as(s, "u1", "p-one", "pw-2", "network", "qos", "policy", "list").returncode == 1
    assert s.openstack("user", "delete", "u1").returncode == 0
    assert s.openstack("project", "delete", "p-one").returncode == 0
    assert "p-one" not in [p["Name"] for p in s.json("project", "list")]


def test_a_member_gets_keystones_403_but_sees_itself(keystone):
    s = keystone
    project = s.json("project", "create", "p-two")
    me = s.json("user", "create", "--project", "p-two", "--password", "pw", "u2")
    assert s.openstack("role", "add", "--user", "u2", "--project", "p-two", "member").returncode == 0
    for args, action in ((("user", "list"), "identity:list_users"),
                         (("role", "assignment", "list"), "identity:list_role_assignments"),
                         (("project", "create", "mine"), "identity:create_project"),
                         (("role", "list"), "identity:list_roles")):
        refused = _as(s, "u2", "p-two", "pw", *args)
        assert refused.returncode == 1, args
        assert f"403" in refused.stderr and \
            f"You are not authorized to perform the requested action: {action}." in refused.stderr
    assert _json(s, "u2", "p-two", "pw", "user", "show", me["id"])["name"] == "u2"
    assert _json(s, "u2", "p-two", "pw", "project", "show", project["id"])["name"] == "p-two"
    # `project list` falls back to GET /v3/users/{own id}/projects on a 403, as against Keystone
    assert [p["Name"] for p in _json(s, "u2", "p-two", "pw", "project", "list")] == ["p-two"]
    assert _json(s, "u2", "p-two", "pw", "domain", "show", "default")["name"] == "Default"

    changed = _as(s, "u2", "p-two", "pw", "user", "password", "set", "--password", "pw-new",
                  "--original-password", "pw")
    assert changed.returncode == 0, changed.stderr
    assert _as(s, "u2", "p-two", "pw", "network", "qos", "policy", "list").returncode == 1
    assert _as(s, "u2", "p-two", "pw-new", "network", "qos", "policy", "list").returncode == 0
    wrong = _as(s, "u2", "p-two", "pw-new", "user", "password", "set", "--password", "x", "--original-password", "no")
    assert wrong.returncode == 1 and "401" in wrong.stderr


def test_a_project_that_owns_a_policy_is_not_deleted(keystone):
    s = keystone
    s.json("project", "create", "p-three")
    s.json("user", "create", "--project", "p-three", "--password", "pw", "u3")
    assert s.openstack("role", "add", "--user", "u3", "--project", "p-three", "member").returncode == 0
    _json(s, "u3", "p-three", "pw", "network", "qos", "policy", "create", "kept")
    refused = s.openstack("project", "delete", "p-three")
    assert refused.returncode == 1 and "409" in refused.stderr
    assert "still owns rows (1 in qos_policies): delete them first" in refused.stderr
    assert "p-three" in [p["Name"] for p in s.json("project", "list")]
    assert _as(s, "u3", "p-three", "pw", "network", "qos", "policy", "delete", "kept").returncode == 0
    assert s.openstack("project", "delete", "p-three").returncode == 0


def test_a_service_user_is_bound_to_a_host_and_refused_by_neutron(keystone):
    s = keystone
    made = vmqos("identity", "user", "create", "agent-h1", "--role", "service", "--host", "h1", "--password", "pw",
                 "--db", s.db, cwd=s.cwd)
    assert made.returncode == 0, made.stderr
    refused = _as(s, "agent-h1", "service", "pw", "network", "qos", "policy", "list")
    assert refused.returncode == 1 and "403" in refused.stderr
    assert "has the service role: it is no project's member" in refused.stderr
    assert _as(s, "agent-h1", "service", "pw", "network", "qos", "policy", "create", "x").returncode == 1

    admin, _ = token(s.url, "admin", ADMIN_PASSWORD, "admin")
    headers = {"X-Auth-Token": admin}
    agent_id = s.json("user", "show", "agent-h1")["id"]
    status, _, body = call("GET", f"{s.url}/v3/users/{agent_id}", headers=headers)
    assert status == 200 and body["user"]["vmqos_host"] == "h1"
    # over the API too: vmqos_host is an extra attribute, as a real Keystone keeps one
    status, _, body = call("POST", f"{s.url}/v3/users", {"user": {"name": "agent-h2", "password": "pw",
                                                                    "vmqos_host": "h2"}}, headers)
    assert status == 201 and body["user"]["vmqos_host"] == "h2"
    # a project role is never given to a host's user, nor the service role to a project's user
    status, _, body = call("GET", f"{s.url}/v3/roles?name=member", headers=headers)
    member = body["roles"][0]["id"]
    project = s.json("project", "show", "service")["id"]
    status, _, body = call("PUT", f"{s.url}/v3/projects/{project}/users/{agent_id}/roles/{member}", headers=headers)
    assert status == 409 and body["error"]["title"] == "Conflict"
    assert "is bound to host h1: it holds only the service role" in body["error"]["message"]


def test_failed_logins_lock_a_user_out(keystone):
    s = keystone
    s.json("project", "create", "p-four")
    s.json("user", "create", "--project", "p-four", "--password", "right", "u4")
    assert s.openstack("role", "add", "--user", "u4", "--project", "p-four", "reader").returncode == 0
    for _ in range(3):
        wrong = _as(s, "u4", "p-four", "wrong", "network", "qos", "policy", "list")
        assert wrong.returncode == 1 and "(HTTP 401)" in wrong.stderr
    locked = _as(s, "u4", "p-four", "right", "network", "qos", "policy", "list")
    assert locked.returncode == 1 and "The request you have made requires authentication. (HTTP 401)" in locked.stderr
    # another user is not locked out by u4's failures
    assert _as(s, "admin", "admin", ADMIN_PASSWORD, "network", "qos", "policy", "list").returncode == 0


def test_the_token_ttl_is_the_servers(keystone):
    _, body = token(keystone.url, "admin", ADMIN_PASSWORD, "admin")
    from datetime import datetime

    at = [datetime.strptime(body[k], "%Y-%m-%dT%H:%M:%S.%fZ") for k in ("issued_at", "expires_at")]
    assert (at[1] - at[0]).total_seconds() == 600
