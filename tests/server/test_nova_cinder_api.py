"""Nova and Cinder in process (FastAPI's TestClient): what the openstack CLI never sends.

Version documents, the legacy Nova header, a body that is not JSON, paging with flavors_links,
2.55's description update, and Keystone's project reads that clients use to name a project.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from vmqos.api.app import create_app
from vmqos.services import identity

pytestmark = pytest.mark.server


def _auth(user: str, project: str) -> dict:
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"}, "password": "pw"}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}


@pytest.fixture()
def api(db_url):  # on SQLite and on PostgreSQL (tests/pgcluster.py)
    url = db_url
    with identity.open_store(url) as store:
        identity.bootstrap(store, "pw")
        identity.add_user(store, "rita", "pw", "demo", "reader")
    with TestClient(create_app(url), base_url="http://vq.test") as client:
        yield client


def _login(api, user="admin", project="admin") -> tuple[dict, str]:
    response = api.post("/v3/auth/tokens", json=_auth(user, project))
    return {"X-Auth-Token": response.headers["X-Subject-Token"]}, response.json()["token"]["project"]["id"]


def test_version_documents_and_headers(api):
    nova = api.get("/compute/v2.1").json()["version"]
    assert (nova["id"], nova["min_version"], nova["version"]) == ("v2.1", "2.1", "2.102")
    cinder = api.get("/volume/")
    assert cinder.status_code == 300  # Cinder's unversioned root: Multiple Choices
    assert [(v["id"], v["min_version"], v["version"]) for v in cinder.json()["versions"]] == [("v3.0", "3.0", "3.66")]
    assert cinder.json()["versions"][0]["links"][-1] == {"rel": "self", "href": "http://vq.test/volume/v3/"}
    headers, _ = _login(api)
    legacy = api.get("/compute/v2.1/flavors", headers={**headers, "X-OpenStack-Nova-API-Version": "2.55"})
    assert legacy.headers["X-OpenStack-Nova-API-Version"] == "2.55"
    assert legacy.headers["OpenStack-API-Version"] == "compute 2.55"


def test_malformed_bodies_paging_and_the_description(api):
    headers, project = _login(api)
    assert api.post("/compute/v2.1/flavors", headers=headers, content=b"{not json").json() == \
        {"badRequest": {"code": 400, "message": "Malformed request body"}}
    assert api.post(f"/volume/v3/{project}/qos-specs", headers=headers, content=b"[").json() == \
        {"badRequest": {"code": 400, "message": "Malformed request body"}}
    at255 = {**headers, "OpenStack-API-Version": "compute 2.55"}
    for n in range(3):
        made = api.post("/compute/v2.1/flavors", headers=at255, json={"flavor": {
            "name": f"f{n}", "ram": "512", "vcpus": 1, "disk": 0, "id": f"id{n}", "description": "d"}})
        assert made.status_code == 200 and made.json()["flavor"]["description"] == "d"
    page = api.get("/compute/v2.1/flavors?limit=2", headers=at255).json()
    assert [f["id"] for f in page["flavors"]] == ["id0", "id1"]
    assert page["flavors_links"] == [{"rel": "next", "href": "http://vq.test/compute/v2.1/flavors?limit=2&marker=id1"}]
    assert [f["id"] for f in api.get("/compute/v2.1/flavors?marker=id1", headers=at255).json()["flavors"]] == ["id2"]
    assert api.get("/compute/v2.1/flavors?marker=nope", headers=at255).json() == \
        {"badRequest": {"code": 400, "message": "marker [nope] not found"}}
    # PUT exists from 2.55 on; before, Nova answers as if there were no such method
    assert api.put("/compute/v2.1/flavors/id0", headers=headers, json={"flavor": {"description": "x"}}).status_code == 404
    changed = api.put("/compute/v2.1/flavors/id0", headers=at255, json={"flavor": {"description": "new"}})
    assert changed.json()["flavor"]["description"] == "new"


def test_project_reads_as_keystone_answers_them(api):
    admin, _ = _login(api)
    demo = api.get("/v3/projects?name=demo", headers=admin).json()["projects"]
    assert [p["name"] for p in demo] == ["demo"]
    reader, project = _login(api, "rita", "demo")
    assert api.get(f"/v3/projects/{project}", headers=reader).json()["project"]["name"] == "demo"
    refused = api.get("/v3/projects", headers=reader)
    assert refused.status_code == 403 and refused.json()["error"]["message"] == \
        "You are not authorized to perform the requested action: identity:list_projects."
    assert api.get("/v3/projects/nope", headers=admin).json()["error"]["code"] == 404
