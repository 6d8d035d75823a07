"""The long poll below FastAPI (api.fleet_fastpoll) and its access log's summary (api.poll_log).

In process, on SQLite and PostgreSQL: every answer of the fast path (rows, empty, woken, 400, 401,
403, 410) is the answer the FastAPI route gives to the same request sent so that the fast path
passes it on (an extra query parameter, which the route ignores), and the fast path really
answered the first and not the second. With a real `vmqos server` (SQLite): the operator's log has
no line per answered poll but its summary, the other requests' lines and the polls' errors, and
every line with --log-every-poll. No timed assertion.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from vmqos.api import poll_log
from vmqos.api.fleet_fastpoll import FastPoll, _query

from .inproc import add_agent, headers, made, policy, port, running_api
from .serving import call, running_server, token

pytestmark = pytest.mark.server


@pytest.fixture()
def api(db_url):
    with running_api(db_url) as client:
        for name, host in (("agent-h1", "h1"), ("agent-h2", "h2")):
            add_agent(client.app.state.store, name, host)
        yield client


def _fast(api) -> FastPoll:
    layer = api.app.middleware_stack
    while not isinstance(layer, FastPoll):
        layer = layer.app
    return layer


def _both(api, path: str, params: dict, auth: dict) -> tuple:
    """(status, content type, body) by the fast path, then by FastAPI's route; checks which answered which."""
    fast = _fast(api)
    before = fast.answered
    first = api.get(path, params=params, headers=auth)
    by_fast = fast.answered - before
    second = api.get(path, params={**params, "via": "fastapi"}, headers=auth)
    assert fast.answered - before == by_fast  # the second went to FastAPI
    one = (first.status_code, first.headers["content-type"], first.json())
    two = (second.status_code, second.headers["content-type"], second.json())
    assert one == two, (one, two)
    return (*one, by_fast)


def test_the_fast_path_answers_as_the_route_does_and_passes_on_the_rest(api):
    admin = headers(api)
    p3 = policy(api, admin, "p3", 3000)
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=admin), "network")
    port(api, admin, net["id"], "a", qos_policy_id=p3, **{"binding:host_id": "h1"})
    since = api.get("/v1/hosts/h1/desired", headers=admin).json()["revision"]
    path = "/v1/hosts/h1/desired/changes"

    status, kind, body, fast = _both(api, path, {"since": 0, "wait": 5}, admin)  # rows at once
    assert (status, kind, fast) == (200, "application/json", 1) and len(body["changes"]) == 1
    status, _, body, fast = _both(api, path, {"since": since}, admin)  # no wait: empty at once
    assert (status, body, fast) == (200, {"host": "h1", "revision": since, "changes": []}, 1)
    status, _, body, fast = _both(api, path, {"since": since + 5, "wait": 0}, admin)  # ahead: the read's 400
    assert (status, body["NeutronError"]["type"], fast) == (400, "InvalidValue", 0)
    status, _, body, fast = _both(api, path, {"since": 0}, {"X-Auth-Token": "nope"})
    assert (status, fast) == (401, 0) and "authentication" in body["error"]["message"]
    agent2 = headers(api, "agent-h2", "service")
    status, _, body, fast = _both(api, path, {"since": 0}, agent2)  # another host's agent
    assert (status, body["NeutronError"]["type"], fast) == (403, "Forbidden", 0)
    status, _, body, fast = _both(api, "/v1/hosts/h2/desired/changes", {"since": 0}, agent2)
    assert (status, body["changes"], fast) == (200, [], 1)

    # FastAPI's own refusals and coercions: never taken by the fast path
    fast_path = _fast(api)
    before = fast_path.answered
    for params in ({"since": -1}, {"since": "007"}, {"since": 0, "wait": "1e1"}, {"wait": 1}, {"since": "x"}):
        answer = api.get(path, params=params, headers=admin)
        assert answer.status_code in (200, 400), (params, answer.text)
    assert api.get(path, params={"since": 0}, headers={**admin, "Cookie": "a=b"}).status_code == 200
    assert api.get(path, params={"since": 0}).status_code == 401  # no token: the route's 401
    assert fast_path.answered == before


def test_a_waiting_fast_poll_is_woken_by_a_change(api):
    admin = headers(api)
    p3 = policy(api, admin, "p3", 3000)
    net = made(api.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=admin), "network")
    port(api, admin, net["id"], "a", qos_policy_id=p3, **{"binding:host_id": "h1"})
    since = api.get("/v1/hosts/h1/desired", headers=admin).json()["revision"]
    rule = api.get(f"/v2.0/qos/policies/{p3}/bandwidth_limit_rules", headers=admin).json()
    found: dict = {}
    fast = _fast(api)
    before = fast.answered

    def poll() -> None:
        start = time.monotonic()
        answer = api.get("/v1/hosts/h1/desired/changes", params={"since": since, "wait": 30}, headers=admin)
        found["answer"] = (answer.status_code, answer.json(), time.monotonic() - start)

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.5)
    changed = api.put(f"/v2.0/qos/policies/{p3}/bandwidth_limit_rules/{rule['bandwidth_limit_rules'][0]['id']}",
                      json={"bandwidth_limit_rule": {"max_kbps": 4000}}, headers=admin)
    assert changed.status_code == 200, changed.text
    waiter.join(60)
    status, body, waited = found["answer"]
    assert status == 200 and waited < 20  # woken, long before its 30 s
    assert [r["policy"]["egress"]["rate"] for r in body["changes"]] == ["4mbit"] and body["revision"] == since + 1
    assert fast.answered == before + 1


def test_the_query_is_taken_only_in_its_plain_form():
    assert _query(b"since=12&wait=30") == (12, 30.0) and _query(b"wait=0.5&since=0") == (0, 0.5)
    assert _query(b"since=3") == (3, 0.0)
    for raw in (b"", b"since=", b"since=01", b"since=-1", b"since=1&since=2", b"since=1&wait=1e3",
                b"since=1&x=2", b"since=9223372036854775808", b"wait=3", b"since=1&wait"):
        assert _query(raw) is None, raw


def _record(path: str, status: int, method: str = "GET") -> logging.LogRecord:
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                             ("127.0.0.1:5", method, path, "1.1", status), None)


def test_the_summary_counts_the_polls_200s_and_lets_every_other_line_through():
    now = [100.0]
    summary = poll_log.PollSummary(clock=lambda: now[0])
    assert summary.filter(_record("/v1/hosts/h1/desired/changes?since=3&wait=30", 200)) is False
    assert summary.filter(_record("/v1/hosts/h2/desired/changes?since=3", 200)) is False
    assert summary.filter(_record("/v1/hosts/h2/desired/changes?since=4", 200)) is False
    for kept in (_record("/v1/hosts/h1/desired/changes?since=3", 401), _record("/v1/hosts/h1/desired/changes", 410),
                 _record("/v1/hosts/h1/desired?x=1", 200), _record("/v1/hosts/h1/desired/changes", 200, "PUT"),
                 _record("/v2.0/ports", 200)):
        assert summary.filter(kept) is True
    now[0] = 160.0
    assert summary.line() == ("long poll: 3 answers (200) to 2 hosts in the last 60 s "
                              "(one line per answer is not logged)")
    assert summary.line() is None  # counted again from 0
    summary.enabled = False
    assert summary.filter(_record("/v1/hosts/h1/desired/changes?since=3", 200)) is True


@pytest.mark.parametrize("every", [False, True], ids=["summary", "every-poll"])
def test_the_operator_sees_a_summary_instead_of_a_line_per_answered_poll(tmp_path, every):
    db = f"sqlite:///{tmp_path / 'vmqos.db'}"
    options = ("--log-every-poll",) if every else ()
    from vmqos.services import identity
    with identity.open_store(db) as store:
        identity.bootstrap(store, "pw-admin")
    with running_server(tmp_path, db, *options) as server:
        admin, _ = token(server.url, "admin", "pw-admin", "admin")
        for since in (0, 0, 1):
            status, _, _ = call("GET", f"{server.url}/v1/hosts/h7/desired/changes?since={since}",
                                headers={"X-Auth-Token": admin})
            assert status in (200, 400)
        status, _, _ = call("GET", f"{server.url}/v1/hosts/h7/desired/changes?since=0", headers={"X-Auth-Token": "x"})
        assert status == 401
    log = (tmp_path / "server.log").read_text()
    polls = [line for line in log.splitlines() if "/desired/changes" in line]
    assert any('/v1/hosts/h7/desired/changes?since=0 HTTP/1.1" 401' in line for line in polls), log  # errors: always
    assert '"POST /v3/auth/tokens HTTP/1.1" 201' in log  # every other request: as before
    ok = [line for line in polls if '" 200' in line]
    if every:
        assert len(ok) >= 2 and "long poll:" not in log, log
    else:
        assert ok == [] and "long poll: " in log and " to 1 hosts in the last " in log, log
