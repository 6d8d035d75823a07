"""Fuzzing the API over its own OpenAPI document with schemathesis, on SQLite and on PostgreSQL (bounded).

Every operation the server documents gets generated requests, valid and invalid, as an admin (who
may reach every branch): no answer may be a 5xx, every 4xx must carry a JSON body (the client
reads the message from it), and after every call every QoS policy in the store must still read as
a vmqos Policy (0 invalid rows). The application is served by uvicorn on a loopback port in a
thread of the test, over real HTTP, as `vmqos server` serves it.
In the suite each operation gets VMQOS_FUZZ_EXAMPLES generated cases (schemathesis's examples and
fuzzing phases). Its coverage phase (every boundary of every schema, thousands of cases whose
generation alone took 170 of the 200 s per back end, 2026-12-07) runs with VMQOS_FUZZ_COVERAGE=1;
`bench/api_fuzz.py` runs both phases with many more examples on both back ends.

One generation for both back ends: schemathesis's generation is ~60 % of the test's CPU (docs/benchmarks.md,
"The fuzz test"), and with `derandomize=True` both back ends got the same cases anyway. The test runs once
per *set* of back ends: `sqlite` (SQLite alone) and `sqlite+postgresql` (marked postgres), which sends every
generated case to a SQLite server, then to a PostgreSQL one, and checks each answer and each store on its
own. When both are selected (the suite), `sqlite` is deselected as contained in the other
(tests/server/conftest.py); `-m "not postgres"` runs `sqlite` alone and starts no PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings

from vmqos.api.app import create_app
from vmqos.services import identity, policies
from vmqos.store import qos as records

EXAMPLES = int(os.environ.get("VMQOS_FUZZ_EXAMPLES", "8"))  # per operation (~80 of them); bounded in the suite
COVERAGE = os.environ.get("VMQOS_FUZZ_COVERAGE", "0") == "1"
_COUNT = [0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Target:
    """One fuzzed server: its back end's name, the application (to read its store), its URL, an admin token,
    and the ids of the objects made for the generated show/update/delete calls to find."""

    backend: str
    app: Any
    url: str
    token: str
    ids: dict[str, str]


# The test's back-end sets: SQLite alone, and both (a PostgreSQL cluster needed, hence the mark).
BACKEND_SETS = [pytest.param(("sqlite",), id="sqlite"),
                pytest.param(("sqlite", "postgresql"), id="sqlite+postgresql", marks=pytest.mark.postgres)]


@contextlib.contextmanager
def _served(db: str, backend: str) -> Iterator[Target]:
    """The application on `db`, served by uvicorn in a thread on a free loopback port, with an admin and a seed."""
    app = create_app(db)
    identity.bootstrap(app.state.store, "admin-secret")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, f"uvicorn did not start ({backend})"
            time.sleep(0.05)
        auth = {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": "admin-secret"}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}
        issued = httpx.post(f"{url}/v3/auth/tokens", json={"auth": auth})
        assert issued.status_code == 201, issued.text
        token = issued.headers["X-Subject-Token"]
        # Something to find for the generated ids of show/update/delete.
        made = httpx.post(f"{url}/v2.0/qos/policies", json={"policy": {"name": "seed"}},
                          headers={"X-Auth-Token": token})
        assert made.status_code == 201, made.text
        policy_id = made.json()["policy"]["id"]
        rule = httpx.post(f"{url}/v2.0/qos/policies/{policy_id}/bandwidth_limit_rules",
                          json={"bandwidth_limit_rule": {"max_kbps": 1000}}, headers={"X-Auth-Token": token})
        assert rule.status_code == 201, rule.text
        yield Target(backend, app, url, token,
                     {"policy_id": policy_id, "rule_id": rule.json()["bandwidth_limit_rule"]["id"]})
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module", params=BACKEND_SETS)
def fuzzed(request, tmp_path_factory) -> Iterator[list[Target]]:
    with contextlib.ExitStack() as stack:
        targets = []
        for backend in request.param:
            if backend == "sqlite":
                db = f"sqlite:///{tmp_path_factory.mktemp('vq-fuzz') / 'vmqos.db'}"
            else:  # PostgreSQL refuses what SQLite stores (a NUL in a string): the fuzzer must see both
                cluster = request.getfixturevalue("postgres_cluster")
                name = cluster.create_database()
                stack.callback(cluster.drop_database, name)
                db = cluster.url(name)
            targets.append(stack.enter_context(_served(db, backend)))
        yield targets


@pytest.fixture(scope="module")
def fuzz_schema(fuzzed):
    # Every target serves the same application, hence the same document: the first one's is read.
    url = fuzzed[0].url
    # The agents' two big bodies (a registration's inventory, a report's four lists of objects) have ~600
    # boundary cases in schemathesis's coverage phase, minutes of the suite: they keep their fuzzed examples.
    config = schemathesis.config.SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": COVERAGE}}, "operations": [{
        "include-name": ["PUT /v1/hosts/{host}", "POST /v1/hosts/{host}/reports"],
        "phases": {"coverage": {"enabled": False}}}]})
    return schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("fuzz_schema")


def json_error_body(ctx, response, case):
    """Every 4xx and 5xx carries a JSON object: the openstack CLI prints its message from it."""
    if response.status_code >= 400:
        try:
            body = json.loads(response.content or b"")
        except ValueError:
            raise AssertionError(f"{response.status_code} without a JSON body: {response.content[:200]!r}") from None
        assert isinstance(body, dict) and body, f"{response.status_code} with the body {body!r}"


def _stored_policies_valid(app) -> None:
    """0 invalid rows: every stored policy reads back as the vmqos model reads a Neutron policy."""
    for stored in records.list_policies(app.state.store):
        policies.as_policy(stored)


@pytest.mark.server
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_error_and_json_errors(case, fuzzed):
    _COUNT[0] += 1
    on_existing = bool(_COUNT[0] % 2 and case.path_parameters)  # every other case on objects that exist (while they do)
    generated = dict(case.path_parameters or {})
    headers = dict(case.headers or {})
    if case.path == "/v3/auth/tokens" and case.method in ("GET", "HEAD", "DELETE"):
        headers.setdefault("X-Subject-Token", "not-a-token")  # never the caller's own: keep fuzzing as admin
    long_polls = ("/desired/changes", "/events/changes")
    if case.path.endswith(long_polls) and isinstance(case.query, dict) and "wait" in case.query:
        case.query["wait"] = 0  # the long poll: a generated wait of up to 60 s per example would be the whole budget
    for target in fuzzed:  # the same case to each back end, each judged on its own answer and its own store
        if on_existing:
            case.path_parameters = generated | {name: value for name, value in target.ids.items() if name in generated}
        try:
            response = case.call(base_url=target.url, headers=headers | {"X-Auth-Token": target.token})
            case.validate_response(response, checks=[schemathesis.checks.not_a_server_error],
                                   additional_checks=[json_error_body] if case.method != "HEAD" else [])
            _stored_policies_valid(target.app)
        except Exception as exc:
            exc.add_note(f"back end: {target.backend} ({target.url})")
            raise
