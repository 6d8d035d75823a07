"""Neutron's QoS API over HTTP, in process (FastAPI's TestClient): what the CLI does not send or does
not show — the error bodies, the qos-rules-alias routes, filters, sorting and pagination links,
tags, RBAC's 400/403/404/409 — and the services the port slice calls (`attachable`, usages)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi.testclient import TestClient

from vmqos.api.app import create_app
from vmqos.services import identity, policies
from vmqos.store import qos as records

pytestmark = pytest.mark.server
BASE = "/v2.0/qos/policies"


@pytest.fixture()
def api(db_url):  # on SQLite and on PostgreSQL (tests/pgcluster.py)
    url = db_url
    with identity.open_store(url) as store:
        identity.bootstrap(store, "pw")
        for user, project, role in (("alice", "demo", "member"), ("rita", "demo", "reader"),
                                    ("bob", "other", "member")):
            identity.add_user(store, user, "pw", project, role)
    with TestClient(create_app(url), base_url="http://vq.test") as client:
        yield client


def _headers(api, user: str = "admin", project: str | None = None) -> dict[str, str]:
    project = project or {"admin": "admin", "alice": "demo", "rita": "demo", "bob": "other"}[user]
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"}, "password": "pw"}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
    response = api.post("/v3/auth/tokens", json=body)
    assert response.status_code == 201, response.text
    return {"X-Auth-Token": response.headers["X-Subject-Token"]}


def _policy(api, headers, name: str, **values) -> dict:
    response = api.post(BASE, json={"policy": {"name": name, **values}}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["policy"]


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"NeutronError"} and set(body["NeutronError"]) == {"type", "message", "detail"}
    return body["NeutronError"]


def test_alias_routes_show_change_and_delete_a_rule_by_its_id(api):
    alice, bob = _headers(api, "alice"), _headers(api, "bob")
    policy = _policy(api, alice, "aliased", shared=True)
    dscp = api.post(f"{BASE}/{policy['id']}/dscp_marking_rules", json={"dscp_marking_rule": {"dscp_mark": 26}},
                    headers=alice).json()["dscp_marking_rule"]
    path = f"/v2.0/qos/alias_dscp_marking_rules/{dscp['id']}"
    assert api.get(path, headers=alice).json() == {"alias_dscp_marking_rule": {"id": dscp["id"], "dscp_mark": 26}}
    changed = api.put(path, json={"alias_dscp_marking_rule": {"dscp_mark": 34}}, headers=alice)
    assert changed.json() == {"alias_dscp_marking_rule": {"id": dscp["id"], "dscp_mark": 34}}
    read_only = api.put(path, json={"alias_dscp_marking_rule": {"tenant_id": "x"}}, headers=alice)
    assert _error(read_only, 400)["message"] == "Cannot update read-only attribute tenant_id"
    wrong_key = api.put(path, json={"dscp_marking_rule": {"dscp_mark": 34}}, headers=alice)
    assert _error(wrong_key, 400)["message"] == "Unable to find 'alias_dscp_marking_rule' in request body"
    # shared with bob: the policy is his to see, its rules alone are not (Neutron's parent-owner rules)
    assert _error(api.get(path, headers=bob), 404) == {"type": "HTTPNotFound", "detail": "",
                                                         "message": "The resource could not be found."}
    assert _error(api.delete(path, headers=bob), 404)["type"] == "HTTPNotFound"
    wrong_type = api.get(f"/v2.0/qos/alias_bandwidth_limit_rules/{dscp['id']}", headers=alice)
    assert _error(wrong_type, 404) == {"type": "QosRuleNotFound", "detail": "",
                                       "message": f"QoS rule {dscp['id']} for policy  could not be found."}
    minpps = api.post(f"{BASE}/{policy['id']}/minimum_packet_rate_rules",
                      json={"minimum_packet_rate_rule": {"min_kpps": 3, "direction": "any"}}, headers=alice)
    alias = f"/v2.0/qos/alias_minimum_packet_rate_rules/{minpps.json()['minimum_packet_rate_rule']['id']}"
    assert api.get(alias, headers=alice).json()["alias_minimum_packet_rate_rule"]["direction"] == "any"
    assert api.delete(path, headers=alice).status_code == 204
    assert api.get(f"{BASE}/{policy['id']}", headers=alice).json()["policy"]["revision_number"] == 5


def test_every_rule_type_is_stored_as_the_vmqos_model_reads_it(api):
    alice = _headers(api, "alice")
    policy = _policy(api, alice, "all-types")
    for rtype, values in (("bandwidth_limit", {"max_kbps": 8000, "max_burst_kbps": 800, "direction": "ingress"}),
                          ("packet_rate_limit", {"max_kpps": 10, "max_burst_kpps": 2}),
                          ("dscp_marking", {"dscp_mark": 46}),
                          ("minimum_bandwidth", {"min_kbps": 2000, "direction": "ingress"}),
                          ("minimum_packet_rate", {"min_kpps": 4})):
        made = api.post(f"{BASE}/{policy['id']}/{rtype}_rules", json={f"{rtype}_rule": values}, headers=alice)
        assert made.status_code == 201, made.text
        assert {k: made.json()[f"{rtype}_rule"][k] for k in values} == values
    model = policies.as_policy(records.list_policies(api.app.state.store, policy["id"])[0])
    qos = model.qos
    assert (qos.ingress.bandwidth.rate_bps, qos.ingress.bandwidth.burst_bytes, qos.ingress.min_bps) == \
        (8_000_000, 100_000, 2_000_000)
    assert (qos.egress.packet_rate.pps, qos.egress.packet_rate.burst_packets, qos.egress.dscp, qos.egress.min_pps) == \
        (10_000, 2_000, 46, 4_000)
    # Neutron's range takes max_kpps 0; the vmqos model cannot enforce a limit of no packets and says so
    zero = api.post(f"{BASE}/{policy['id']}/packet_rate_limit_rules",
                    json={"packet_rate_limit_rule": {"max_kpps": 0, "direction": "ingress"}}, headers=alice)
    assert "max_kpps" in _error(zero, 400)["message"]
    # min_kbps above the max_kbps of the same direction, from either side (QoSRuleParameterConflict)
    rules = f"{BASE}/{policy['id']}/bandwidth_limit_rules"
    limit_id = api.get(rules, headers=alice).json()["bandwidth_limit_rules"][0]["id"]
    low = api.put(f"{rules}/{limit_id}", json={"bandwidth_limit_rule": {"max_kbps": 1000}}, headers=alice)
    assert _error(low, 409)["type"] == "QoSRuleParameterConflict"
    filtered = api.get(f"{BASE}/{policy['id']}/minimum_bandwidth_rules", params={"direction": "egress"},
                       headers=alice)
    assert filtered.json() == {"minimum_bandwidth_rules": []}
    unknown = api.get(f"{BASE}/{policy['id']}/minimum_bandwidth_rules", params={"qos_policy_id": "x"},
                      headers=alice)
    assert _error(unknown, 400)["message"] == "['qos_policy_id'] is invalid attribute for filtering"


def test_filters_sorting_and_pagination_as_neutron(api):
    admin = _headers(api)
    made = [_policy(api, admin, name, description="d" if i % 2 else "") for i, name in
            enumerate(("delta", "alpha", "echo", "bravo", "charlie"))]
    by_name = api.get(BASE, params={"sort_key": "name", "sort_dir": "desc", "fields": "name"}, headers=admin).json()
    assert by_name == {"policies": [{"name": n} for n in ("echo", "delta", "charlie", "bravo", "alpha")]}
    assert [p["name"] for p in api.get(BASE, params=[("description", "d")], headers=admin).json()["policies"]] == \
        sorted(["alpha", "bravo"], key=lambda n: next(p["id"] for p in made if p["name"] == n))

    first = api.get(BASE, params=[("sort_key", "name"), ("sort_dir", "asc"), ("limit", "2")], headers=admin).json()
    assert [p["name"] for p in first["policies"]] == ["alpha", "bravo"]
    links = {link["rel"]: link["href"] for link in first["policies_links"]}
    assert set(links) == {"next", "previous"}  # Neutron gives a previous link even on the first page
    nxt = urlsplit(links["next"])
    assert nxt.scheme == "http" and nxt.netloc == "vq.test" and nxt.path == BASE
    assert parse_qsl(nxt.query) == [("sort_key", "name"), ("sort_dir", "asc"), ("limit", "2"),
                                    ("marker", first["policies"][-1]["id"])]
    second = api.get(f"{nxt.path}?{nxt.query}", headers=admin).json()
    assert [p["name"] for p in second["policies"]] == ["charlie", "delta"]
    third = api.get(BASE, params=dict(parse_qsl(urlsplit(
        {x["rel"]: x["href"] for x in second["policies_links"]}["next"]).query)), headers=admin).json()
    assert [p["name"] for p in third["policies"]] == ["echo"]
    assert [x["rel"] for x in third["policies_links"]] == ["previous"]  # a short page has no next
    back = api.get(BASE, params=dict(parse_qsl(urlsplit(third["policies_links"][0]["href"]).query)),
                   headers=admin).json()
    assert [p["name"] for p in back["policies"]] == ["charlie", "delta"]
    assert ("page_reverse", "True") in parse_qsl(urlsplit(third["policies_links"][0]["href"]).query)

    errors = (({"colour": "red"}, "HTTPBadRequest", "['colour'] is invalid attribute for filtering"),
              ({"sort_key": "created_at", "sort_dir": "asc"}, "HTTPBadRequest",
               "['created_at'] is invalid attribute for sort_keys"),
              ({"sort_key": "name"}, "HTTPBadRequest", "The number of sort_keys and sort_dirs must be same"),
              ({"sort_key": "name", "sort_dir": "up"}, "HTTPBadRequest",
               "['up'] is invalid value for sort_dirs, valid value is 'asc' and 'desc'"),
              ({"limit": "-1"}, "BadRequest", "Bad limit request: Limit must be an integer 0 or greater and not '-1'."),
              ({"shared": "maybe"}, "InvalidInput", "Invalid input for operation: 'maybe' cannot be converted to "
                                                    "boolean."))
    for query, kind, message in errors:
        assert _error(api.get(BASE, params=query, headers=admin), 400) == \
            {"type": kind, "message": message, "detail": ""}


def test_tags_and_tag_filters(api):
    alice, bob = _headers(api, "alice"), _headers(api, "bob")
    red = _policy(api, alice, "red")
    blue = _policy(api, alice, "blue")
    in_body = api.post(BASE, json={"policy": {"name": "x", "tags": ["a"]}}, headers=alice)
    assert _error(in_body, 400)["message"] == "Attribute 'tags' not allowed in POST"
    assert api.put(f"{BASE}/{red['id']}/tags", json={"tags": ["red", "warm"]}, headers=alice).json() == \
        {"tags": ["red", "warm"]}
    one = api.put(f"/v2.0/policies/{blue['id']}/tags/cold", headers=alice)  # Neutron's own path, the SDK's set_tags
    assert one.status_code == 201 and one.json() is None
    assert api.post(f"{BASE}/{blue['id']}/tags", json={"tags": ["blue", "cold"]}, headers=alice).status_code == 201
    assert api.get(f"/v2.0/policies/{blue['id']}/tags", headers=alice).json() == {"tags": ["cold", "blue"]}
    assert api.get(f"{BASE}/{red['id']}/tags/warm", headers=alice).status_code == 204
    assert _error(api.get(f"{BASE}/{red['id']}/tags/cold", headers=alice), 404) == \
        {"type": "TagNotFound", "message": "Tag cold could not be found.", "detail": ""}
    dup = api.put(f"{BASE}/{red['id']}/tags", json={"tags": ["a", "a"]}, headers=alice)
    assert _error(dup, 400)["message"] == "Invalid input for operation: Duplicate items in the list: 'a'."
    too_many = api.put(f"{BASE}/{red['id']}/tags", json={"tags": [str(i) for i in range(51)]}, headers=alice)
    assert _error(too_many, 400)["message"] == \
        "Bad policies request: The number of tags exceed the per-resource limit of 50."
    assert _error(api.put(f"{BASE}/{red['id']}/tags", json={"tag": []}, headers=alice), 400)["message"] == \
        "Invalid input for operation: Invalid tags body."
    assert _error(api.get(f"{BASE}/{red['id']}/tags", headers=bob), 404)["type"] == "QosPolicyNotFound"
    shown = api.get(f"{BASE}/{red['id']}", headers=alice).json()["policy"]
    assert (shown["tags"], shown["revision_number"]) == (["red", "warm"], 2)

    def names(**query: str) -> list[str]:
        return sorted(p["name"] for p in api.get(BASE, params=query, headers=alice).json()["policies"])

    assert names(tags="red,warm") == ["red"]
    assert names(**{"tags-any": "warm,cold"}) == ["blue", "red"]
    assert names(**{"not-tags": "cold,blue"}) == ["red"]
    assert names(**{"not-tags-any": "warm"}) == ["blue"]
    assert api.delete(f"{BASE}/{blue['id']}/tags/cold", headers=alice).status_code == 204
    assert api.delete(f"{BASE}/{red['id']}/tags", headers=alice).status_code == 204
    assert names(**{"tags-any": "warm,cold"}) == []


def test_rbac_over_http_and_what_the_port_slice_calls(api):
    store = api.app.state.store
    alice, bob, admin = _headers(api, "alice"), _headers(api, "bob"), _headers(api)
    policy = _policy(api, alice, "lend")
    private = _policy(api, alice, "keep")
    bob_caller = identity.validate(store, bob["X-Auth-Token"])
    bob_project = bob_caller.project.id

    def rbac(body: dict, headers: dict = alice):
        return api.post("/v2.0/rbac-policies", json={"rbac_policy": body}, headers=headers)

    entry = {"object_type": "qos_policy", "object_id": policy["id"], "action": "access_as_shared",
             "target_tenant": bob_project}
    assert _error(rbac(entry | {"action": "access_as_external"}), 400) == {
        "type": "InvalidActionForType", "detail": "",
        "message": "Invalid action 'access_as_external' for object type 'qos_policy'. "
                   "Valid actions: ('access_as_shared',)"}
    assert _error(rbac(entry | {"object_type": "network"}), 400)["message"] == \
        "Invalid input for operation: 'network' is not a valid RBAC object type."
    assert _error(rbac(entry | {"object_id": "nope"}), 400)["message"] == \
        "Invalid input for object_id. Reason: 'nope' is not a valid UUID."
    made = rbac(entry).json()["rbac_policy"]
    assert made == {**entry, "id": made["id"], "project_id": policy["project_id"], "tenant_id": policy["project_id"]}
    assert _error(api.get(f"/v2.0/rbac-policies/{made['id']}", headers=bob), 404) == {
        "type": "RbacPolicyNotFound", "detail": "",
        "message": f"RBAC policy of type unknown with ID {made['id']} not found"}

    # the port slice's question: may this caller attach this policy?
    assert policies.attachable(store, bob_caller, policy["id"]).id == policy["id"]
    with pytest.raises(policies.NeutronError) as refused:
        policies.attachable(store, bob_caller, private["id"])
    assert (refused.value.http_status, refused.value.type) == (404, "QosPolicyNotFound")
    assert policies.attachable(store, identity.validate(store, admin["X-Auth-Token"]), private["id"])

    # once bob's port uses it, neither the entry nor the policy can go
    network = api.post("/v2.0/networks", json={"network": {"name": "bob-net"}}, headers=bob).json()["network"]
    port = api.post("/v2.0/ports", json={"port": {"network_id": network["id"], "qos_policy_id": policy["id"]}},
                    headers=bob)
    assert port.status_code == 201, port.text
    port_id = port.json()["port"]["id"]
    in_use = api.delete(f"/v2.0/rbac-policies/{made['id']}", headers=alice)
    assert _error(in_use, 409) == {"type": "RbacPolicyInUse", "detail": "", "message":
                                   f"RBAC policy on object {policy['id']} cannot be removed because other "
                                   f"objects depend on it.\nDetails: project_id={bob_project}"}
    used = api.delete(f"{BASE}/{policy['id']}", headers=alice)
    assert _error(used, 409)["message"] == f"QoS Policy {policy['id']} is used by port {port_id}."
    retarget = api.put(f"/v2.0/rbac-policies/{made['id']}", json={"rbac_policy": {"target_tenant": "0" * 32}},
                       headers=alice)
    assert _error(retarget, 409)["type"] == "RbacPolicyInUse"
    assert api.delete(f"/v2.0/ports/{port_id}", headers=bob).status_code == 204
    moved = api.put(f"/v2.0/rbac-policies/{made['id']}", json={"rbac_policy": {"target_tenant": "0" * 32}},
                    headers=alice)
    assert moved.json()["rbac_policy"]["target_tenant"] == "0" * 32
    assert _error(api.get(f"{BASE}/{policy['id']}", headers=bob), 404)["type"] == "QosPolicyNotFound"
    listed = api.get("/v2.0/rbac-policies", params={"object_id": policy["id"], "limit": "1"}, headers=alice).json()
    assert [e["id"] for e in listed["rbac_policies"]] == [made["id"]] and "rbac_policies_links" in listed
    assert api.delete(f"/v2.0/rbac-policies/{made['id']}", headers=alice).status_code == 204


def test_discovery_lists_every_extension_implemented(api):
    aliases = {e["alias"] for e in api.get("/v2.0/extensions", headers=_headers(api)).json()["extensions"]}
    assert aliases == {"qos", "qos-bw-limit-direction", "qos-bw-minimum-ingress", "qos-default", "qos-pps",
                       "qos-pps-minimum", "qos-pps-minimum-rule-alias", "qos-rule-type-details",
                       "qos-rule-type-filter", "qos-rules-alias", "rbac-policies", "project-id",
                       "standard-attr-description", "standard-attr-revisions", "standard-attr-tag",
                       "standard-attr-timestamp", "tag-creation", "sorting", "pagination", "filter-validation",
                       "binding", "qos-port-network-policy", "net-mtu", "tag-ports-during-bulk-creation"}
    spec = api.get("/openapi.json").json()["paths"]
    assert {"/v2.0/qos/alias_bandwidth_limit_rules/{rule_id}", "/v2.0/rbac-policies/{entry_id}",
            "/v2.0/qos/rule-types/{rule_type}", "/v2.0/qos/policies/{policy_id}/packet_rate_limit_rules"} <= set(spec)
