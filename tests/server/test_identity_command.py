"""`vmqos identity ...`: the operator's commands at the database, in process (the real `main`), on
SQLite and on PostgreSQL."""

from __future__ import annotations

import json

import pytest

from vmqos.cli.main import main
from vmqos.services import identity

pytestmark = pytest.mark.server


@pytest.fixture()
def run(db_url, capsys):
    db = db_url

    def vmqos(*args: str) -> tuple[int, str, str]:
        status = main([*args, "--db", db])
        out, err = capsys.readouterr()
        return status, out, err

    vmqos.db = db  # type: ignore[attr-defined]
    return vmqos


def test_projects_users_roles_and_assignments(run):
    assert run("server", "init", "--admin-password", "pw")[0] == 0
    assert run("identity", "project", "create", "demo", "--description", "the demo")[0] == 0
    status, out, _ = run("identity", "project", "list", "--json")
    assert status == 0 and [(p["name"], p["description"]) for p in json.loads(out)] == \
        [("admin", ""), ("demo", "the demo")]
    status, out, _ = run("identity", "user", "create", "alice", "--password", "a-pw", "--project", "demo")
    assert status == 0 and "with role member on project demo" in out
    status, out, _ = run("identity", "user", "create", "agent-h1", "--role", "service", "--host", "h1",
                         "--password", "s-pw")
    assert status == 0 and "with role service on project service, bound to host h1" in out
    status, out, _ = run("identity", "user", "show", "agent-h1", "--json")
    shown = json.loads(out)
    assert shown["user"]["host"] == "h1" and "password_hash" not in out and "argon2" not in out
    assert [(g["role_name"], g["project_name"]) for g in shown["assignments"]] == [("service", "service")]
    assert run("identity", "role", "add", "reader", "--user", "alice", "--project", "admin")[0] == 0
    status, out, _ = run("identity", "assignment", "list", "--user", "alice", "--json")
    assert sorted((g["role_name"], g["project_name"]) for g in json.loads(out)) == \
        [("member", "demo"), ("reader", "admin")]
    status, out, _ = run("identity", "user", "list", "--project", "demo", "--json")
    assert [u["name"] for u in json.loads(out)] == ["alice"]
    assert run("identity", "role", "remove", "reader", "--user", "alice", "--project", "admin")[0] == 0
    assert {r["name"] for r in json.loads(run("identity", "role", "list", "--json")[1])} == \
        {"admin", "member", "reader", "service"}

    assert run("identity", "user", "set-password", "alice", "--password", "new-pw")[0] == 0
    with identity.open_store(run.db) as store:
        assert identity.authenticate(store, {"name": "alice"}, "new-pw", {"name": "demo"}).caller.user.name == "alice"
    assert run("identity", "user", "delete", "alice")[0] == 0
    assert run("identity", "project", "delete", "demo")[0] == 0
    assert [p["name"] for p in json.loads(run("identity", "project", "list", "--json")[1])] == ["admin", "service"]


@pytest.mark.parametrize(("args", "message"), [
    (("identity", "project", "delete", "nope"), "project 'nope': no project has that name or id"),
    (("identity", "user", "create", "x", "--password", "p", "--host", "h1"),
     "--host: 'h1' is not valid: only a service user is bound to a host: add --role service"),
    (("identity", "user", "create", "x", "--password", "p", "--role", "member"),
     "--role: 'member' is not valid: a project role needs --project PROJECT"),
    (("identity", "user", "create", "x", "--password", "p", "--project", "ghost"),
     "no such project: create it with `vmqos identity project create ghost`"),
    (("identity", "role", "add", "member", "--user", "agent", "--project", "admin"),
     "user agent is bound to host h1: it holds only the service role, never a project role such as member"),
    (("identity", "project", "create", "admin"), "Duplicate entry found with name admin at domain ID default"),
])
def test_errors_are_one_line(run, args, message):
    assert run("server", "init", "--admin-password", "pw")[0] == 0
    assert run("identity", "user", "create", "agent", "--role", "service", "--host", "h1", "--password", "p")[0] == 0
    status, out, err = run(*args)
    assert status != 0 and out == ""
    assert err.startswith("vmqos: error: ") and err.count("\n") == 1 and message in err
