"""A caller with the `service` role (a host's agent) gets 403 from every Nova and Cinder route, as from Neutron's.

The agent's account is no project's member: flavors, QoS specs, volume types and volumes are not
its to read or change, whatever project its token is scoped to. Every route of the compute and
volume routers that takes a caller is called with an agent's token (the routes are read from the
routers, so a route added later is covered too) and answers 403 in Nova's and Cinder's fault body;
the admin's objects are unchanged after; a project member is not refused on the same routes;
the version documents still need no token. In process, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from vmqos.api import compute, volume, volume_volumes
from vmqos.api.app import create_app
from vmqos.services import identity
from vmqos.services import identity_admin as admin
from vmqos.services.identity_admin import OPERATOR
from vmqos.services.identity_input import read_project, read_user

pytestmark = pytest.mark.server
REFUSED = "has the service role: it is no project's member and may not use the"


def _auth(user: str, project: str) -> dict[str, Any]:
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"}, "password": "pw"}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}


@pytest.fixture()
def api(db_url):
    with identity.open_store(db_url) as store:
        identity.bootstrap(store, "pw")
        identity.add_user(store, "alice", "pw", "demo", "member")
        project = admin.create_project(store, OPERATOR, read_project({"project": {"name": "service"}}, create=True))
        agent = admin.create_user(store, OPERATOR, read_user({"user": {"name": "agent-h1", "password": "pw",
                                                                        "vmqos_host": "h1"}}, create=True))
        admin.grant(store, OPERATOR, project.id, agent.id, admin.resolve_role(store, "service").id)
    with TestClient(create_app(db_url), base_url="http://vq.test") as client:
        yield client


def _login(api: TestClient, user: str, project: str) -> tuple[dict[str, str], str]:
    response = api.post("/v3/auth/tokens", json=_auth(user, project))
    assert response.status_code == 201, response.text
    return {"X-Auth-Token": response.headers["X-Subject-Token"]}, response.json()["token"]["project"]["id"]


def _routes_with_a_caller() -> list[tuple[str, str]]:
    found = []
    for router in (compute.router, volume.router, volume_volumes.router):
        for route in router.routes:
            assert isinstance(route, APIRoute)
            if {d.call for d in route.dependant.dependencies} & {compute.caller, volume.caller}:
                found += [(method, route.path) for method in sorted(route.methods)]
    return found


def _made_by_the_admin(api: TestClient) -> dict[str, str]:
    headers, project = _login(api, "admin", "admin")
    flavor = api.post("/compute/v2.1/flavors", headers=headers, json={"flavor": {
        "name": "m1.kept", "ram": 512, "vcpus": 1, "disk": 1}}).json()["flavor"]["id"]
    assert api.post(f"/compute/v2.1/flavors/{flavor}/os-extra_specs", headers=headers, json={
        "extra_specs": {"quota:vif_inbound_average": "1000"}}).status_code == 200
    v3 = f"/volume/v3/{project}"
    spec = api.post(f"{v3}/qos-specs", headers=headers, json={"qos_specs": {
        "name": "kept", "consumer": "front-end", "read_iops_sec": "100"}}).json()["qos_specs"]["id"]
    vtype = api.post(f"{v3}/types", headers=headers, json={"volume_type": {"name": "kept"}}).json()["volume_type"]["id"]
    made = api.post(f"{v3}/volumes", headers=headers, json={"volume": {"size": 1, "name": "kept"}})
    assert made.status_code == 202, made.text
    return {"flavor_id": flavor, "key": "quota:vif_inbound_average", "spec_id": spec, "type_id": vtype,
            "volume_id": made.json()["volume"]["id"], "admin_project": project}


def _snapshot(api: TestClient, ids: dict[str, str]) -> Any:
    headers, project = _login(api, "admin", "admin")
    v3 = f"/volume/v3/{project}"
    return [api.get(path, headers=headers).json() for path in (
        "/compute/v2.1/flavors/detail", f"/compute/v2.1/flavors/{ids['flavor_id']}/os-extra_specs",
        f"{v3}/qos-specs", f"{v3}/types", f"{v3}/volumes/detail")]


def _bodies(method: str) -> dict[str, Any]:
    """A plausible body for a write, so that only the caller can be the reason for a refusal."""
    return {"json": {"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": 0}}} if method in ("POST", "PUT") else {}


def test_every_nova_and_cinder_route_refuses_a_service_caller(api):
    ids = _made_by_the_admin(api)
    before = _snapshot(api, ids)
    agent, agent_project = _login(api, "agent-h1", "service")
    routes = _routes_with_a_caller()
    assert len(routes) >= 39, routes  # 13 Nova and 26 Cinder routes when written: the routers were read
    for method, template in routes:
        # the agent's own token project in the URL, and another project's: 403 either way, before anything
        for project in (agent_project, ids["admin_project"]):
            path = re.sub(r"\{(\w+)\}", lambda m: project if m[1] == "project_id" else ids[m[1]], template)
            answer = api.request(method, path, headers=agent, **_bodies(method))
            assert answer.status_code == 403, (method, path, answer.text)
            body = answer.json()
            assert list(body) == ["forbidden"] and body["forbidden"]["code"] == 403, (method, path, body)
            service = "Nova" if template.startswith("/compute") else "Cinder"
            assert body["forbidden"]["message"] == (f"user agent-h1 {REFUSED} {service} API (an agent reads its "
                                                    "host's state from vmqos's own API)"), (method, path, body)
    assert _snapshot(api, ids) == before
    # Neutron says the same in its own body; the version documents need no token at all
    neutron = api.get("/v2.0/qos/policies", headers=agent)
    assert neutron.status_code == 403 and neutron.json()["NeutronError"]["type"] == "PolicyNotAuthorized"
    assert REFUSED in neutron.json()["NeutronError"]["message"]
    assert api.get("/compute/v2.1").status_code == 200 and api.get("/volume/").status_code == 300


def test_a_project_member_is_not_refused_as_a_service(api):
    ids = _made_by_the_admin(api)
    member, project = _login(api, "alice", "demo")
    for method, template in _routes_with_a_caller():
        if method != "GET":
            continue
        path = re.sub(r"\{(\w+)\}", lambda m: project if m[1] == "project_id" else ids[m[1]], template)
        answer = api.request(method, path, headers=member)
        assert REFUSED not in answer.text, (method, path, answer.text)
    assert api.get("/compute/v2.1/flavors", headers=member).status_code == 200
    assert api.get(f"/volume/v3/{project}/volumes", headers=member).status_code == 200
