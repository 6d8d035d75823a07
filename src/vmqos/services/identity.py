"""Who is calling: the bootstrap, password authentication, tokens and their roles (Keystone's subset).

Enough of Keystone v3 for the real `openstack` client: users and projects in the Default domain,
the roles admin, member and reader on a project, password authentication scoped to a project,
tokens that expire after an hour. Front ends (the API server, `vmqos server init`) call only these.
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

ROLES = ("admin", "member", "reader")
TOKEN_LIFETIME = timedelta(hours=1)
_HASHER = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist: an unknown name costs as long as a wrong
    password, so timing does not tell which names exist. Made on first use: every `vmqos` command
    imports this module and must not pay for an argon2 hash."""
    return _HASHER.hash("vmqos-no-such-user")

__all__ = ["DEFAULT_DOMAIN_ID", "DEFAULT_DOMAIN_NAME", "ROLES", "Caller", "Issued", "NotAuthenticated",
           "Project", "Role", "User", "add_user", "open_store", "authenticate", "bootstrap", "revoke", "validate"]


class NotAuthenticated(VmqosError):
    """No valid credentials or token: Keystone's 401, whatever was wrong (it says no more either)."""

    http_status = 401


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


@dataclass(frozen=True)
class Issued:
    token: str  # the secret itself, shown once (X-Subject-Token) and never stored
    caller: Caller


def open_store(db: str | None) -> Store:
    """The database `db` names ($VMQOS_DB, else the host's default) with the identity tables in it."""
    return Store(db or None)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_password(password: str) -> None:
    if not isinstance(password, str) or not password:
        raise InvalidValue("password", password, "give a non-empty password")


def add_user(store: Store, name: str, password: str, project: str, role: str) -> User:
    """Create (or update the password of) `name` with `role` on `project`, making the project if needed.

    Idempotent, like `keystone-manage bootstrap`: running it again changes nothing but the password."""
    _check_password(password)
    if role not in ROLES:
        raise InvalidValue("role", role, f"use one of {', '.join(ROLES)}")
    for field, value in (("user", name), ("project", project)):
        if not value or not value.strip() or len(value) > 255:
            raise InvalidValue(field, value, "a name is 1 to 255 characters, not only spaces")
    for role_name in ROLES:
        records.ensure_role(store, uuid.uuid4().hex, role_name)
    found_project = records.find_project(store, name=project)
    if found_project is None:
        found_project = Project(uuid.uuid4().hex, project, DEFAULT_DOMAIN_ID)
        records.put_project(store, found_project)
    existing = records.find_user(store, name=name)
    user = User(existing.id if existing else uuid.uuid4().hex, name, DEFAULT_DOMAIN_ID,
                _HASHER.hash(password), True)
    records.put_user(store, user)
    role_row = records.ensure_role(store, uuid.uuid4().hex, role)
    records.assign(store, user.id, found_project.id, role_row.id)
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


def authenticate(store: Store, user_ref: dict[str, object], password: str,
                 project_ref: dict[str, object] | None, *, now: datetime | None = None) -> Issued:
    """A new token for the user (by id, or by name in its domain) scoped to the project, if the password
    is right and the user holds a role there; NotAuthenticated otherwise, saying no more than Keystone."""
    user = None
    if isinstance(user_ref.get("id"), str):
        user = records.find_user(store, id=str(user_ref["id"]))
    elif isinstance(user_ref.get("name"), str):
        domain = _domain_id(user_ref.get("domain"))
        user = None if domain is None else records.find_user(store, name=str(user_ref["name"]), domain_id=domain)
    try:
        _HASHER.verify(user.password_hash if user else _dummy_hash(), password if isinstance(password, str) else "")
    except (VerificationError, InvalidHashError):
        user = None
    if user is None or not user.enabled:
        raise NotAuthenticated("The request you have made requires authentication.")
    project = None
    if project_ref is not None:
        if isinstance(project_ref.get("id"), str):
            project = records.find_project(store, id=str(project_ref["id"]))
        elif isinstance(project_ref.get("name"), str):
            domain = _domain_id(project_ref.get("domain"))
            project = None if domain is None else records.find_project(store, name=str(project_ref["name"]),
                                                                        domain_id=domain)
        if project is None:
            raise NotAuthenticated("The request you have made requires authentication.")
    roles = tuple(records.roles_on(store, user.id, project.id)) if project else ()
    if project is not None and not roles:
        raise NotAuthenticated("The request you have made requires authentication.")
    issued_at = (now or datetime.now(UTC)).replace(microsecond=0)
    token = secrets.token_urlsafe(32)
    record = TokenRecord(user.id, project.id if project else None, secrets.token_urlsafe(16)[:22], issued_at,
                         issued_at + TOKEN_LIFETIME)
    records.add_token(store, _digest(token), record)
    return Issued(token, Caller(user, project, roles, record.audit_id, record.issued_at, record.expires_at))


def validate(store: Store, token: str | None, *, now: datetime | None = None) -> Caller:
    """The caller behind a token; NotAuthenticated when it is unknown, revoked or expired.

    Roles are read again on every call, so a role removed takes effect before the token expires."""
    if not token:
        raise NotAuthenticated("The request you have made requires authentication.")
    record = records.get_token(store, _digest(token))
    if record is None or record.expires_at <= (now or datetime.now(UTC)):
        raise NotAuthenticated("The request you have made requires authentication.")
    user = records.find_user(store, id=record.user_id)
    project = records.find_project(store, id=record.project_id) if record.project_id else None
    if user is None or not user.enabled or (record.project_id and project is None):
        raise NotAuthenticated("The request you have made requires authentication.")
    roles = tuple(records.roles_on(store, user.id, project.id)) if project else ()
    if project is not None and not roles:
        raise NotAuthenticated("The request you have made requires authentication.")
    return Caller(user, project, roles, record.audit_id, record.issued_at, record.expires_at)


def revoke(store: Store, token: str) -> None:
    """Revoke a token; NotAuthenticated (Keystone's 404 is TokenNotFound, the API maps it) when unknown."""
    if not records.revoke_token(store, _digest(token)):
        raise NotAuthenticated("The request you have made requires authentication.")
