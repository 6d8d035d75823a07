"""What a change costs the server when a thousand agents wait: the long poll's caller trusted for a while
(api.watch_auth), and `vmqos server --workers N` on PostgreSQL, whose every process wakes its long polls
on the database's revision, whoever wrote it.

In process for the trust (both back ends); the workers with the real `vmqos server` (PostgreSQL; SQLite
refused in one line). No timed assertion: a woken poll is only checked to have its rows.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from vmqos.api import watch_auth
from vmqos.core.formats.hostfile import policy_from_data
from vmqos.services import fleet_desired
from vmqos.store import Store

from .conftest import vmqos
from .inproc import headers, running_api
from .serving import running_server

pytestmark = pytest.mark.server


def test_the_long_poll_trusts_a_validated_token_a_while_and_every_other_route_refuses_it_once_revoked(
        db_url, monkeypatch):
    with running_api(db_url) as api:
        admin, callers = headers(api), api.app.state.fleet_watch.callers
        poll = {"since": 0, "wait": 0}
        start = callers.validations
        for _ in range(3):
            assert api.get("/v1/hosts/h1/desired/changes", params=poll, headers=admin).status_code == 200
        assert callers.validations == start + 1  # the next two were trusted: no identity read, no thread

        for _ in range(2):  # a refusal is not kept: a bad token is validated (and refused) every time
            refused = api.get("/v1/hosts/h1/desired/changes", params=poll, headers={"X-Auth-Token": "nope"})
            assert refused.status_code == 401
        assert callers.validations == start + 3

        revoked = api.delete("/v3/auth/tokens", headers=admin | {"X-Subject-Token": admin["X-Auth-Token"]})
        assert revoked.status_code == 204, revoked.text
        assert api.get("/v1/hosts", headers=admin).status_code == 401  # every other route: at once
        assert api.get("/v1/hosts/h1/desired", headers=admin).status_code == 401
        # the long poll: until its trust ends (watch_auth.TRUST_S), then refused as well
        assert api.get("/v1/hosts/h1/desired/changes", params=poll, headers=admin).status_code == 200
        later = time.monotonic() + watch_auth.TRUST_S + 1
        monkeypatch.setattr(watch_auth.time, "monotonic", lambda: later)
        assert api.get("/v1/hosts/h1/desired/changes", params=poll, headers=admin).status_code == 401


def test_more_than_one_worker_is_refused_on_sqlite_in_one_line(tmp_path):
    done = vmqos("server", "--workers", "2", "--db", f"sqlite:///{tmp_path / 'vmqos.db'}", cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "SQLite serves from one process" in done.stderr, done.stderr


def _get(url: str, token: str, timeout: float = 60) -> dict:
    request = urllib.request.Request(url, headers={"X-Auth-Token": token})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").glob("*/children") for c in task.read_text().split()]


def test_two_workers_on_postgresql_wake_every_long_poll_on_a_change_written_elsewhere(postgres_cluster, tmp_path):
    """Eight long polls over eight connections (the two workers share the socket, the kernel spreads
    them), each at the current revision; the change is written by this process straight through the
    store, as another server on the same database would: every poll, in whichever worker, is woken
    with its host's row at the change's revision. Then one poll per host again, woken by a change
    made through a worker's own API."""
    name = postgres_cluster.create_database()
    db = postgres_cluster.url(name)
    try:
        assert vmqos("server", "init", "--admin-password", "secret-pw", "--db", db, cwd=tmp_path).returncode == 0
        with running_server(tmp_path, db, "--workers", "2") as server:
            for _ in range(100):  # uvicorn's supervisor starts its workers as children
                if len(_children(server.pid)) >= 2:
                    break
                time.sleep(0.1)
            assert len(_children(server.pid)) >= 2, "two worker processes"
            body = json.dumps({"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"}, "password": "secret-pw"}}},
                "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}).encode()
            request = urllib.request.Request(f"{server.url}/v3/auth/tokens", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as answer:
                token = answer.headers["X-Subject-Token"]
            hosts = [f"h{i}" for i in range(8)]
            with Store(db) as store:
                since = _get(f"{server.url}/v1/hosts/h0/desired", token)["revision"]
                answers: dict[str, dict] = {}

                def poll(host: str, at: int) -> None:
                    answers[host] = _get(f"{server.url}/v1/hosts/{host}/desired/changes?since={at}&wait=30", token)

                threads = [threading.Thread(target=poll, args=(h, since)) for h in hosts]
                for t in threads:
                    t.start()
                time.sleep(1.0)  # not a timing assertion: the polls only need to be waiting, or else they read
                for host in hosts:
                    fleet_desired.set_port(store, host, "vq-w", policy_from_data("gold", {"egress": {"rate": "5mbit"}}))
                for t in threads:
                    t.join(60)
                assert sorted(answers) == hosts
                for host, found in answers.items():
                    assert [r["device"] for r in found["changes"]] == ["vq-w"], (host, found)
                    assert found["revision"] > since
                last = max(found["revision"] for found in answers.values())
                again = [threading.Thread(target=poll, args=(h, last)) for h in hosts]
                answers.clear()
                for t in again:
                    t.start()
                time.sleep(1.0)
                for host in hosts:
                    put = urllib.request.Request(
                        f"{server.url}/v1/hosts/{host}/ports/vq-w", method="PUT",
                        data=json.dumps({"policy": {"egress": {"rate": "7mbit"}}}).encode(),
                        headers={"X-Auth-Token": token, "Content-Type": "application/json"})
                    with urllib.request.urlopen(put, timeout=30) as answer:
                        assert answer.status == 200
                for t in again:
                    t.join(60)
                assert sorted(answers) == hosts
                for host, found in answers.items():
                    assert [r["policy"]["egress"]["rate"] for r in found["changes"]] == ["7mbit"], (host, found)
    finally:
        postgres_cluster.drop_database(name)
