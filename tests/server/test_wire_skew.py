"""Adjacent versions of the agent and the server keep working (services.wire_skew).

Between our own components the receiver ignores a field it does not know and logs it once per field:
the agent's client reads a server answer that carries a field of a newer version (at the top, in a
row, in a nested object), the server takes an agent's registration and report with fields of a newer
agent. User input stays strict: the native API's bodies (a port's limits, an uplink) with an unknown
field are still refused with the field named. In process, SQLite only (the store is not what this
tests). ~2 s.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from vmqos.services import fleet_wire, wire_skew
from vmqos.services.server_client import ServerClient, ServerError

from .inproc import add_agent, headers, running_api

pytestmark = pytest.mark.server

ROW = {"device": "tap1", "port_id": "p1", "source": "neutron", "revision": 7, "policy_name": "neutron:q",
       "policy": {"egress": {"rate": "10mbit"}}, "addresses": ["10.0.0.5"]}
UPLINK = {"revision": 5, "uplink": {"device": "wan0", "capacity_bps": 10_000_000_000, "oversubscribe": False}}
CHANGES = {"host": "h1", "revision": 7, "changes": [ROW], "uplink": UPLINK}


class _Answer:
    """What keystoneauth's session returns, as far as ServerClient reads it."""

    def __init__(self, body: Any) -> None:
        self.status_code, self._body, self.text, self.reason = 200, body, "", "OK"

    def json(self) -> Any:
        return self._body


class _Session:
    """A session that answers every request with one body (the server of another version)."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def request(self, url: str, method: str, **kwargs: Any) -> _Answer:
        return _Answer(self.body)


@pytest.fixture(autouse=True)
def _fresh_log():
    wire_skew.forget_noted()
    yield
    wire_skew.forget_noted()


def _skew_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vmqos.wire"]


def test_the_agent_reads_an_answer_with_fields_of_a_newer_server_and_logs_each_once(caplog):
    newer = {**CHANGES, "compacted_floor": 3, "changes": [{**ROW, "colour": "blue"}, {**ROW, "colour": "red"}],
             "uplink": {**UPLINK, "uplink": {**UPLINK["uplink"], "lanes": 4}}}
    client = ServerClient("http://server:9696", _Session(newer), host="h1")  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="vmqos.wire"):
        got = client.changes(since=6, wait=0)
        assert got == fleet_wire.Changes.model_validate({**CHANGES, "changes": [ROW, ROW]})
        first = _skew_lines(caplog)
        client.changes(since=6, wait=0)
    assert sorted(first) == sorted(
        f"ignoring field {field!r} in a server's Changes answer: the peer is a newer vmqos (version skew during an "
        "upgrade?); upgrade this side to use it (logged once per field)"
        for field in ("changes[].colour", "compacted_floor", "uplink.uplink.lanes"))
    assert _skew_lines(caplog) == first  # once per field, not once per answer


def test_the_agent_still_refuses_an_answer_that_is_wrong_not_just_newer():
    broken = {**CHANGES, "colour": "blue", "changes": [{**ROW, "revision": "seven"}]}
    client = ServerClient("http://server:9696", _Session(broken), host="h1")  # type: ignore[arg-type]
    with pytest.raises(ServerError, match=r"is not a Changes \(1 validation error"):
        client.changes(since=6, wait=0)
    with pytest.raises(ServerError, match="is not a Snapshot"):  # a field missing is not a version skew
        ServerClient("http://s", _Session({"host": "h1", "ports": []}), host="h1").desired()  # type: ignore[arg-type]


@pytest.fixture()
def api(tmp_path):
    with running_api(f"sqlite:///{tmp_path / 'skew.db'}") as client:
        add_agent(client.app.state.store, "agent-h1", "h1")
        yield client


def test_the_server_takes_a_registration_and_a_report_of_a_newer_agent(api, caplog):
    agent = headers(api, "agent-h1", "service")
    native = api.put("/v1/hosts/h1/ports/vq1", json={"policy": {"egress": {"rate": "10mbit"}}}, headers=headers(api))
    assert native.status_code == 200, native.text
    with caplog.at_level(logging.INFO, logger="vmqos.wire"):
        registered = api.put("/v1/hosts/h1", json={"agent_version": "9.0.0", "boot_id": "b1"}, headers=agent)
        assert registered.status_code == 200, registered.text
        rates = {"offered_bps": 9_000_000, "delivered_bps": 3_000_000, "ecn_marked_bps": 5}
        revision = native.json()["port"]["desired_revision"]
        report = {"applied_revision": revision, "agent_clock": "tai",
                  "ports": [{"device": "vq1", "revision": revision, "status": "in_sync", "queue_depth": 3}],
                  "samples": [{"device": "vq1", "at": "2026-12-07T01:02:03Z", "interval_s": 1.0, "egress": rates}]}
        for _ in range(2):
            sent = api.post("/v1/hosts/h1/reports", json=report, headers=agent)
            assert (sent.status_code, sent.json()) == (200, {"lift": []}), sent.text
    shown = api.get("/v1/hosts/h1/ports/vq1", headers=headers(api)).json()["port"]
    assert (shown["status"], shown["rates"]["egress"]["dropped_bps"]) == ("in_sync", 0)
    assert "ecn_marked_bps" not in shown["rates"]["egress"]
    lines = _skew_lines(caplog)
    assert sorted(line.split(" in ")[0] + " in " + line.split(" in ")[1].split(":")[0] for line in lines) == [
        "ignoring field 'agent_clock' in an agent's Report", "ignoring field 'boot_id' in an agent's Registration",
        "ignoring field 'ecn_marked_bps' in an agent's Rates", "ignoring field 'queue_depth' in an agent's PortReport"]


@pytest.mark.parametrize("path, body, status, kind", [
    ("/v1/hosts/h1/ports/vq1", {"policy": {"egress": {"rate": "10mbit"}}, "colour": "blue"}, 400, "InvalidInput"),
    ("/v1/hosts/h1/uplink", {"device": "wan0", "capacity_bps": 10_000_000_000, "colour": "blue"}, 422,
     "UplinkInvalid"),
])
def test_a_users_body_with_an_unknown_field_is_still_refused_with_the_field_named(api, path, body, status, kind):
    answer = api.put(path, json=body, headers=headers(api))
    assert answer.status_code == status, answer.text
    error = answer.json()["NeutronError"]
    assert error["type"] == kind and "colour" in error["message"] and "Extra inputs are not permitted" in \
        error["message"], error
