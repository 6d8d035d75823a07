"""Who is calling: the bootstrap, password authentication, tokens and their roles (Keystone's subset).

Enough of Keystone v3 for the real `openstack` client: users and projects in the Default domain,
the roles admin, member and reader on a project (and `service`, for agents), password
authentication scoped to a project, tokens that expire (an hour by default). Front ends (the API
server, `vmqos server init`, `vmqos identity`) call only these and `identity_admin`.

Failed logins lock a user out as Keystone's `[security_compliance] lockout_failure_attempts` and
`lockout_duration` do: after N failures, each within the window of the one before, further
attempts are refused without looking at the password until the window has passed since the last
failure. Keystone never forgets a failure until a success; here a failure older than the window
is forgotten, so N slow typos a day do not lock anyone out. A locked user, an unknown user and a
wrong password all cost one argon2 verification and answer the same 401, so neither the timing nor
the answer tells which names exist.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from vmqos.core.errors import InvalidValue, VmqosError
from vmqos.store import Store
from vmqos.store import identity as records
from vmqos.store.identity import DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME, Project, Role, TokenRecord, User

PROJECT_ROLES = ("admin", "member", "reader")
SERVICE_ROLE = "service"
ROLES = (*PROJECT_ROLES, SERVICE_ROLE)
TOKEN_LIFETIME = timedelta(hours=1)
_HASHER = PasswordHasher()
_UNAUTHENTICATED = "The request you have made requires authentication."

__all__ = ["DEFAULT_DOMAIN_ID", "DEFAULT_DOMAIN_NAME", "PROJECT_ROLES", "ROLES", "SERVICE_ROLE", "AuthSettings",
           "Caller", "Forbidden", "Issued", "NotAuthenticated", "Project", "Role", "User", "add_user", "authenticate",
           "bootstrap", "check_password", "hash_password", "open_store", "revoke", "validate"]


@cache
def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist or is locked out: it costs as long as a
    wrong password, so timing does not tell which names exist. Made on first use: every `vmqos`
    command imports this module and must not pay for an argon2 hash."""
    return _HASHER.hash("vmqos-no-such-user")


class NotAuthenticated(VmqosError):
    """No valid credentials or token: Keystone's 401, whatever was wrong (it says no more either)."""

    http_status = 401


class Forbidden(VmqosError):
    """The caller is known but may not do this: Keystone's ForbiddenAction (403)."""

    http_status = 403

    def __init__(self, action: str) -> None:
        self.action = action
        super().__init__(f"You are not authorized to perform the requested action: {action}.")


@dataclass(frozen=True)
class AuthSettings:
    """How long tokens live and when failed logins lock a user out (`vmqos server` options)."""

    token_ttl: timedelta = TOKEN_LIFETIME
    lockout_attempts: int = 5  # 0: never lock out (Keystone's default)
    lockout_window: timedelta = timedelta(seconds=60)

    def __post_init__(self) -> None:
        if not timedelta(seconds=60) <= self.token_ttl <= timedelta(days=7):
            raise InvalidValue("token ttl", int(self.token_ttl.total_seconds()),
                               "give 60 to 604800 seconds (a minute to a week; Keystone's default is 3600)")
        if not 0 <= self.lockout_attempts <= 1000:
            raise InvalidValue("lockout attempts", self.lockout_attempts, "give 0 (no lockout) to 1000")
        if not timedelta(seconds=1) <= self.lockout_window <= timedelta(days=1):
            raise InvalidValue("lockout seconds", int(self.lockout_window.total_seconds()),
                               "give 1 to 86400 seconds")


DEFAULT_SETTINGS = AuthSettings()


@dataclass(frozen=True)
class Caller:
    """The identity behind a token: its user, the project it is scoped to and its roles there."""

    user: User
    project: Project | None
    roles: tuple[Role, ...]
    audit_id: str
    issued_at: datetime
    expires_at: datetime

    @property
    def role_names(self) -> frozenset[str]:
        return frozenset(role.name for role in self.roles)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.role_names

    @property
    def can_write(self) -> bool:
        """Writes need admin or member: a reader only reads."""
        return bool(self.role_names & {"admin", "member"})

    @property
    def is_service(self) -> bool:
        """An agent's (or another server's) account: role `service`, which is never given together with
        a project role, so a service caller is no project's member and sees no project's objects."""
        return SERVICE_ROLE in self.role_names and not self.role_names & set(PROJECT_ROLES)

    @property
    def host(self) -> str | None:
        """The one host a service caller acts for: it may read that host's desired state and write that
        host's status, nothing else. None for every other caller, and for a service account bound to
        no host (one that only validates tokens), which reads no host's state."""
        return self.user.host if self.is_service else None


@dataclass(frozen=True)
class Issued:
    token: str  # the secret itself, shown once (X-Subject-Token) and never stored
    caller: Caller


def open_store(db: str | None, *, read_only: bool = False) -> Store:
    """The database `db` names ($VMQOS_DB, else the host's default) with the identity tables in it."""
    return Store(db or None, read_only=read_only)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: object) -> str:
    if not isinstance(password, str) or not password:
        raise InvalidValue("password", "(not shown)", "give a non-empty password")
    if len(password) > 4096:
        raise InvalidValue("password", f"({len(password)} characters)", "give at most 4096 characters")
    return _HASHER.hash(password)


def _verify(password_hash: str, password: object) -> bool:
    try:
        return _HASHER.verify(password_hash, password if isinstance(password, str) else "")
    except (VerificationError, InvalidHashError):
        return False


def _locked(user: User, now: datetime, settings: AuthSettings) -> bool:
    if not settings.lockout_attempts or user.extra.get("options", {}).get("ignore_lockout_failure_attempts"):
        return False
    return (user.failed_auth_count >= settings.lockout_attempts and user.failed_auth_at is not None
            and user.failed_auth_at + settings.lockout_window > now)


def check_password(store: Store, user: User | None, password: object, *, now: datetime,
                   settings: AuthSettings = DEFAULT_SETTINGS) -> User | None:
    """The user if `password` is its password and it is not locked out; None otherwise (a failure counted).

    Every path costs one argon2 verification: an unknown user and a locked one are checked against
    the dummy hash, never against their own."""
    if user is None or _locked(user, now, settings):
        _verify(_dummy_hash(), password)
        return None
    if not _verify(user.password_hash, password):
        if settings.lockout_attempts:
            records.record_failed_auth(store, user.id, now, forget_before=now - settings.lockout_window)
        return None
    if user.failed_auth_count:
        records.reset_failed_auth(store, user.id)
    return user


def ensure_roles(store: Store) -> dict[str, Role]:
    """The four roles by name, made on first use (like keystone-manage bootstrap makes admin, member, reader)."""
    found = {role.name: role for role in records.list_roles(store) if role.name in ROLES}
    for name in ROLES:
        if name not in found:
            found[name] = records.ensure_role(store, uuid.uuid4().hex, name)
    return found


def check_name(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 255 or "\x00" in value:
        raise InvalidValue(field, value, "a name is 1 to 255 characters, not only spaces, without NUL")
    return value


def add_user(store: Store, name: str, password: str, project: str, role: str) -> User:
    """Create (or update the password of) `name` with `role` on `project`, making the project if needed.

    Idempotent, like `keystone-manage bootstrap`: running it again changes nothing but the password
    (and a changed password ends the user's tokens, as in Keystone)."""
    password_hash = hash_password(password)
    if role not in PROJECT_ROLES:
        raise InvalidValue("role", role, f"use one of {', '.join(PROJECT_ROLES)} (a service user is made with "
                                         "`vmqos identity user create NAME --role service --host HOST`)")
    check_name("user", name)
    check_name("project", project)
    roles = ensure_roles(store)
    found_project = records.find_project(store, name=project)
    if found_project is None:
        found_project = Project(uuid.uuid4().hex, project, DEFAULT_DOMAIN_ID)
        records.save_project(store, found_project)
    existing = records.find_user(store, name=name)
    if existing is not None and existing.host is not None:
        raise InvalidValue("user", name, f"it is a service user bound to host {existing.host}; give another name")
    user = User(existing.id if existing else uuid.uuid4().hex, name, DEFAULT_DOMAIN_ID, password_hash, True,
                existing.default_project_id if existing else found_project.id, None,
                existing.extra if existing else {})
    records.save_user(store, user)
    if existing is not None and not _verify(existing.password_hash, password):
        records.revoke_tokens(store, user_id=existing.id)
    records.assign(store, user.id, found_project.id, roles[role].id)
    return user


def bootstrap(store: Store, admin_password: str) -> User:
    """User admin with role admin on project admin, domain Default (keystone-manage bootstrap)."""
    return add_user(store, "admin", admin_password, "admin", "admin")


def _domain_id(ref: object) -> str | None:
    """The domain a name is looked up in; None when it names another domain than Default."""
    if not isinstance(ref, dict):
        return DEFAULT_DOMAIN_ID
    if ref.get("id") is not None:
        return DEFAULT_DOMAIN_ID if ref.get("id") == DEFAULT_DOMAIN_ID else None
    if ref.get("name") is not None:
        return DEFAULT_DOMAIN_ID if ref.get("name") == DEFAULT_DOMAIN_NAME else None
    return DEFAULT_DOMAIN_ID


def _find_user(store: Store, user_ref: dict[str, object]) -> User | None:
    if isinstance(user_ref.get("id"), str):
        return records.find_user(store, id=str(user_ref["id"]))
    if isinstance(user_ref.get("name"), str):
        domain = _domain_id(user_ref.get("domain"))
        return None if domain is None else records.find_user(store, name=str(user_ref["name"]), domain_id=domain)
    return None


def authenticate(store: Store, user_ref: dict[str, object], password: str,
                 project_ref: dict[str, object] | None, *, now: datetime | None = None,
                 settings: AuthSettings = DEFAULT_SETTINGS) -> Issued:
    """A new token for the user (by id, or by name in its domain) scoped to the project, if the password
    is right, the user is not locked out and holds a role there; NotAuthenticated otherwise, saying no
    more than Keystone."""
    at = (now or datetime.now(UTC)).replace(microsecond=0)
    user = check_password(store, _find_user(store, user_ref), password, now=at, settings=settings)
    if user is None or not user.enabled:
        raise NotAuthenticated(_UNAUTHENTICATED)
    project = None
    if project_ref is not None:
        if isinstance(project_ref.get("id"), str):
            project = records.find_project(store, id=str(project_ref["id"]))
        elif isinstance(project_ref.get("name"), str):
            domain = _domain_id(project_ref.get("domain"))
            project = None if domain is None else records.find_project(store, name=str(project_ref["name"]),
                                                                        domain_id=domain)
        if project is None or not project.enabled:
            raise NotAuthenticated(_UNAUTHENTICATED)
    roles = tuple(records.roles_on(store, user.id, project.id)) if project else ()
    if project is not None and not roles:
        raise NotAuthenticated(_UNAUTHENTICATED)
    token = secrets.token_urlsafe(32)
    record = TokenRecord(user.id, project.id if project else None, secrets.token_urlsafe(16)[:22], at,
                         at + settings.token_ttl)
    records.add_token(store, _digest(token), record)
    return Issued(token, Caller(user, project, roles, record.audit_id, record.issued_at, record.expires_at))


def validate(store: Store, token: str | None, *, now: datetime | None = None) -> Caller:
    """The caller behind a token; NotAuthenticated when it is unknown, revoked or expired, or its user or
    project was disabled or deleted since.

    Roles are read again on every call, so a role removed takes effect before the token expires."""
    if not token:
        raise NotAuthenticated(_UNAUTHENTICATED)
    record = records.get_token(store, _digest(token))
    if record is None or record.expires_at <= (now or datetime.now(UTC)):
        raise NotAuthenticated(_UNAUTHENTICATED)
    user = records.find_user(store, id=record.user_id)
    project = records.find_project(store, id=record.project_id) if record.project_id else None
    if user is None or not user.enabled or (record.project_id and (project is None or not project.enabled)):
        raise NotAuthenticated(_UNAUTHENTICATED)
    roles = tuple(records.roles_on(store, user.id, project.id)) if project else ()
    if project is not None and not roles:
        raise NotAuthenticated(_UNAUTHENTICATED)
    return Caller(user, project, roles, record.audit_id, record.issued_at, record.expires_at)


def revoke(store: Store, token: str) -> None:
    """Revoke a token; NotAuthenticated (Keystone's 404 is TokenNotFound, the API maps it) when unknown."""
    if not records.revoke_token(store, _digest(token)):
        raise NotAuthenticated(_UNAUTHENTICATED)
