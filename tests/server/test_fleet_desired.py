"""The fleet's desired rows follow every Neutron write (services.fleet_desired), on SQLite and PostgreSQL.

In process (FastAPI's TestClient): the Neutron objects are changed through the API, as the openstack
CLI changes them, and the rows are read with the use cases the /v1 routes call. After every
scenario the rows written one write at a time are those a full refresh computes, and each host's
live rows are what services.neutron_bindings.host_bindings (the all-in-one enforcer's rule) says.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from vmqos.core.errors import ConflictError, VmqosError
from vmqos.core.formats.hostfile import policy_from_data
from vmqos.services import fleet_desired
from vmqos.services.neutron_bindings import host_bindings
from vmqos.store import Store
from vmqos.store import neutron_ports as records

from .inproc import headers, made, policy, port, running_api

pytestmark = pytest.mark.server


@pytest.fixture()
def api(db_url):  # on SQLite and on PostgreSQL (tests/pgcluster.py)
    with running_api(db_url) as client:
        yield client


def _rows(store: Store, host: str) -> dict[str, tuple[str | None, int | None, int]]:
    """Device -> (port id, egress rate in bit/s or None for nothing, revision) of the host's live rows."""
    found = {}
    for row in fleet_desired.snapshot(store, host).ports:
        limit = row.as_policy()
        assert limit is not None
        bandwidth = limit.qos.egress.bandwidth
        found[row.device] = (row.port_id, bandwidth.rate_bps if bandwidth else None, row.revision)
    return found


def _changed(store: Store, host: str, since: int) -> dict[str, int | None]:
    """Device -> egress rate (None: a tombstone) of the host's rows above `since`."""
    found: dict[str, int | None] = {}
    for row in fleet_desired.changes(store, host, since).changes:
        limit = row.as_policy()
        found[row.device] = None if limit is None else limit.qos.egress.bandwidth.rate_bps  # type: ignore[union-attr]
    return found


def _revision(store: Store) -> int:
    return fleet_desired.snapshot(store, "any").revision


def _consistent(store: Store, hosts: tuple[str, ...]) -> None:
    """The rows one write at a time wrote are what a full refresh computes, and what host_bindings says."""
    again = fleet_desired.refresh(store)
    assert (again.rows, again.revision) == (0, None), f"a full refresh changed {again.rows} row(s)"
    for host in hosts:
        bindings = host_bindings(store, host)
        wanted = {d: (b.port_id, b.policy) for d, b in bindings.ports.items() if b.limits}
        assert fleet_desired.host_wanted(store, host) == wanted, host


def _tap(found: dict) -> str:
    return "tap" + found["id"][:11]


def _put(api, path: str, body: dict, auth: dict) -> None:
    response = api.put(path, json=body, headers=auth)
    assert response.status_code == 200, response.text


def test_a_rule_change_rewrites_the_rows_of_its_ports_only_and_unchanged_rows_keep_their_revision(api):
    admin, store = headers(api), api.app.state.store
    p3, p6 = policy(api, admin, "p3", 3000), policy(api, admin, "p6", 6000)
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n", "qos_policy_id": p6}}, headers=admin),
               "network")
    a = port(api, admin, net["id"], "a", qos_policy_id=p3, **{"binding:host_id": "h1"})
    b = port(api, admin, net["id"], "b", device_owner="compute:nova", **{"binding:host_id": "h2"})
    c = port(api, admin, net["id"], "c", qos_policy_id=p3, **{"binding:host_id": "h1",
                                                               "binding:profile": {"device": "vq-c"}})
    d = port(api, admin, net["id"], "d", qos_policy_id=p6, **{"binding:host_id": "h3"})
    port(api, admin, net["id"], "dhcp", device_owner="network:dhcp", **{"binding:host_id": "h2"})
    port(api, admin, net["id"], "unbound", qos_policy_id=p3)

    h1, h2, h3 = _rows(store, "h1"), _rows(store, "h2"), _rows(store, "h3")
    assert {k: v[:2] for k, v in h1.items()} == {_tap(a): (a["id"], 3_000_000), "vq-c": (c["id"], 3_000_000)}
    assert {k: v[:2] for k, v in h2.items()} == {_tap(b): (b["id"], 6_000_000)}  # the network's; dhcp gets none
    assert {k: v[:2] for k, v in h3.items()} == {_tap(d): (d["id"], 6_000_000)}
    row = fleet_desired.snapshot(store, "h1").ports[0]
    assert (row.source, row.policy_name, row.policy["origin"]) == ("neutron", f"neutron:{p3}", "neutron")

    before = _revision(store)
    rule = api.get(f"/v2.0/qos/policies/{p3}/bandwidth_limit_rules", headers=admin).json()
    rule_path = f"/v2.0/qos/policies/{p3}/bandwidth_limit_rules/{rule['bandwidth_limit_rules'][0]['id']}"
    _put(api, rule_path, {"bandwidth_limit_rule": {"max_kbps": 4000}}, admin)
    after = _revision(store)
    assert after == before + 1  # one revision for the whole change
    assert _changed(store, "h1", before) == {_tap(a): 4_000_000, "vq-c": 4_000_000}
    assert _changed(store, "h2", before) == {} and _changed(store, "h3", before) == {}
    assert _rows(store, "h2") == h2 and _rows(store, "h3") == h3  # their revisions did not move
    assert {r[2] for r in _rows(store, "h1").values()} == {after}

    _put(api, rule_path, {"bandwidth_limit_rule": {"max_kbps": 4000}}, admin)  # Neutron's revision moves, no limit
    _put(api, f"/v2.0/qos/policies/{p3}", {"policy": {"name": "renamed", "description": "x"}}, admin)
    assert _revision(store) == after

    _put(api, f"/v2.0/networks/{net['id']}", {"network": {"qos_policy_id": p3}}, admin)
    assert _changed(store, "h2", after) == {_tap(b): 4_000_000}  # its port has no policy of its own
    assert _changed(store, "h3", after) == {}  # d has its own
    _consistent(store, ("h1", "h2", "h3"))


def test_a_port_that_holds_no_limit_any_more_gets_a_tombstone(api):
    admin, store = headers(api), api.app.state.store
    p3 = policy(api, admin, "p3", 3000)
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=admin), "network")
    bound = {"binding:host_id": "h1"}
    unset, unbound, other_device, moved, deleted = (
        port(api, admin, net["id"], name, qos_policy_id=p3, **bound)
        for name in ("unset", "unbound", "device", "moved", "deleted"))
    assert len(_rows(store, "h1")) == 5
    start = _revision(store)

    _put(api, f"/v2.0/ports/{unset['id']}", {"port": {"qos_policy_id": None}}, admin)
    _put(api, f"/v2.0/ports/{unbound['id']}", {"port": {"binding:host_id": ""}}, admin)
    _put(api, f"/v2.0/ports/{other_device['id']}", {"port": {"binding:profile": {"device": "vq-new"}}}, admin)
    _put(api, f"/v2.0/ports/{moved['id']}", {"port": {"binding:host_id": "h2"}}, admin)
    assert api.delete(f"/v2.0/ports/{deleted['id']}", headers=admin).status_code == 204
    assert _changed(store, "h1", start) == {_tap(unset): None, _tap(unbound): None, _tap(other_device): None,
                                             "vq-new": 3_000_000, _tap(moved): None, _tap(deleted): None}
    assert _changed(store, "h2", start) == {_tap(moved): 3_000_000}
    assert set(_rows(store, "h1")) == {"vq-new"}
    tombstone = next(r for r in fleet_desired.changes(store, "h1", start).changes if r.device == _tap(deleted))
    assert (tombstone.policy, tombstone.policy_name, tombstone.port_id) == (None, None, deleted["id"])

    rules = api.get(f"/v2.0/qos/policies/{p3}/bandwidth_limit_rules", headers=admin).json()
    rule_id = rules["bandwidth_limit_rules"][0]["id"]
    emptied = _revision(store)
    assert api.delete(f"/v2.0/qos/policies/{p3}/bandwidth_limit_rules/{rule_id}", headers=admin).status_code == 204
    assert _changed(store, "h1", emptied) == {"vq-new": None}  # a policy without rules holds nothing
    assert _changed(store, "h2", emptied) == {_tap(moved): None}
    made(api.post(f"/v2.0/qos/policies/{p3}/bandwidth_limit_rules", headers=admin,
                  json={"bandwidth_limit_rule": {"max_kbps": 1000}}), "bandwidth_limit_rule")
    assert set(_rows(store, "h1")) == {"vq-new"} and set(_rows(store, "h2")) == {_tap(moved)}
    again = _revision(store)
    _put(api, f"/v2.0/ports/{unset['id']}", {"port": {"name": "renamed"}}, admin)  # still no policy: no new row
    assert _revision(store) == again
    _consistent(store, ("h1", "h2"))


def test_two_ports_naming_one_device_the_first_keeps_it_and_the_next_takes_it_over(api):
    admin, store = headers(api), api.app.state.store
    p3, p6 = policy(api, admin, "p3", 3000), policy(api, admin, "p6", 6000)
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=admin), "network")
    on_vq0 = {"binding:host_id": "h1", "binding:profile": {"device": "vq0"}}
    first = port(api, admin, net["id"], "first", qos_policy_id=p3, **on_vq0)
    second = port(api, admin, net["id"], "second", qos_policy_id=p6, **on_vq0)
    assert _rows(store, "h1")["vq0"][:2] == (first["id"], 3_000_000)
    _put(api, f"/v2.0/ports/{first['id']}", {"port": {"qos_policy_id": None}}, admin)  # still names vq0: keeps it
    assert "vq0" not in _rows(store, "h1")
    _put(api, f"/v2.0/ports/{first['id']}", {"port": {"qos_policy_id": p3}}, admin)
    assert api.delete(f"/v2.0/ports/{first['id']}", headers=admin).status_code == 204
    assert _rows(store, "h1")["vq0"][:2] == (second["id"], 6_000_000)
    _consistent(store, ("h1",))


def test_a_policy_change_reads_only_the_ports_it_concerns(api):
    admin, store = headers(api), api.app.state.store
    shared, other = policy(api, admin, "shared", 3000), policy(api, admin, "other", 6000)
    by_net = made(api.post("/v2.0/networks", json={"network": {"name": "n1", "qos_policy_id": shared}},
                           headers=admin), "network")
    plain = made(api.post("/v2.0/networks", json={"network": {"name": "n2"}}, headers=admin), "network")
    for i in range(3):
        port(api, admin, plain["id"], f"own{i}", qos_policy_id=shared, **{"binding:host_id": f"h{i}"})
    for i in range(2):
        port(api, admin, by_net["id"], f"net{i}", **{"binding:host_id": f"h{i}"})
    port(api, admin, by_net["id"], "own-policy-on-that-network", qos_policy_id=other, **{"binding:host_id": "h0"})
    for i in range(8):
        port(api, admin, plain["id"], f"other{i}", qos_policy_id=other, **{"binding:host_id": f"h{i % 3}"})
    found = fleet_desired.refresh_policy(store, shared)
    assert (found.ports_read, found.rows) == (5, 0)  # 5 of 14 ports; nothing left to write
    assert fleet_desired.refresh(store).ports_read == 14


def test_the_server_recomputes_every_row_when_it_starts(db_url):
    with running_api(db_url) as api:
        admin, store = headers(api), api.app.state.store
        p3 = policy(api, admin, "p3", 3000)
        net = made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=admin), "network")
        made_port = port(api, admin, net["id"], "a", qos_policy_id=p3)
        stored = records.list_ports(store, made_port["id"])[0]
        records.save_port(store, replace(stored, host_id="h9", revision_number=2), replaces=1)  # no rows: an old vmqos
        assert fleet_desired.snapshot(store, "h9").ports == []
    with running_api(db_url) as api:
        assert set(_rows(api.app.state.store, "h9")) == {_tap(made_port)}


def test_a_native_row_is_refused_on_a_neutron_device_and_yields_to_a_neutron_port(api):
    admin, store = headers(api), api.app.state.store
    p3 = policy(api, admin, "p3", 3000)
    limit = policy_from_data("gold", {"egress": {"rate": "50mbit"}})
    row = fleet_desired.set_port(store, "h1", "vq-n", limit)
    assert (row.source, row.port_id, row.policy_name, row.as_policy()) == ("native", None, "gold", limit)
    assert fleet_desired.set_port(store, "h1", "vq-n", limit).revision == row.revision  # the same: not rewritten
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=admin), "network")
    taken = port(api, admin, net["id"], "a", qos_policy_id=p3, **{"binding:host_id": "h1",
                                                                   "binding:profile": {"device": "vq-n"}})
    assert _rows(store, "h1")["vq-n"][:2] == (taken["id"], 3_000_000)
    with pytest.raises(ConflictError, match=f"is Neutron port {taken['id']}'s"):
        fleet_desired.set_port(store, "h1", "vq-n", limit)
    with pytest.raises(ConflictError):
        fleet_desired.clear_port(store, "h1", "vq-n")
    _consistent(store, ("h1",))


def test_a_neutron_write_and_its_rows_commit_together(api, monkeypatch):
    """A refresh that fails undoes the write it belongs to: the client's error is the whole truth."""
    admin, store = headers(api), api.app.state.store
    p3 = policy(api, admin, "p3", 3000)
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=admin), "network")
    found = port(api, admin, net["id"], "a", **{"binding:host_id": "h1"})

    def broken(*args, **kwargs):
        raise VmqosError("the refresh failed")

    monkeypatch.setattr(fleet_desired, "_decide", broken)
    refused = api.put(f"/v2.0/ports/{found['id']}", json={"port": {"qos_policy_id": p3}}, headers=admin)
    assert refused.status_code == 500 and "the refresh failed" in refused.text
    monkeypatch.undo()
    assert records.list_ports(store, found["id"])[0].qos_policy_id is None
    assert _rows(store, "h1") == {}


def test_a_rule_change_of_a_policy_that_limits_rewrites_its_rows_in_one_statement_without_reading_a_port(
        api, monkeypatch):
    """Set-based: the rows that held the policy get its new text and one revision, no port is read (the full
    refresh, `_decide`, is not called); a port that lost its device and a port the policy does not reach
    (a DHCP port on its network) get no row; another policy's rows and a native row keep their revision;
    the rows equal what a full refresh computes. A policy that holds nothing, before or after, takes the
    full refresh (the rows appear or go)."""
    admin, store = headers(api), api.app.state.store
    p3, p6 = policy(api, admin, "p3", 3000), policy(api, admin, "p6", 6000)
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n", "qos_policy_id": p3}}, headers=admin),
               "network")
    on_vq0 = {"binding:host_id": "h1", "binding:profile": {"device": "vq0"}}
    first = port(api, admin, net["id"], "first", qos_policy_id=p6, **on_vq0)
    port(api, admin, net["id"], "second", qos_policy_id=p3, **on_vq0)  # names vq0 too: the first keeps it
    a = port(api, admin, net["id"], "a", qos_policy_id=p3, **{"binding:host_id": "h1"})
    b = port(api, admin, net["id"], "b", device_owner="compute:nova", **{"binding:host_id": "h2"})  # the network's
    port(api, admin, net["id"], "dhcp", device_owner="network:dhcp", **{"binding:host_id": "h2"})
    native = fleet_desired.set_port(store, "h3", "vq-n", policy_from_data("gold", {"egress": {"rate": "50mbit"}}))
    h1 = _rows(store, "h1")
    assert {k: v[:2] for k, v in h1.items()} == {"vq0": (first["id"], 6_000_000), _tap(a): (a["id"], 3_000_000)}

    def full_refresh(*args, **kwargs):
        raise AssertionError("a rule change of a policy that limits before and after read the ports")

    monkeypatch.setattr(fleet_desired, "_decide", full_refresh)
    rule = api.get(f"/v2.0/qos/policies/{p3}/bandwidth_limit_rules", headers=admin).json()
    rule_path = f"/v2.0/qos/policies/{p3}/bandwidth_limit_rules/{rule['bandwidth_limit_rules'][0]['id']}"
    before = _revision(store)
    _put(api, rule_path, {"bandwidth_limit_rule": {"max_kbps": 4000}}, admin)
    after = _revision(store)
    assert after == before + 1
    assert _changed(store, "h1", before) == {_tap(a): 4_000_000}
    assert _changed(store, "h2", before) == {_tap(b): 4_000_000}
    assert _rows(store, "h1")["vq0"] == h1["vq0"]  # p6's row: its revision did not move
    assert _rows(store, "h3") == {"vq-n": (None, 50_000_000, native.revision)}  # the native row too
    _put(api, rule_path, {"bandwidth_limit_rule": {"max_kbps": 4000}}, admin)  # the same limit: no revision
    assert _revision(store) == after
    monkeypatch.undo()
    _consistent(store, ("h1", "h2"))

    assert api.delete(rule_path, headers=admin).status_code == 204  # holds nothing now: the full refresh
    assert _changed(store, "h1", after) == {_tap(a): None} and _changed(store, "h2", after) == {_tap(b): None}
    made(api.post(f"/v2.0/qos/policies/{p3}/bandwidth_limit_rules", headers=admin,
                  json={"bandwidth_limit_rule": {"max_kbps": 2000}}), "bandwidth_limit_rule")
    assert {k: v[:2] for k, v in _rows(store, "h2").items()} == {_tap(b): (b["id"], 2_000_000)}
    _consistent(store, ("h1", "h2"))
