"""Who may use the API server: projects, users, role assignments and issued tokens (Keystone's subset).

The tables live beside the desired state but in a module of their own, registered on the same
metadata: every program that touches identity imports this module before it opens the Store, and
the Store creates what is missing (SQLite or PostgreSQL alike). A password is stored only as its
argon2 hash and a token only as its SHA-256 (a token is 256 random bits: a slow hash adds nothing,
and a stolen database must not hold a usable token).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Boolean, Index, String, delete, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from vmqos.store.schema import Base, UtcDateTime, table_of
from vmqos.store.store import Store

DEFAULT_DOMAIN_ID = "default"
DEFAULT_DOMAIN_NAME = "Default"
_W = "identity"  # the writer lock's name for every change here


class ProjectRow(Base):
    __tablename__ = "identity_projects"
    __table_args__ = (Index("ux_identity_projects_name", "domain_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    domain_id: Mapped[str] = mapped_column(String)


class UserRow(Base):
    __tablename__ = "identity_users"
    __table_args__ = (Index("ux_identity_users_name", "domain_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    domain_id: Mapped[str] = mapped_column(String)
    password_hash: Mapped[str] = mapped_column(String)
    enabled: Mapped[bool] = mapped_column(Boolean)


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
    user_id: Mapped[str] = mapped_column(String)
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


@dataclass(frozen=True)
class User:
    id: str
    name: str
    domain_id: str
    password_hash: str
    enabled: bool


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


def find_project(store: Store, *, id: str | None = None, name: str | None = None,
                 domain_id: str = DEFAULT_DOMAIN_ID) -> Project | None:
    p = projects.c
    query = select(p.id, p.name, p.domain_id)
    query = query.where(p.id == id) if id is not None else query.where(p.name == name, p.domain_id == domain_id)
    with store._tx("reading a project") as conn:
        row = conn.execute(query).first()
    return None if row is None else Project(*row)


def find_user(store: Store, *, id: str | None = None, name: str | None = None,
              domain_id: str = DEFAULT_DOMAIN_ID) -> User | None:
    u = users.c
    query = select(u.id, u.name, u.domain_id, u.password_hash, u.enabled)
    query = query.where(u.id == id) if id is not None else query.where(u.name == name, u.domain_id == domain_id)
    with store._tx("reading a user") as conn:
        row = conn.execute(query).first()
    return None if row is None else User(*row)


def put_project(store: Store, project: Project) -> None:
    with store._tx(f"saving project {project.name!r}", write=_W) as conn:
        conn.execute(insert(projects).values(id=project.id, name=project.name, domain_id=project.domain_id))


def put_user(store: Store, user: User) -> None:
    """Create the user, or replace its password hash and enabled flag (same id)."""
    u = users.c
    with store._tx(f"saving user {user.name!r}", write=_W) as conn:
        if conn.execute(select(u.id).where(u.id == user.id)).first():
            conn.execute(update(users).where(u.id == user.id).values(password_hash=user.password_hash,
                                                                       enabled=user.enabled))
        else:
            conn.execute(insert(users).values(id=user.id, name=user.name, domain_id=user.domain_id,
                                              password_hash=user.password_hash, enabled=user.enabled))


def ensure_role(store: Store, role_id: str, name: str) -> Role:
    r = roles.c
    with store._tx(f"saving role {name!r}", write=_W) as conn:
        row = conn.execute(select(r.id, r.name).where(r.name == name)).first()
        if row is not None:
            return Role(*row)
        conn.execute(insert(roles).values(id=role_id, name=name))
    return Role(role_id, name)


def assign(store: Store, user_id: str, project_id: str, role_id: str) -> None:
    a = assignments.c
    with store._tx("assigning a role", write=_W) as conn:
        if not conn.execute(select(a.role_id).where(a.user_id == user_id, a.project_id == project_id,
                                                    a.role_id == role_id)).first():
            conn.execute(insert(assignments).values(user_id=user_id, project_id=project_id, role_id=role_id))


def roles_on(store: Store, user_id: str, project_id: str) -> list[Role]:
    """The roles `user_id` holds on `project_id`, by name."""
    a, r = assignments.c, roles.c
    query = (select(r.id, r.name).join(assignments, a.role_id == r.id)
             .where(a.user_id == user_id, a.project_id == project_id).order_by(r.name))
    with store._tx("reading role assignments") as conn:
        return [Role(*row) for row in conn.execute(query).all()]


def add_token(store: Store, digest: str, record: TokenRecord) -> None:
    """Store an issued token (its digest) and drop the expired ones, so the table does not grow forever."""
    t = tokens.c
    with store._tx("issuing a token", write=_W) as conn:
        conn.execute(delete(tokens).where(t.expires_at < record.issued_at))
        conn.execute(insert(tokens).values(digest=digest, user_id=record.user_id, project_id=record.project_id,
                                           audit_id=record.audit_id, issued_at=record.issued_at,
                                           expires_at=record.expires_at))


def get_token(store: Store, digest: str) -> TokenRecord | None:
    t = tokens.c
    query = select(t.user_id, t.project_id, t.audit_id, t.issued_at, t.expires_at).where(t.digest == digest)
    with store._tx("reading a token") as conn:
        row = conn.execute(query).first()
    return None if row is None else TokenRecord(*row)


def revoke_token(store: Store, digest: str) -> bool:
    with store._tx("revoking a token", write=_W) as conn:
        return bool(conn.execute(delete(tokens).where(tokens.c.digest == digest)).rowcount)


def list_projects(store: Store) -> list[Project]:
    """Every project, by name."""
    p = projects.c
    with store._tx("reading projects") as conn:
        return [Project(*row) for row in conn.execute(select(p.id, p.name, p.domain_id).order_by(p.name)).all()]
