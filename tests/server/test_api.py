"""The API in process (FastAPI's TestClient): the Keystone token lifecycle, Neutron's error bodies,
fields=, filters and the OpenAPI document; the openstack CLI tests cover what the client sends."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from vmqos.api.app import create_app
from vmqos.services import identity

pytestmark = pytest.mark.server


def _auth(user: str, password: str, project: str) -> dict:
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}


@pytest.fixture()
def api(db_url):  # on SQLite and on PostgreSQL (tests/pgcluster.py)
    with identity.open_store(db_url) as store:
        identity.bootstrap(store, "pw")
        identity.add_user(store, "rita", "pw", "demo", "reader")
    with TestClient(create_app(db_url), base_url="http://vq.test") as client:
        yield client


def _token(api, user="admin", project="admin") -> str:
    response = api.post("/v3/auth/tokens", json=_auth(user, "pw", project))
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"]


def test_a_token_names_the_caller_and_the_catalog_and_can_be_revoked(api):
    response = api.post("/v3/auth/tokens", json=_auth("admin", "pw", "admin"))
    token, body = response.headers["X-Subject-Token"], response.json()["token"]
    assert body["user"]["name"] == "admin" and body["project"]["name"] == "admin"
    assert [r["name"] for r in body["roles"]] == ["admin"]
    assert {(s["type"], s["endpoints"][0]["url"]) for s in body["catalog"]} == \
        {("identity", "http://vq.test/v3"), ("network", "http://vq.test"), ("compute", "http://vq.test/compute/v2.1"),
         ("volumev3", f"http://vq.test/volume/v3/{body['project']['id']}")}
    issued = datetime.strptime(body["issued_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ") - issued == timedelta(hours=1)
    headers = {"X-Auth-Token": token, "X-Subject-Token": token}
    assert api.get("/v3/auth/tokens", headers=headers).json()["token"]["audit_ids"] == body["audit_ids"]
    assert api.head("/v3/auth/tokens", headers=headers).status_code == 200
    assert api.delete("/v3/auth/tokens", headers=headers).status_code == 204
    refused = api.get("/v2.0/qos/policies", headers={"X-Auth-Token": token})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == 401


def test_tokens_are_stored_only_hashed_and_expire(api, tmp_path):
    token = _token(api)
    store = api.app.state.store
    caller = identity.validate(store, token)
    with pytest.raises(identity.NotAuthenticated):
        identity.validate(store, token, now=caller.expires_at)
    with store._tx("test") as conn:
        stored = conn.exec_driver_sql("SELECT digest FROM identity_tokens").scalars().all()
    assert token not in stored and len(stored) == 1
    with store._tx("test") as conn:
        hashes = conn.exec_driver_sql("SELECT password_hash FROM identity_users").scalars().all()
    assert all(h.startswith("$argon2id$") for h in hashes)


def test_wrong_password_and_unknown_user_are_the_same_401(api):
    for user, password in (("admin", "bad"), ("nobody", "pw")):
        response = api.post("/v3/auth/tokens", json=_auth(user, password, "admin"))
        assert response.status_code == 401
        assert response.json() == {"error": {"code": 401, "title": "Unauthorized",
                                              "message": "The request you have made requires authentication."}}


def test_neutron_error_bodies_fields_and_filters(api):
    headers = {"X-Auth-Token": _token(api)}
    base = "/v2.0/qos/policies"
    made = api.post(base, json={"policy": {"name": "a", "is_default": "true"}}, headers=headers).json()["policy"]
    assert made["is_default"] is True
    second = api.post(base, json={"policy": {"name": "b", "is_default": True}}, headers=headers)
    assert second.status_code == 409
    assert second.json()["NeutronError"]["type"] == "QoSPolicyDefaultAlreadyExists"
    unknown = api.post(base, json={"policy": {"name": "c", "colour": "red"}}, headers=headers)
    assert unknown.status_code == 400 and unknown.json() == {"NeutronError": {
        "type": "HTTPBadRequest", "message": "Unrecognized attribute(s) 'colour'", "detail": ""}}
    rules = f"{base}/{made['id']}/bandwidth_limit_rules"
    bad = api.post(rules, json={"bandwidth_limit_rule": {"max_kbps": 10, "direction": "Egress"}}, headers=headers)
    assert bad.json()["NeutronError"]["message"] == "Invalid input for direction. Reason: Egress is not in valid_values."
    word = api.post(rules, json={"bandwidth_limit_rule": {"max_kbps": "ten"}}, headers=headers)
    assert word.json()["NeutronError"] == {"type": "InvalidInput", "detail": "",
                                          "message": "Invalid input for operation: 'ten' is not an integer."}
    missing = api.get(f"{base}/nope", headers=headers)
    assert missing.status_code == 404 and missing.json()["NeutronError"]["type"] == "QosPolicyNotFound"
    only = api.get(base, params=[("name", "a"), ("fields", "id"), ("fields", "name")], headers=headers).json()
    assert only == {"policies": [{"id": made["id"], "name": "a"}]}
    assert api.get(base, params={"name": "zzz"}, headers=headers).json() == {"policies": []}
    assert api.get(base, params={"is_default": "False"}, headers=headers).json() == {"policies": []}


def test_openapi_and_discovery(api):
    spec = api.get("/openapi.json").json()
    assert "/v2.0/qos/policies/{policy_id}/bandwidth_limit_rules/{rule_id}" in spec["paths"]
    assert "/v3/auth/tokens" in spec["paths"]
    versions = api.get("/").json()["versions"]
    assert [(v["id"], v["links"][0]["href"]) for v in versions] == \
        [("v2.0", "http://vq.test/v2.0/"), ("v3.14", "http://vq.test/v3/")]
    ext = api.get("/v2.0/extensions", headers={"X-Auth-Token": _token(api)}).json()["extensions"]
    assert {"qos", "qos-bw-limit-direction", "qos-default"} <= {e["alias"] for e in ext}


def test_a_stored_policy_is_the_vmqos_models_and_a_stale_write_is_refused(api):
    from vmqos.core.errors import ConflictError
    from vmqos.services import policies
    from vmqos.store import qos

    headers = {"X-Auth-Token": _token(api)}
    made = api.post("/v2.0/qos/policies", json={"policy": {"name": "m"}}, headers=headers).json()["policy"]
    api.post(f"/v2.0/qos/policies/{made['id']}/bandwidth_limit_rules",
             json={"bandwidth_limit_rule": {"max_kbps": 3000, "max_burst_kbps": 300}}, headers=headers)
    store = api.app.state.store
    stored = qos.list_policies(store, made["id"])[0]
    policy = policies.as_policy(stored)
    assert (policy.origin, policy.qos.egress.bandwidth.rate_bps, policy.qos.egress.bandwidth.burst_bytes) == \
        ("neutron", 3_000_000, 37_500)
    assert policy.qos.ingress.bandwidth is None
    with pytest.raises(ConflictError, match="changed or deleted by another request"):
        qos.save_policy(store, stored, replaces=stored.revision_number - 1)


def test_bootstrap_is_idempotent_and_sets_the_password(db_url):
    with identity.open_store(db_url) as store:
        first = identity.bootstrap(store, "one")
        second = identity.bootstrap(store, "two")
        assert first.id == second.id
        with pytest.raises(identity.NotAuthenticated):
            identity.authenticate(store, {"name": "admin"}, "one", {"name": "admin"})
        caller = identity.authenticate(store, {"name": "admin"}, "two", {"name": "admin"}).caller
        assert [r.name for r in caller.roles] == ["admin"] and caller.project.name == "admin"
        with pytest.raises(identity.NotAuthenticated):  # another domain than Default has no users
            identity.authenticate(store, {"name": "admin", "domain": {"name": "Other"}}, "two", {"name": "admin"})


def test_a_nul_anywhere_is_refused_in_the_services_shape_not_a_500(api):
    """PostgreSQL's text holds no NUL: an id, a filter or a body with one never reaches the store."""
    headers = {"X-Auth-Token": _token(api)}
    missing = api.get("/v2.0/qos/policies/ab%00cd", headers=headers)
    assert missing.status_code == 404 and missing.json()["NeutronError"]["type"] == "HTTPNotFound"
    project = api.get("/v3/projects/ab%00cd", headers=headers)
    assert project.status_code == 404 and project.json()["error"]["code"] == 404
    flavor = api.get("/compute/v2.1/flavors/ab%00cd", headers=headers)
    assert flavor.status_code == 404 and flavor.json()["itemNotFound"]["code"] == 404
    filtered = api.get("/v2.0/qos/policies", params={"name": "a\x00b"}, headers=headers)
    assert filtered.status_code == 400 and "NUL" in filtered.json()["NeutronError"]["message"]
    body = api.post("/v2.0/qos/policies", content=b'{"policy": {"name": "a\\u0000b"}}',
                    headers=headers | {"Content-Type": "application/json"})
    assert body.status_code == 400 and "NUL" in body.json()["NeutronError"]["message"]
    assert api.get("/v2.0/qos/policies", headers=headers).json()["policies"] == []
