"""Networks and ports list as Neutron lists them, and carry tags, over HTTP in process (FastAPI's TestClient).

What `/v2.0/extensions` announces for them: filter-validation (a filter that is not one of the
resource's `is_filter` attributes is a 400 naming it), sorting and pagination (`sort_key`/`sort_dir`,
`limit`/`marker`/`page_reverse` and the `*_links`), standard-attr-tag and tag-creation (the tag
routes, the 50-tag limit, the tag filters), tag-ports-during-bulk-creation (a port's tags in its POST).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.server.test_neutron_http import _error, _headers, api  # noqa: F401 (api is a fixture)

pytestmark = pytest.mark.server
NETWORKS, PORTS = "/v2.0/networks", "/v2.0/ports"


def _made(response, key: str) -> dict:
    assert response.status_code == 201, response.text
    return response.json()[key]


def _network(api, headers, name: str, **values) -> dict:
    return _made(api.post(NETWORKS, json={"network": {"name": name, **values}}, headers=headers), "network")


def _port(api, headers, network: str, name: str, **values) -> dict:
    return _made(api.post(PORTS, json={"port": {"network_id": network, "name": name, **values}}, headers=headers),
                 "port")


def _names(api, path: str, headers, **query) -> list[str]:
    """The names listed, in the answer's order (by id unless the query sorts: the primary key is the last
    sort key, as Neutron's native pagination makes it)."""
    response = api.get(path, params=query, headers=headers)
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()[path.rsplit("/", 1)[1]]]


def test_filters_are_validated_and_converted_as_neutron_does(api):
    admin = _headers(api)
    net = _network(api, admin, "n", description="lab")
    up = _port(api, admin, net["id"], "up", mac_address="FA:16:3E:00:00:01", **{"binding:host_id": "h1"})
    _port(api, admin, net["id"], "down", admin_state_up=False)
    refused = ((NETWORKS, {"colour": "red"}, "HTTPBadRequest", "['colour'] is invalid attribute for filtering"),
               (NETWORKS, {"qos_policy_id": net["id"]}, "HTTPBadRequest",
                "['qos_policy_id'] is invalid attribute for filtering"),  # neutron-lib's qos.py: not is_filter
               (PORTS, {"binding:profile": "x"}, "HTTPBadRequest",
                "['binding:profile'] is invalid attribute for filtering"),
               (PORTS, {"shared": "true"}, "HTTPBadRequest", "['shared'] is invalid attribute for filtering"),
               (NETWORKS, {"shared": "maybe"}, "InvalidInput",
                "Invalid input for operation: 'maybe' cannot be converted to boolean."),
               (PORTS, {"fixed_ips": "10.0.0.1"}, "InvalidInput",
                "Invalid input for operation: '10.0.0.1' is not of the form <key>=[value]."),
               (PORTS, {"sort_key": "binding:host_id", "sort_dir": "asc"}, "HTTPBadRequest",
                "['binding:host_id'] is invalid attribute for sort_keys"),
               (NETWORKS, {"sort_key": "shared", "sort_dir": "asc"}, "HTTPBadRequest",
                "['shared'] is invalid attribute for sort_keys"),
               (PORTS, {"limit": "x"}, "BadRequest",
                "Bad limit request: Limit must be an integer 0 or greater and not 'x'."))
    for path, query, kind, message in refused:
        assert _error(api.get(path, params=query, headers=admin), 400) == \
            {"type": kind, "message": message, "detail": ""}, (path, query)

    assert _names(api, PORTS, admin, admin_state_up="False") == ["down"]
    assert _names(api, PORTS, admin, mac_address="fa-16-3e-00-00-01") == ["up"]  # sanitized, as convert_to does
    assert _names(api, PORTS, admin, **{"binding:host_id": "h1"}) == ["up"]
    assert _names(api, PORTS, admin, fixed_ips="ip_address=10.0.0.1") == []  # no port has an address here
    assert _names(api, PORTS, admin, security_groups=net["id"]) == []
    assert _names(api, PORTS, admin, network_id=net["id"], status="DOWN", revision_number="1", sort_key="name",
                  sort_dir="desc") == ["up", "down"]
    assert _names(api, PORTS, admin, revision_number="one") == []
    assert _names(api, NETWORKS, admin, mtu="1500", description="lab", shared="false") == ["n"]
    assert _names(api, NETWORKS, admin, mtu="9000") == []
    assert _names(api, NETWORKS, admin, name=["n", "m"], status="ACTIVE") == ["n"]  # twice: either value
    assert api.get(PORTS, params={"fields": "name", "id": up["id"]}, headers=admin).json() == \
        {"ports": [{"name": "up"}]}


def test_a_member_filters_on_the_binding_but_is_never_shown_it(api):
    admin, alice = _headers(api), _headers(api, "alice")
    net = _network(api, alice, "n")
    bound = _port(api, admin, net["id"], "bound", project_id=net["project_id"], **{"binding:host_id": "h1"})
    listed = api.get(PORTS, params=[("binding:host_id", "h1"), ("fields", "id"), ("fields", "binding:host_id")],
                     headers=alice).json()
    assert listed == {"ports": [{"id": bound["id"]}]}
    shown = api.get(PORTS, params={"fields": "binding:host_id"}, headers=admin).json()
    assert shown == {"ports": [{"binding:host_id": "h1"}]}


def test_networks_and_ports_sort_and_page_with_neutrons_links(api):
    admin = _headers(api)
    for name in ("delta", "alpha", "echo", "bravo", "charlie"):
        _network(api, admin, name, admin_state_up=name != "echo")
    assert _names(api, NETWORKS, admin, sort_key="name", sort_dir="desc") == \
        ["echo", "delta", "charlie", "bravo", "alpha"]
    by_state = api.get(NETWORKS, params=[("sort_key", "admin_state_up"), ("sort_dir", "asc"), ("sort_key", "name"),
                                         ("sort_dir", "desc")], headers=admin).json()
    assert [n["name"] for n in by_state["networks"]] == ["echo", "delta", "charlie", "bravo", "alpha"]

    first = api.get(NETWORKS, params=[("sort_key", "name"), ("sort_dir", "asc"), ("limit", "2")], headers=admin).json()
    assert [n["name"] for n in first["networks"]] == ["alpha", "bravo"]
    links = {link["rel"]: link["href"] for link in first["networks_links"]}
    assert set(links) == {"next", "previous"}
    nxt = urlsplit(links["next"])
    assert (nxt.scheme, nxt.netloc, nxt.path) == ("http", "vq.test", NETWORKS)
    assert parse_qsl(nxt.query) == [("sort_key", "name"), ("sort_dir", "asc"), ("limit", "2"),
                                    ("marker", first["networks"][-1]["id"])]
    second = api.get(f"{nxt.path}?{nxt.query}", headers=admin).json()
    assert [n["name"] for n in second["networks"]] == ["charlie", "delta"]
    last = api.get(NETWORKS, params=dict(parse_qsl(urlsplit(
        {x["rel"]: x["href"] for x in second["networks_links"]}["next"]).query)), headers=admin).json()
    assert [n["name"] for n in last["networks"]] == ["echo"]
    assert [x["rel"] for x in last["networks_links"]] == ["previous"]  # a short forward page has no next
    back = urlsplit(last["networks_links"][0]["href"])
    assert ("page_reverse", "True") in parse_qsl(back.query)
    assert [n["name"] for n in api.get(f"{back.path}?{back.query}", headers=admin).json()["networks"]] == \
        ["charlie", "delta"]

    net = api.get(NETWORKS, params={"name": "alpha"}, headers=admin).json()["networks"][0]
    ports = [_port(api, admin, net["id"], name, device_owner=owner)
             for name, owner in (("p2", "compute:nova"), ("p1", "network:dhcp"), ("p3", "compute:nova"))]
    paged = api.get(PORTS, params=[("sort_key", "device_owner"), ("sort_dir", "asc"), ("sort_key", "name"),
                                   ("sort_dir", "asc"), ("limit", "2")], headers=admin).json()
    assert [p["name"] for p in paged["ports"]] == ["p2", "p3"]
    marker = dict(parse_qsl(urlsplit({x["rel"]: x["href"] for x in paged["ports_links"]}["next"]).query))["marker"]
    assert marker == next(p["id"] for p in ports if p["name"] == "p3")
    rest = api.get(PORTS, params=[("sort_key", "device_owner"), ("sort_dir", "asc"), ("sort_key", "name"),
                                  ("sort_dir", "asc"), ("limit", "2"), ("marker", marker)], headers=admin).json()
    assert [p["name"] for p in rest["ports"]] == ["p1"]
    assert "ports_links" not in api.get(PORTS, headers=admin).json()  # not paged: no links


def test_tags_on_networks_and_ports(api):
    admin, alice, rita, bob = (_headers(api, user) for user in ("admin", "alice", "rita", "bob"))
    refused = api.post(NETWORKS, json={"network": {"name": "x", "tags": ["a"]}}, headers=alice)
    assert _error(refused, 400)["message"] == "Attribute 'tags' not allowed in POST"
    net = _network(api, alice, "tagged")
    assert net["tags"] == []
    base = f"{NETWORKS}/{net['id']}/tags"
    assert api.put(base, json={"tags": ["red", "warm"]}, headers=alice).json() == {"tags": ["red", "warm"]}
    added = api.put(f"{base}/cold", headers=alice)
    assert (added.status_code, added.json()) == (201, None)
    assert api.post(base, json={"tags": ["cold", "blue"]}, headers=alice).status_code == 201
    assert api.get(base, headers=alice).json() == {"tags": ["red", "warm", "cold", "blue"]}
    assert api.get(f"{base}/warm", headers=alice).status_code == 204
    assert _error(api.get(f"{base}/green", headers=alice), 404)["type"] == "TagNotFound"
    assert api.delete(f"{base}/warm", headers=alice).status_code == 204
    shown = api.get(f"{NETWORKS}/{net['id']}", headers=alice).json()["network"]
    assert (shown["tags"], shown["revision_number"]) == (["red", "cold", "blue"], 5)  # each change is a revision
    too_many = api.put(base, json={"tags": [str(i) for i in range(51)]}, headers=alice)
    assert _error(too_many, 400)["message"] == \
        "Bad networks request: The number of tags exceed the per-resource limit of 50."
    assert _error(api.get(base, headers=bob), 404)["type"] == "NetworkNotFound"
    assert _error(api.put(f"{base}/x", headers=rita), 403)["message"] == \
        "rule:update_network:tags is disallowed by policy"

    shared = _network(api, admin, "everyone", shared=True)
    assert api.get(f"{NETWORKS}/{shared['id']}/tags", headers=bob).json() == {"tags": []}
    assert _error(api.delete(f"{NETWORKS}/{shared['id']}/tags", headers=bob), 403)["message"] == \
        "rule:delete_network:tags is disallowed by policy"

    port = _port(api, alice, net["id"], "p", tags=["web", "db"])  # tag-ports-during-bulk-creation
    assert (port["tags"], port["revision_number"]) == (["web", "db"], 1)
    for body, message in (({"tags": ["a", "a"]}, "Invalid input for tags. Reason: Duplicate items in the list: 'a'."),
                          ({"tags": [str(i) for i in range(51)]},
                           "Bad ports request: The number of tags exceed the per-resource limit of 50.")):
        made = api.post(PORTS, json={"port": {"network_id": net["id"], **body}}, headers=alice)
        assert _error(made, 400)["message"] == message
    changed = api.put(f"{PORTS}/{port['id']}", json={"port": {"tags": []}}, headers=alice)
    assert _error(changed, 400)["message"] == "Cannot update read-only attribute tags"
    ports = f"{PORTS}/{port['id']}/tags"
    assert api.put(f"{ports}/cache", headers=alice).status_code == 201
    assert api.get(ports, headers=alice).json() == {"tags": ["web", "db", "cache"]}
    assert _error(api.get(ports, headers=bob), 404)["type"] == "PortNotFound"
    assert api.delete(ports, headers=alice).status_code == 204
    assert api.get(f"{PORTS}/{port['id']}", headers=alice).json()["port"]["tags"] == []
    assert api.put(ports, json={"tags": ["web"]}, headers=alice).status_code == 200
    _port(api, alice, net["id"], "q", tags=["db"])

    assert _names(api, NETWORKS, alice, tags="red,blue") == ["tagged"]
    assert _names(api, NETWORKS, alice, tags=["red", "warm"]) == []
    assert _names(api, NETWORKS, admin, **{"not-tags-any": "red"}) == ["everyone"]
    assert sorted(_names(api, PORTS, alice, **{"tags-any": "web,db"})) == ["p", "q"]
    assert _names(api, PORTS, alice, **{"not-tags": "web"}) == ["q"]
