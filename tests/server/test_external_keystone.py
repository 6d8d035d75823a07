"""`vmqos server --auth keystone`: tokens of an external Keystone, validated with keystoneauth1.

What plays the external Keystone here is another `vmqos server` (A) and its own Keystone v3 subset,
not a real Keystone: server B runs `--auth keystone --keystone-url A/v3` with a service account of
A's. A token issued by A works on B's Neutron API with A's project scoping (ids from A's token
body); B issues no token (501, naming A); a token revoked at A stops working on B once B's cached
validation ends (`--keystone-cache-seconds 1`); a service caller (roles from A) is refused by B's
Neutron API. The cache itself, the host of a service caller and a refused account are checked in
process against A, with an injected clock.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import timedelta

import pytest

from vmqos.services.authn import IdentityUnavailable, KeystoneSettings
from vmqos.services.identity import NotAuthenticated

from .conftest import ADMIN_PASSWORD, vmqos
from .serving import call, running_server, token

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vq-keystone")
    db_a, db_b = f"sqlite:///{tmp / 'a.db'}", f"sqlite:///{tmp / 'b.db'}"
    steps = [("server", "init", "--admin-password", ADMIN_PASSWORD),
             ("server", "user", "alice", "--password", "pw", "--project", "demo", "--role", "member"),
             ("server", "user", "bob", "--password", "pw", "--project", "other", "--role", "member"),
             ("identity", "user", "create", "vmqos-b", "--role", "service", "--password", "pw-b"),
             ("identity", "user", "create", "agent-h1", "--role", "service", "--host", "h1", "--password", "pw")]
    for step in steps:
        done = vmqos(*step, "--db", db_a, cwd=tmp)
        assert done.returncode == 0, done.stderr
    with running_server(tmp, db_a, name="keystone-a") as a:
        # the service account's password comes from OS_PASSWORD, as an operator's environment gives it
        with running_server(tmp, db_b, "--auth", "keystone", "--keystone-url", f"{a.url}/v3",
                            "--keystone-user", "vmqos-b", "--keystone-project", "service",
                            "--keystone-cache-seconds", "1", env={"OS_PASSWORD": "pw-b"}, name="server-b") as b:
            yield a, b


def test_a_token_of_a_works_on_b_with_as_project_scoping(servers):
    a, b = servers
    alice, body = token(a.url, "alice", "pw", "demo")
    bob, _ = token(a.url, "bob", "pw", "other")
    status, _, made = call("POST", f"{b.url}/v2.0/qos/policies", {"policy": {"name": "from-a"}},
                           {"X-Auth-Token": alice})
    assert status == 201, made
    assert made["policy"]["project_id"] == body["project"]["id"]
    _, _, mine = call("GET", f"{b.url}/v2.0/qos/policies", headers={"X-Auth-Token": alice})
    assert [p["id"] for p in mine["policies"]] == [made["policy"]["id"]]
    _, _, theirs = call("GET", f"{b.url}/v2.0/qos/policies", headers={"X-Auth-Token": bob})
    assert theirs["policies"] == []
    # the policy is B's: A's own Neutron API (its database) has none
    assert call("GET", f"{a.url}/v2.0/qos/policies", headers={"X-Auth-Token": alice})[2] == {"policies": []}


def test_the_real_openstack_cli_gets_its_token_at_a_and_talks_to_b(servers):
    a, b = servers
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env |= {"OS_AUTH_URL": f"{a.url}/v3", "OS_USERNAME": "alice", "OS_PROJECT_NAME": "demo", "OS_PASSWORD": "pw",
            "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3",
            "OS_NETWORK_ENDPOINT_OVERRIDE": f"{b.url}/v2.0", "HOME": str(b.cwd)}
    result = subprocess.run([str(b.cli), "network", "qos", "policy", "create", "via-cli", "-f", "value", "-c",
                             "project_id"], env=env, capture_output=True, text=True, timeout=60, cwd=b.cwd)
    assert result.returncode == 0, result.stderr
    _, body = token(a.url, "alice", "pw", "demo")
    assert result.stdout.strip() == body["project"]["id"]
    _, _, on_b = call("GET", f"{b.url}/v2.0/qos/policies?name=via-cli", headers={"X-Auth-Token": token(
        a.url, "alice", "pw", "demo")[0]})
    assert len(on_b["policies"]) == 1  # it went to B, not to the network endpoint of A's catalog


def test_b_issues_no_token_and_points_at_a(servers):
    a, b = servers
    status, _, body = call("POST", f"{b.url}/v3/auth/tokens", {"auth": {}})
    assert status == 501 and body["error"]["title"] == "Not Implemented"
    assert f"validates tokens with the Keystone at {a.url}/v3" in body["error"]["message"]
    alice, _ = token(a.url, "alice", "pw", "demo")
    assert call("GET", f"{b.url}/v3/projects", headers={"X-Auth-Token": alice})[0] == 501
    status, headers, body = call("GET", f"{b.url}/v2.0/qos/policies", headers={"X-Auth-Token": "not-a-token"})
    assert status == 401 and body["error"]["code"] == 401
    assert headers["WWW-Authenticate"] == f'Keystone uri="{a.url}/v3"'


def test_a_token_revoked_at_a_stops_working_on_b_after_the_cache(servers):
    a, b = servers
    alice, _ = token(a.url, "alice", "pw", "demo")
    assert call("GET", f"{b.url}/v2.0/qos/policies", headers={"X-Auth-Token": alice})[0] == 200
    revoked = call("DELETE", f"{a.url}/v3/auth/tokens", headers={"X-Auth-Token": alice, "X-Subject-Token": alice})
    assert revoked[0] == 204
    time.sleep(1.2)  # B trusts a validation for --keystone-cache-seconds 1
    assert call("GET", f"{b.url}/v2.0/qos/policies", headers={"X-Auth-Token": alice})[0] == 401


def test_a_service_caller_from_a_is_refused_by_bs_neutron_api(servers):
    a, b = servers
    agent, _ = token(a.url, "agent-h1", "pw", "service")
    status, _, body = call("GET", f"{b.url}/v2.0/qos/policies", headers={"X-Auth-Token": agent})
    assert status == 403 and body["NeutronError"]["type"] == "PolicyNotAuthorized"


class Clock:
    def __init__(self) -> None:
        from datetime import UTC, datetime

        self.now = datetime.now(UTC)

    def __call__(self):
        return self.now


def test_validations_are_cached_and_a_service_callers_host_is_read(servers):
    from vmqos.services.keystone_remote import KeystoneAuthenticator

    a, _ = servers
    clock = Clock()
    checker = KeystoneAuthenticator(KeystoneSettings(f"{a.url}/v3", "admin", ADMIN_PASSWORD, "admin",
                                                     cache_seconds=30), clock=clock)
    alice, body = token(a.url, "alice", "pw", "demo")
    caller = checker.validate(alice)
    assert (caller.user.name, caller.project.id, sorted(caller.role_names)) == \
        ("alice", body["project"]["id"], ["member"])
    call("DELETE", f"{a.url}/v3/auth/tokens", headers={"X-Auth-Token": alice, "X-Subject-Token": alice})
    assert checker.validate(alice).user.name == "alice"  # still the cached validation
    clock.now += timedelta(seconds=30)
    with pytest.raises(NotAuthenticated):
        checker.validate(alice)
    agent, _ = token(a.url, "agent-h1", "pw", "service")
    found = checker.validate(agent)
    assert (found.is_service, found.host) == (True, "h1")  # read from A's user, with an admin account
    refused = KeystoneAuthenticator(KeystoneSettings(f"{a.url}/v3", "vmqos-b", "wrong", "service"), clock=clock)
    with pytest.raises(IdentityUnavailable, match="refused this server's own account 'vmqos-b'"):
        refused.validate(agent)
