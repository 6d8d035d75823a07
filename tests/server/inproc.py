"""The in-process API for the server tier's tests (FastAPI's TestClient on one database): its users,
and the few calls the tests repeat (a token, an object made, a policy with a rule, a port)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient

from vmqos.api.app import create_app
from vmqos.services import identity

PASSWORD = "pw"


def auth_body(user: str, project: str) -> dict[str, Any]:
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"}, "password": PASSWORD}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}


@contextmanager
def running_api(url: str, *, readers: tuple[str, ...] = ()) -> Iterator[TestClient]:
    """The application on `url` with admin, alice (demo, member) and bob (other, member), and each of
    `readers` a reader of demo; lifespan run."""
    with identity.open_store(url) as store:
        identity.bootstrap(store, PASSWORD)
        identity.add_user(store, "alice", PASSWORD, "demo", "member")
        identity.add_user(store, "bob", PASSWORD, "other", "member")
        for reader in readers:
            identity.add_user(store, reader, PASSWORD, "demo", "reader")
    with TestClient(create_app(url), base_url="http://vq.test") as client:
        yield client


def headers(api: TestClient, user: str = "admin", project: str = "admin") -> dict[str, str]:
    response = api.post("/v3/auth/tokens", json=auth_body(user, project))
    assert response.status_code == 201, response.text
    return {"X-Auth-Token": response.headers["X-Subject-Token"]}


def made(response: Any, key: str) -> Any:
    assert response.status_code == 201, response.text
    return response.json()[key]


def policy(api: TestClient, auth: dict[str, str], name: str, kbps: int) -> str:
    """A QoS policy with one egress bandwidth-limit rule of `kbps` (burst 300 kbit); its id."""
    found = made(api.post("/v2.0/qos/policies", json={"policy": {"name": name}}, headers=auth), "policy")
    made(api.post(f"/v2.0/qos/policies/{found['id']}/bandwidth_limit_rules", headers=auth,
                  json={"bandwidth_limit_rule": {"max_kbps": kbps, "max_burst_kbps": 300}}), "bandwidth_limit_rule")
    return str(found["id"])


def port(api: TestClient, auth: dict[str, str], network: str, name: str, **attrs: Any) -> dict[str, Any]:
    body = {"port": {"network_id": network, "name": name, **attrs}}
    found: dict[str, Any] = made(api.post("/v2.0/ports", json=body, headers=auth), "port")
    return found


def add_agent(store: Any, name: str, host: str | None) -> None:
    """A service user bound to `host` (None: bound to none), with the service role on project service."""
    from vmqos.services import identity_admin as admin
    from vmqos.services.identity_admin import OPERATOR
    from vmqos.services.identity_input import read_project, read_user

    found = admin.list_projects(store, OPERATOR, name="service")
    project = found[0] if found else admin.create_project(
        store, OPERATOR, read_project({"project": {"name": "service"}}, create=True))
    body: dict[str, Any] = {"name": name, "password": PASSWORD}
    if host is not None:
        body["vmqos_host"] = host
    user = admin.create_user(store, OPERATOR, read_user({"user": body}, create=True))
    admin.grant(store, OPERATOR, project.id, user.id, admin.resolve_role(store, "service").id)


def neutron_error(response: Any, status: int, kind: str) -> str:
    """The answer is `status` with a Neutron error body of type `kind`: its message."""
    assert response.status_code == status, response.text
    body = response.json()["NeutronError"]
    assert body["type"] == kind, body
    return str(body["message"])
