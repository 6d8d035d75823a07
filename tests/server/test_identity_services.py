"""Identity's use cases with an injected clock: lockout, token expiry, the service caller's host, the
API's Keystone bodies for management errors, and the settings `vmqos server` hands its process.
Each test that takes `db_url` runs on SQLite and on PostgreSQL (tests/pgcluster.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from vmqos.api.app import create_app
from vmqos.core.errors import ConflictError, InvalidValue
from vmqos.services import identity
from vmqos.services import identity_admin as admin
from vmqos.services.authn import KeystoneSettings, LocalAuthenticator, ServerAuth
from vmqos.services.identity import AuthSettings, NotAuthenticated
from vmqos.services.identity_admin import OPERATOR
from vmqos.services.identity_input import read_project, read_user

pytestmark = pytest.mark.server
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LOCKOUT = AuthSettings(timedelta(hours=1), 3, timedelta(seconds=60))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture()
def store(db_url):
    with identity.open_store(db_url) as opened:
        identity.bootstrap(opened, "pw")
        identity.add_user(opened, "rita", "pw", "demo", "reader")
        yield opened


def _login(store, user: str, password: str, clock: Clock, settings: AuthSettings = LOCKOUT, project="admin"):
    return identity.authenticate(store, {"name": user}, password, {"name": project}, now=clock(), settings=settings)


def test_failures_lock_a_user_out_until_the_window_passes(store):
    clock = Clock()
    for _ in range(3):
        with pytest.raises(NotAuthenticated):
            _login(store, "admin", "wrong", clock)
        clock.advance(10)
    with pytest.raises(NotAuthenticated):  # locked (10 s after the last failure): the password is not looked at
        _login(store, "admin", "pw", clock)
    clock.advance(49)  # 59 s after the last failure
    with pytest.raises(NotAuthenticated):
        _login(store, "admin", "pw", clock)
    clock.advance(1)  # 60 s: the window has passed
    assert _login(store, "admin", "pw", clock).caller.user.name == "admin"
    assert identity.records.find_user(store, name="admin").failed_auth_count == 0  # a success forgets failures


def test_failures_further_apart_than_the_window_are_forgotten_and_0_never_locks(store):
    clock = Clock()
    for _ in range(5):
        with pytest.raises(NotAuthenticated):
            _login(store, "admin", "wrong", clock)
        clock.advance(61)
    assert _login(store, "admin", "pw", clock).caller is not None
    never = AuthSettings(lockout_attempts=0)
    for _ in range(10):
        with pytest.raises(NotAuthenticated):
            _login(store, "admin", "wrong", clock, never)
    assert _login(store, "admin", "pw", clock, never).caller is not None


def test_the_keystone_option_ignore_lockout_failure_attempts_is_honoured(store):
    clock = Clock()
    user = admin.resolve_user(store, "admin")
    admin.update_user(store, OPERATOR, user.id,
                      read_user({"user": {"options": {"ignore_lockout_failure_attempts": True}}}, create=False))
    for _ in range(4):
        with pytest.raises(NotAuthenticated):
            _login(store, "admin", "wrong", clock)
    assert _login(store, "admin", "pw", clock).caller is not None


def test_an_unknown_user_a_locked_one_and_a_wrong_password_cost_one_verification_each(store, monkeypatch):
    """Timing does not tell which names exist: every refusal runs argon2 once (counted, not timed)."""
    clock = Clock()
    calls: list[str] = []
    real = identity._verify

    def counting(hash_: str, password: object) -> bool:
        calls.append(hash_)
        return real(hash_, password)

    monkeypatch.setattr(identity, "_verify", counting)
    for user in ("nobody", "admin", "admin", "admin", "admin"):  # the 4th admin attempt is locked out
        with pytest.raises(NotAuthenticated):
            _login(store, user, "wrong" if user == "admin" else "pw", clock)
    assert len(calls) == 5
    dummy = identity._dummy_hash()
    assert [h == dummy for h in calls] == [True, False, False, False, True]


def test_a_token_expires_after_the_servers_ttl(store, db_url):
    clock = Clock()
    service = LocalAuthenticator(store, AuthSettings(token_ttl=timedelta(seconds=120)), clock)
    issued = service.issue({"name": "rita"}, "pw", {"name": "demo"})
    assert issued.caller.expires_at - issued.caller.issued_at == timedelta(seconds=120)
    clock.advance(119)
    assert service.validate(issued.token).user.name == "rita"
    clock.advance(1)
    with pytest.raises(NotAuthenticated):
        service.validate(issued.token)
    with TestClient(create_app(db_url, auth=service)) as api:
        refused = api.get("/v2.0/qos/policies", headers={"X-Auth-Token": issued.token})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == 401


def test_a_service_caller_is_limited_to_its_host_and_no_project_member(store):
    clock = Clock()
    project = admin.create_project(store, OPERATOR, read_project({"project": {"name": "service"}}, create=True))
    agent = admin.create_user(store, OPERATOR, read_user({"user": {"name": "agent-h1", "password": "pw",
                                                                    "vmqos_host": "h1"}}, create=True))
    account = admin.create_user(store, OPERATOR, read_user({"user": {"name": "vmqos-b", "password": "pw"}},
                                                           create=True))
    service_role = admin.resolve_role(store, "service")
    for user in (agent, account):
        admin.grant(store, OPERATOR, project.id, user.id, service_role.id)
    caller = _login(store, "agent-h1", "pw", clock, project="service").caller
    assert (caller.is_service, caller.host, caller.is_admin, caller.can_write) == (True, "h1", False, False)
    unbound = _login(store, "vmqos-b", "pw", clock, project="service").caller
    assert (unbound.is_service, unbound.host) == (True, None)
    rita = _login(store, "rita", "pw", clock, project="demo").caller
    assert (rita.is_service, rita.host) == (False, None)
    with pytest.raises(ConflictError, match="holds project roles"):
        admin.grant(store, OPERATOR, project.id, rita.user.id, service_role.id)
    with pytest.raises(ConflictError, match="only a service user is bound to a host"):
        admin.update_user(store, OPERATOR, rita.user.id, read_user({"user": {"vmqos_host": "h9"}}, create=False))


def _token(api, user: str, project: str) -> str:
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": "pw"}}}, "scope": {"project": {"name": project}}}}
    response = api.post("/v3/auth/tokens", json=body)
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"]


def test_management_errors_are_keystones_bodies(db_url):
    url = db_url
    with identity.open_store(url) as opened:
        identity.bootstrap(opened, "pw")
        identity.add_user(opened, "rita", "pw", "demo", "reader")
    with TestClient(create_app(url, settings=ServerAuth()), base_url="http://vq.test") as api:
        rita = {"X-Auth-Token": _token(api, "rita", "demo")}
        boss = {"X-Auth-Token": _token(api, "admin", "admin")}
        refused = api.get("/v3/users", headers=rita)
        assert refused.status_code == 403 and refused.json() == {"error": {
            "code": 403, "title": "Forbidden",
            "message": "You are not authorized to perform the requested action: identity:list_users."}}
        missing = api.get("/v3/projects/nope", headers=boss)
        assert missing.json() == {"error": {"code": 404, "title": "Not Found",
                                            "message": "Could not find project: nope."}}
        bad = api.post("/v3/users", json={"user": {"name": "x", "enabled": "yes"}}, headers=boss)
        assert bad.status_code == 400
        assert bad.json()["error"]["message"] == "Invalid input for field 'enabled': 'yes' is not of type 'boolean'."
        secret = api.post("/v3/users", json={"user": {"name": "x", "password": 42}}, headers=boss)
        assert secret.status_code == 400 and "42" not in secret.json()["error"]["message"]
        made = api.post("/v3/users", json={"user": {"name": "x", "colour": "red"}}, headers=boss).json()["user"]
        assert made["colour"] == "red" and made["links"]["self"] == f"http://vq.test/v3/users/{made['id']}"
        rita_id = api.get("/v3/users", params={"name": "rita"}, headers=boss).json()["users"][0]["id"]
        assert api.get(f"/v3/users/{rita_id}", headers=rita).json()["user"]["name"] == "rita"  # itself
        listed = api.get("/v3/role_assignments", params={"user.id": rita_id, "include_names": ""}, headers=boss)
        assert listed.json()["role_assignments"][0]["role"] == {"id": listed.json()["role_assignments"][0]["role"]
                                                                ["id"], "name": "reader"}
        assert listed.json()["links"]["next"] is None
        # a NUL, which PostgreSQL cannot hold, is a name refused and an id not found (never a 500)
        assert api.post("/v3/projects", json={"project": {"name": "a\x00b"}}, headers=boss).status_code == 400
        assert api.get("/v3/users/a%00b", headers=boss).status_code == 404
        no_token = api.get("/v3/projects")
        assert no_token.status_code == 401 and no_token.headers["WWW-Authenticate"] == 'Keystone uri="http://vq.test/v3"'


def test_the_settings_the_server_hands_its_process():
    settings = ServerAuth("keystone", AuthSettings(timedelta(seconds=600), 4, timedelta(seconds=30)),
                          KeystoneSettings("http://k:5000/v3", "svc", "secret", "service", cache_seconds=5,
                                           cafile="/etc/vmqos/tls/ca.pem"))
    assert ServerAuth.from_env(settings.to_env()) == settings
    assert "secret" not in repr(settings)
    assert ServerAuth.from_env({}) == ServerAuth()
    with pytest.raises(InvalidValue, match=r"\$VMQOS_LOCKOUT_ATTEMPTS: 'x' is not valid"):
        ServerAuth.from_env({"VMQOS_LOCKOUT_ATTEMPTS": "x"})
    with pytest.raises(InvalidValue, match="token ttl: 5 is not valid"):
        AuthSettings(token_ttl=timedelta(seconds=5))
    with pytest.raises(InvalidValue, match="--keystone-password"):
        KeystoneSettings("http://k/v3", "svc", "", "service")
    with pytest.raises(InvalidValue, match="--keystone-url"):
        ServerAuth("keystone")


def test_an_identity_database_of_the_first_slice_is_upgraded_and_its_users_log_in(tmp_path):
    """Revision 0004 adds the new columns with what a new row would hold: a user of the server's first
    slice logs in as before, its project is enabled, and no failure is counted."""
    from alembic import command
    from sqlalchemy import create_engine

    from vmqos.store.migrations import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(upgrade.config(conn), "0003_neutron_networks_ports_rbac")
        conn.exec_driver_sql("INSERT INTO identity_projects (id, name, domain_id) VALUES ('p1', 'demo', 'default')")
        conn.exec_driver_sql("INSERT INTO identity_roles (id, name) VALUES ('r1', 'member')")
        conn.exec_driver_sql("INSERT INTO identity_assignments VALUES ('u1', 'p1', 'r1')")
        conn.exec_driver_sql("INSERT INTO identity_users (id, name, domain_id, password_hash, enabled) VALUES "
                             f"('u1', 'old', 'default', '{identity.hash_password('pw')}', 1)")
    engine.dispose()
    with identity.open_store(url) as store:
        caller = identity.authenticate(store, {"name": "old"}, "pw", {"name": "demo"}, now=T0).caller
        assert (caller.user.id, caller.project.enabled, caller.project.description) == ("u1", True, "")
        assert (caller.user.failed_auth_count, caller.user.host, caller.user.extra) == (0, None, {})
