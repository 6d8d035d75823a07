"""The native API's objects (issue 14) in process, on SQLite and PostgreSQL: vmqos's typed policies, a port's
conditional write (ETag / If-Match, 412), its effective QoS with sources, volumes with their disk QoS, and the
events' long poll. One in-process application per test (no server process); about 1 s per test and back end.
"""

from __future__ import annotations

import pytest

from .inproc import add_agent, headers, made, policy, port, running_api
from .inproc import neutron_error as _error

pytestmark = pytest.mark.server


@pytest.fixture()
def api(db_url):  # on SQLite and on PostgreSQL (tests/pgcluster.py)
    with running_api(db_url, readers=("rita",)) as client:
        add_agent(client.app.state.store, "agent-h1", "h1")
        client.db_url = db_url
        yield client


GOLD = {"name": "gold", "description": "web first", "qos": {
    "ingress": {"bandwidth": {"rate_bps": 10_000_000, "peak_bps": 20_000_000, "burst_bytes": 65_536}},
    "egress": {"bandwidth": {"rate_bps": 5_000_000},
               "packet_rate": {"pps": 2000, "burst_packets": 100}, "dscp": 26,
               "classes": [{"name": "web", "share_percent": 60, "match": {"protocol": "tcp", "ports": [80, 443]}},
                           {"name": "rest", "share_percent": 40}]}}}


def test_a_port_write_is_conditional_on_the_etag_it_read(api):
    admin = headers(api)
    body = {"policy": {"ingress": {"rate": "20mbit"}}}
    path = "/v1/hosts/h1/ports/vq-c"
    first = api.put(path, json=body, headers=admin | {"If-None-Match": "*"})
    assert first.status_code == 200, first.text
    revision = first.json()["port"]["desired_revision"]
    assert first.headers["ETag"] == f'"{revision}"' == api.get(path, headers=admin).headers["ETag"]
    # a second creator read 404 too: it must not overwrite the first one's limits
    assert "If-None-Match" in _error(api.put(path, json=body, headers=admin | {"If-None-Match": "*"}), 412,
                                     "PreconditionFailed")
    # two writers read `revision`; the first one's write moves it, the second one's is refused, not lost
    one = api.put(path, json={"policy": {"ingress": {"rate": "30mbit"}}}, headers=admin | {"If-Match": f'"{revision}"'})
    assert one.status_code == 200, one.text
    stale = api.put(path, json={"policy": {"egress": {"rate": "1mbit"}}}, headers=admin | {"If-Match": f'"{revision}"'})
    assert f"not {revision} as read" in _error(stale, 412, "PreconditionFailed")
    assert api.get(path, headers=admin).json()["port"]["policy"] == {"ingress": {"rate": "30mbit"}}
    assert "If-Match" in _error(api.put(path, json=body, headers=admin | {"If-Match": "soon"}), 400, "InvalidValue")
    unconditional = api.put(path, json=body, headers=admin)  # without a header: as before, last writer wins
    assert unconditional.status_code == 200 and unconditional.headers["ETag"] != one.headers["ETag"]


def test_policies_in_vmqos_typed_form_are_read_written_and_checked(api):
    admin, alice = headers(api), headers(api, "alice", "demo")
    bob, rita = headers(api, "bob", "other"), headers(api, "rita", "demo")
    neutron_id = policy(api, alice, "bw-limiter", 3000)
    created = api.post("/v1/policies", json=GOLD, headers=alice)
    assert created.status_code == 201, created.text
    gold = created.json()["policy"]
    assert (gold["origin"], gold["revision"], created.headers["ETag"]) == ("vmqos", 1, '"1"')
    assert gold["qos"]["ingress"]["bandwidth"] == {"rate_bps": 10_000_000, "peak_bps": 20_000_000,
                                                   "burst_bytes": 65_536}
    assert [c["name"] for c in gold["qos"]["egress"]["classes"]] == ["web", "rest"]
    assert gold["qos"]["egress"]["classes"][0]["match"] == {"protocol": "tcp", "ports": [80, 443], "dscp": None}
    listed = {p["name"]: p for p in api.get("/v1/policies", headers=alice).json()["policies"]}
    assert listed["gold"] == gold
    assert listed["bw-limiter"]["origin"] == "neutron" and listed["bw-limiter"]["id"] == neutron_id
    assert listed["bw-limiter"]["qos"]["egress"]["bandwidth"] == {"rate_bps": 3_000_000, "peak_bps": None,
                                                                  "burst_bytes": 37_500}

    # the model's refusals: 422, naming the field, the value and the fix
    low_peak = {**GOLD, "qos": {"ingress": {"bandwidth": {"rate_bps": 10_000_000, "peak_bps": 1_000_000}}}}
    message = _error(api.post("/v1/policies", json=low_peak, headers=alice), 422, "PolicyInvalid")
    assert message.startswith("qos.ingress: peak") and "1000000" in message and "raise peak" in message
    shares = {**GOLD, "qos": {"egress": {"bandwidth": {"rate_bps": 1000}, "classes": [
        {"name": "a", "share_percent": 70, "match": {"protocol": "udp"}}, {"name": "b", "share_percent": 50}]}}}
    assert "120 %" in _error(api.post("/v1/policies", json=shares, headers=alice), 422, "PolicyInvalid")
    shape = {**GOLD, "qos": {"egress": {"bandwidth": {"rate_bps": "fast"}}}}
    message = _error(api.post("/v1/policies", json=shape, headers=alice), 422, "PolicyInvalid")
    assert "qos.egress.bandwidth.rate_bps" in message and "'fast'" in message
    assert "policy name" in _error(api.post("/v1/policies", json={**GOLD, "name": "a\tb"}, headers=alice), 422,
                                   "PolicyInvalid")

    # a conditional replace: the stale revision is refused, the current one wins
    path = f"/v1/policies/{gold['id']}"
    slower = {**GOLD, "qos": {"egress": {"bandwidth": {"rate_bps": 1_000_000}}}}
    replaced = api.put(path, json=slower, headers=alice | {"If-Match": '"1"'})
    assert replaced.status_code == 200 and replaced.json()["policy"]["revision"] == 2, replaced.text
    assert "not 1 as read" in _error(api.put(path, json=GOLD, headers=alice | {"If-Match": '"1"'}), 412,
                                     "PreconditionFailed")
    assert api.get(path, headers=alice).json()["policy"]["qos"]["egress"]["bandwidth"]["rate_bps"] == 1_000_000
    assert "Neutron policy" in _error(api.put(f"/v1/policies/{neutron_id}", json=GOLD, headers=alice), 409,
                                      "ConflictError")
    assert "already" in _error(api.post("/v1/policies", json=slower, headers=alice), 409, "ConflictError")

    # projects and roles: another project sees nothing of it, a reader cannot write, an admin sees all
    _error(api.get(path, headers=bob), 404, "NotFound")
    assert api.get("/v1/policies", headers=bob).json() == {"policies": []}
    assert api.get(path, headers=rita).status_code == 200
    _error(api.put(path, json=GOLD, headers=rita), 403, "Forbidden")
    assert gold["id"] in {p["id"] for p in api.get("/v1/policies", headers=admin).json()["policies"]}
    assert api.delete(path, headers=alice | {"If-Match": '"2"'}).status_code == 204
    _error(api.get(path, headers=alice), 404, "NotFound")


def test_a_ports_effective_qos_combines_its_policy_and_its_instances_flavor_with_sources(api):
    admin, agent = headers(api), headers(api, "agent-h1", "service")
    p3 = policy(api, admin, "p3", 3000)  # egress 3 Mbit/s, burst 300 kbit
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n", "qos_policy_id": p3}}, headers=admin),
               "network")
    vm = port(api, admin, net["id"], "a", **{"binding:host_id": "h1", "device_id": "vm-1"})  # its network's policy
    tap = "tap" + vm["id"][:11]
    flavor = api.post("/compute/v2.1/flavors", headers=admin, json={"flavor": {
        "name": "m1.resquota", "ram": 512, "vcpus": 1, "disk": 1}})
    assert flavor.status_code == 200, flavor.text
    specs = api.post(f"/compute/v2.1/flavors/{flavor.json()['flavor']['id']}/os-extra_specs", headers=admin,
                     json={"extra_specs": {"quota:vif_outbound_average": "250",  # 250 kB/s = 2 Mbit/s
                                           "quota:vif_inbound_average": "1000"}})
    assert specs.status_code == 200, specs.text
    path = f"/v1/hosts/h1/ports/{tap}/effective"
    before = api.get(path, headers=admin).json()["effective"]
    assert (before["flavor"], before["sources"]) == (None, [f"network {net['id']} policy {p3}"])
    assert before["egress"]["rate_bps"] == {"value": 3_000_000, "source": f"network {net['id']} policy {p3}"}

    inventory = {"domains": [{"name": "instance-1", "nova": {"instance_uuid": "vm-1", "flavor": "m1.resquota",
                                                             "port_ids": [vm["id"]]}}]}
    assert api.put("/v1/hosts/h1", json={"agent_version": "t", "inventory": inventory},
                   headers=agent).status_code == 200
    after = api.get(path, headers=admin).json()["effective"]
    assert after["flavor"] == "m1.resquota" and after["sources"][1] == "flavor m1.resquota"
    assert after["egress"]["rate_bps"] == {"value": 2_000_000, "source": "flavor m1.resquota"}  # the lower wins
    assert after["egress"]["burst_bytes"]["source"] == f"network {net['id']} policy {p3}"
    assert after["ingress"]["rate_bps"] == {"value": 8_000_000, "source": "flavor m1.resquota"}
    assert after["qos"]["egress"]["bandwidth"]["rate_bps"] == 2_000_000
    _error(api.get(path, headers=headers(api, "bob", "other")), 404, "NotFound")


def test_volumes_show_the_disk_qos_their_type_puts_on_the_host(api):
    admin, alice, bob = headers(api), headers(api, "alice", "demo"), headers(api, "bob", "other")

    def project(auth: dict) -> str:
        return str(api.get("/v3/auth/tokens", headers=auth | {"X-Subject-Token": auth["X-Auth-Token"]})
                   .json()["token"]["project"]["id"])

    base = f"/volume/v3/{project(admin)}"
    spec = api.post(f"{base}/qos-specs", headers=admin, json={"qos_specs": {
        "name": "per-gb", "consumer": "front-end", "total_iops_sec_per_gb": "30", "read_bytes_sec": "10485760"}})
    vtype = api.post(f"{base}/types", headers=admin, json={"volume_type": {"name": "per-gb"}})
    tid = vtype.json()["volume_type"]["id"]
    assert api.get(f"{base}/qos-specs/{spec.json()['qos_specs']['id']}/associate?vol_type_id={tid}",
                   headers=admin).status_code == 202
    mine = api.post(f"/volume/v3/{project(alice)}/volumes", headers=alice,
                    json={"volume": {"size": 10, "volume_type": "per-gb", "name": "data"}})
    assert mine.status_code == 202, mine.text
    vid = mine.json()["volume"]["id"]
    shown = api.get(f"/v1/volumes/{vid}", headers=alice).json()["volume"]
    assert (shown["name"], shown["size_gb"], shown["consumer"]) == ("data", 10, "front-end")
    assert shown["disk"] == {"total_iops_sec": 300, "read_bytes_sec": 10_485_760}
    assert [v["id"] for v in api.get("/v1/volumes", headers=alice).json()["volumes"]] == [vid]
    assert api.get("/v1/volumes", headers=bob).json() == {"volumes": []}
    assert api.get(f"/v1/volumes/{vid}", headers=bob).status_code == 404
    assert vid in {v["id"] for v in api.get("/v1/volumes", params={"all_projects": True},
                                            headers=admin).json()["volumes"]}


def test_the_events_long_poll_answers_what_came_after_the_last_id(api):
    admin, agent = headers(api), headers(api, "agent-h1", "service")
    api.put("/v1/hosts/h1", json={"agent_version": "t"}, headers=agent).raise_for_status()
    assert api.get("/v1/events/changes", params={"after": 0, "wait": 0.2}, headers=admin).json() == {"events": []}
    report = {"events": [{"device": "vq-e", "at": "2026-12-07T01:00:00Z", "kind": "flood", "message": str(i)}
                         for i in range(3)]}
    api.post("/v1/hosts/h1/reports", json=report, headers=agent).raise_for_status()
    first = api.get("/v1/events/changes", params={"after": 0, "limit": 2}, headers=admin).json()["events"]
    assert [e["message"] for e in first] == ["0", "1"]  # oldest first, as a follower prints them
    rest = api.get("/v1/events/changes", params={"after": first[-1]["id"], "wait": 5}, headers=admin).json()
    assert [e["message"] for e in rest["events"]] == ["2"]
    assert "after" in _error(api.get("/v1/events/changes", params={"after": 2**31}, headers=admin), 400,
                             "InvalidInput")  # ids are 32-bit in the store: refused, not a database error
    assert api.get("/v1/events/changes", params={"after": 0}, headers=headers(api, "bob", "other")).json() == \
        {"events": []}  # another project's member sees no other project's device's events
