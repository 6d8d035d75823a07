"""Who may use the API server: projects, users, role assignments and issued tokens (Keystone's subset).

The tables live beside the desired state but in a module of their own, registered on the same
metadata; the store's migrations make and change them (revisions 0002 and 0004). A password is stored only as its
argon2 hash and a token only as its SHA-256 (a token is 256 random bits: a slow hash adds nothing,
and a stolen database must not hold a usable token).

A user's failed logins are counted on its row (Keystone's `local_user.failed_auth_count` and
`failed_auth_at`), so that every server process sharing the database sees the same lockout.
Attributes Keystone keeps but vmqos does not act on (description, email, any other key a client
sends) are one JSON object, as Keystone's own `extra` column is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Text, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from vmqos.core.errors import ConflictError
from vmqos.store.schema import Base, UtcDateTime, table_of
from vmqos.store.store import Store

DEFAULT_DOMAIN_ID = "default"
DEFAULT_DOMAIN_NAME = "Default"
W = "identity"  # the writer lock's name for every change here


class DuplicateName(ConflictError):
    """A project or user of that name exists in the domain (Keystone's 409 Conflict)."""


class ProjectRow(Base):
    __tablename__ = "identity_projects"
    __table_args__ = (Index("ux_identity_projects_name", "domain_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    domain_id: Mapped[str] = mapped_column(String)
    description: Mapped[str] = mapped_column(String, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    extra: Mapped[str] = mapped_column(Text, default="{}")  # JSON: tags and any other attribute sent


class UserRow(Base):
    __tablename__ = "identity_users"
    __table_args__ = (Index("ux_identity_users_name", "domain_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    domain_id: Mapped[str] = mapped_column(String)
    password_hash: Mapped[str] = mapped_column(String)
    enabled: Mapped[bool] = mapped_column(Boolean)
    default_project_id: Mapped[str | None] = mapped_column(String, nullable=True)
    host: Mapped[str | None] = mapped_column(String, nullable=True)  # the one host a service user acts for
    extra: Mapped[str] = mapped_column(Text, default="{}")  # JSON: description, email, any other attribute
    failed_auth_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_auth_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class RoleRow(Base):
    __tablename__ = "identity_roles"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)


class AssignmentRow(Base):
    __tablename__ = "identity_assignments"

    user_id: Mapped[str] = mapped_column(String, primary_key=True)
    project_id: Mapped[str] = mapped_column(String, primary_key=True)
    role_id: Mapped[str] = mapped_column(String, primary_key=True)


class TokenRow(Base):
    __tablename__ = "identity_tokens"

    digest: Mapped[str] = mapped_column(String, primary_key=True)  # sha256 hex of the token
    user_id: Mapped[str] = mapped_column(String, index=True)
    project_id: Mapped[str | None] = mapped_column(String)
    audit_id: Mapped[str] = mapped_column(String)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


projects = table_of(ProjectRow)
users = table_of(UserRow)
roles = table_of(RoleRow)
assignments = table_of(AssignmentRow)
tokens = table_of(TokenRow)


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    domain_id: str
    description: str = ""
    enabled: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class User:
    id: str
    name: str
    domain_id: str
    password_hash: str = field(repr=False)
    enabled: bool
    default_project_id: str | None = None
    host: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    failed_auth_count: int = 0
    failed_auth_at: datetime | None = None


@dataclass(frozen=True)
class Role:
    id: str
    name: str


@dataclass(frozen=True)
class TokenRecord:
    user_id: str
    project_id: str | None
    audit_id: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Assignment:
    user_id: str
    project_id: str
    role_id: str


def _extra(text: str | None) -> dict[str, Any]:
    value = json.loads(text or "{}")
    return value if isinstance(value, dict) else {}


# ------------------------------------------------------------------ projects

_P = projects.c
_PROJECT_COLUMNS = (_P.id, _P.name, _P.domain_id, _P.description, _P.enabled, _P.extra)


def _project(row: Any) -> Project:
    return Project(row.id, row.name, row.domain_id, row.description or "", bool(row.enabled), _extra(row.extra))


def _storable(*values: str | None) -> bool:
    """False for a string no row can hold: PostgreSQL refuses NUL in text (an error, where SQLite matches
    nothing); an id or name from a URL or a token request may carry one."""
    return not any(value is not None and "\x00" in value for value in values)


def find_project(store: Store, *, id: str | None = None, name: str | None = None,
                 domain_id: str = DEFAULT_DOMAIN_ID) -> Project | None:
    if not _storable(id, name, domain_id):
        return None
    query = select(*_PROJECT_COLUMNS)
    query = query.where(_P.id == id) if id is not None else query.where(_P.name == name, _P.domain_id == domain_id)
    with store._tx("reading a project") as conn:
        row = conn.execute(query).first()
    return None if row is None else _project(row)


def list_projects(store: Store, *, name: str | None = None, ids: set[str] | None = None) -> list[Project]:
    if not _storable(name, *(ids or ())):
        return []
    query = select(*_PROJECT_COLUMNS).order_by(_P.name, _P.id)
    if name is not None:
        query = query.where(_P.name == name)
    if ids is not None:
        query = query.where(_P.id.in_(sorted(ids)))
    with store._tx("listing projects") as conn:
        return [_project(row) for row in conn.execute(query).all()]


def _name_taken(conn: Connection, table: Any, kind: str, name: str, domain_id: str, own_id: str) -> None:
    c = table.c
    if conn.execute(select(c.id).where(c.name == name, c.domain_id == domain_id, c.id != own_id)).first():
        raise DuplicateName(f"Conflict occurred attempting to store {kind} - Duplicate entry found with name "
                            f"{name} at domain ID {domain_id}.")


def save_project(store: Store, project: Project) -> None:
    """Create the project, or replace its attributes (same id); a name taken in the domain is a conflict."""
    values = {"name": project.name, "domain_id": project.domain_id, "description": project.description,
              "enabled": project.enabled, "extra": json.dumps(project.extra, sort_keys=True)}
    with store._tx(f"saving project {project.name!r}", write=W) as conn:
        _name_taken(conn, projects, "project", project.name, project.domain_id, project.id)
        if conn.execute(select(_P.id).where(_P.id == project.id)).first():
            conn.execute(update(projects).where(_P.id == project.id).values(**values))
        else:
            conn.execute(insert(projects).values(id=project.id, **values))


def delete_project(store: Store, project_id: str) -> bool:
    """Delete the project with its role assignments and the tokens scoped to it (Keystone deletes both)."""
    with store._tx("deleting a project", write=W) as conn:
        conn.execute(delete(assignments).where(assignments.c.project_id == project_id))
        conn.execute(delete(tokens).where(tokens.c.project_id == project_id))
        return bool(conn.execute(delete(projects).where(_P.id == project_id)).rowcount)


# ------------------------------------------------------------------ users

_U = users.c
_USER_COLUMNS = (_U.id, _U.name, _U.domain_id, _U.password_hash, _U.enabled, _U.default_project_id, _U.host,
                 _U.extra, _U.failed_auth_count, _U.failed_auth_at)


def _user(row: Any) -> User:
    return User(row.id, row.name, row.domain_id, row.password_hash, bool(row.enabled), row.default_project_id,
                row.host, _extra(row.extra), row.failed_auth_count or 0, row.failed_auth_at)


def find_user(store: Store, *, id: str | None = None, name: str | None = None,
              domain_id: str = DEFAULT_DOMAIN_ID) -> User | None:
    if not _storable(id, name, domain_id):
        return None
    query = select(*_USER_COLUMNS)
    query = query.where(_U.id == id) if id is not None else query.where(_U.name == name, _U.domain_id == domain_id)
    with store._tx("reading a user") as conn:
        row = conn.execute(query).first()
    return None if row is None else _user(row)


def list_users(store: Store, *, name: str | None = None, ids: set[str] | None = None) -> list[User]:
    if not _storable(name, *(ids or ())):
        return []
    query = select(*_USER_COLUMNS).order_by(_U.name)
    if name is not None:
        query = query.where(_U.name == name)
    if ids is not None:
        query = query.where(_U.id.in_(sorted(ids)))
    with store._tx("listing users") as conn:
        return [_user(row) for row in conn.execute(query).all()]


def save_user(store: Store, user: User) -> None:
    """Create the user, or replace its attributes (same id); the failed-login count is left as it is."""
    values = {"name": user.name, "domain_id": user.domain_id, "password_hash": user.password_hash,
              "enabled": user.enabled, "default_project_id": user.default_project_id, "host": user.host,
              "extra": json.dumps(user.extra, sort_keys=True)}
    with store._tx(f"saving user {user.name!r}", write=W) as conn:
        _name_taken(conn, users, "user", user.name, user.domain_id, user.id)
        if conn.execute(select(_U.id).where(_U.id == user.id)).first():
            conn.execute(update(users).where(_U.id == user.id).values(**values))
        else:
            conn.execute(insert(users).values(id=user.id, failed_auth_count=0, **values))


def delete_user(store: Store, user_id: str) -> bool:
    """Delete the user with its role assignments and its tokens."""
    with store._tx("deleting a user", write=W) as conn:
        conn.execute(delete(assignments).where(assignments.c.user_id == user_id))
        conn.execute(delete(tokens).where(tokens.c.user_id == user_id))
        return bool(conn.execute(delete(users).where(_U.id == user_id)).rowcount)


def record_failed_auth(store: Store, user_id: str, at: datetime, *, forget_before: datetime) -> int:
    """Count one failed login at `at`; failures before `forget_before` are forgotten first. The new count."""
    with store._tx("recording a failed login", write=W) as conn:
        row = conn.execute(select(_U.failed_auth_count, _U.failed_auth_at).where(_U.id == user_id)).first()
        if row is None:
            return 0
        recent = row.failed_auth_at is not None and row.failed_auth_at >= forget_before
        count = (row.failed_auth_count or 0) + 1 if recent else 1
        conn.execute(update(users).where(_U.id == user_id).values(failed_auth_count=count, failed_auth_at=at))
    return count


def reset_failed_auth(store: Store, user_id: str) -> None:
    with store._tx("resetting the failed logins", write=W) as conn:
        conn.execute(update(users).where(_U.id == user_id).values(failed_auth_count=0, failed_auth_at=None))


# ------------------------------------------------------------------ roles and assignments


def ensure_role(store: Store, role_id: str, name: str) -> Role:
    r = roles.c
    with store._tx(f"saving role {name!r}", write=W) as conn:
        row = conn.execute(select(r.id, r.name).where(r.name == name)).first()
        if row is not None:
            return Role(*row)
        conn.execute(insert(roles).values(id=role_id, name=name))
    return Role(role_id, name)


def list_roles(store: Store) -> list[Role]:
    with store._tx("listing roles") as conn:
        return [Role(*row) for row in conn.execute(select(roles.c.id, roles.c.name).order_by(roles.c.name))]


def assign(store: Store, user_id: str, project_id: str, role_id: str) -> None:
    a = assignments.c
    with store._tx("assigning a role", write=W) as conn:
        if not conn.execute(select(a.role_id).where(a.user_id == user_id, a.project_id == project_id,
                                                    a.role_id == role_id)).first():
            conn.execute(insert(assignments).values(user_id=user_id, project_id=project_id, role_id=role_id))


def unassign(store: Store, user_id: str, project_id: str, role_id: str) -> bool:
    a = assignments.c
    if not _storable(user_id, project_id, role_id):
        return False
    with store._tx("removing a role assignment", write=W) as conn:
        return bool(conn.execute(delete(assignments).where(a.user_id == user_id, a.project_id == project_id,
                                                           a.role_id == role_id)).rowcount)


def list_assignments(store: Store, *, user_id: str | None = None, project_id: str | None = None,
                     role_id: str | None = None) -> list[Assignment]:
    a = assignments.c
    if not _storable(user_id, project_id, role_id):
        return []
    query = select(a.user_id, a.project_id, a.role_id).order_by(a.project_id, a.user_id, a.role_id)
    for column, value in ((a.user_id, user_id), (a.project_id, project_id), (a.role_id, role_id)):
        if value is not None:
            query = query.where(column == value)
    with store._tx("listing role assignments") as conn:
        return [Assignment(*row) for row in conn.execute(query).all()]


def roles_on(store: Store, user_id: str, project_id: str) -> list[Role]:
    """The roles `user_id` holds on `project_id`, by name."""
    a, r = assignments.c, roles.c
    query = (select(r.id, r.name).join(assignments, a.role_id == r.id)
             .where(a.user_id == user_id, a.project_id == project_id).order_by(r.name))
    with store._tx("reading role assignments") as conn:
        return [Role(*row) for row in conn.execute(query).all()]


# ------------------------------------------------------------------ tokens


def add_token(store: Store, digest: str, record: TokenRecord) -> None:
    """Store an issued token (its digest) and drop the expired ones, so the table does not grow forever."""
    t = tokens.c
    with store._tx("issuing a token", write=W) as conn:
        conn.execute(delete(tokens).where(t.expires_at < record.issued_at))
        conn.execute(insert(tokens).values(digest=digest, user_id=record.user_id, project_id=record.project_id,
                                           audit_id=record.audit_id, issued_at=record.issued_at,
                                           expires_at=record.expires_at))


def get_token(store: Store, digest: str) -> TokenRecord | None:  # a digest is hex: never a NUL
    t = tokens.c
    query = select(t.user_id, t.project_id, t.audit_id, t.issued_at, t.expires_at).where(t.digest == digest)
    with store._tx("reading a token") as conn:
        row = conn.execute(query).first()
    return None if row is None else TokenRecord(*row)


def revoke_token(store: Store, digest: str) -> bool:
    with store._tx("revoking a token", write=W) as conn:
        return bool(conn.execute(delete(tokens).where(tokens.c.digest == digest)).rowcount)


def revoke_tokens(store: Store, *, user_id: str | None = None, project_id: str | None = None) -> int:
    """Revoke every token of a user or scoped to a project (a new password, a disabled user or project
    ends them, as in Keystone)."""
    query = delete(tokens)
    if user_id is not None:
        query = query.where(tokens.c.user_id == user_id)
    if project_id is not None:
        query = query.where(tokens.c.project_id == project_id)
    if user_id is None and project_id is None:
        raise ValueError("revoke_tokens needs a user or a project")
    with store._tx("revoking tokens", write=W) as conn:
        return int(conn.execute(query).rowcount)
