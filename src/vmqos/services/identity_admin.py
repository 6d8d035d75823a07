"""Managing identity: projects, users, role assignments, the Default domain (Keystone v3's subset).

The use cases behind `/v3/projects`, `/v3/users`, `/v3/roles`, `/v3/role_assignments`,
`/v3/domains` and the `vmqos identity` commands. Who may do what follows Keystone's default
policies (keystone/common/policies) with the admin role on any project as the cloud admin: only an
admin manages; a user may read itself and the projects it holds roles on, and its token's project
and domain; everyone else gets Keystone's 403. The command line is the operator at the database
(`OPERATOR`), who may do everything, as `keystone-manage` may.

Two rules are vmqos's own:
- A user bound to a host (`vmqos_host`) is an agent's account: it holds the role `service` and no
  project role, so that a service caller is never a project's member (services.identity.Caller).
- A project that still owns rows elsewhere (QoS policies, ports, ...) is not deleted (409). Keystone
  deletes it and leaves them orphaned: objects of a project no one can be scoped to any more, which
  only an admin sees and which still bind limits on ports. Delete or move them first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from vmqos.core.errors import ConflictError, NotFound
from vmqos.services.identity import (
    DEFAULT_SETTINGS,
    PROJECT_ROLES,
    SERVICE_ROLE,
    AuthSettings,
    Caller,
    Forbidden,
    NotAuthenticated,
    check_password,
    ensure_roles,
    hash_password,
)
from vmqos.services.identity_input import ProjectInput, UserInput, invalid
from vmqos.store import Store
from vmqos.store import identity as records
from vmqos.store.ownership import project_references
from vmqos.store.identity import DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME, Project, Role, User


class Operator:
    """The operator at the database (`vmqos identity`, `vmqos server init`): may do everything."""


OPERATOR = Operator()
Actor = Caller | Operator


@dataclass(frozen=True)
class Domain:
    id: str
    name: str
    description: str
    enabled: bool


DEFAULT_DOMAIN = Domain(DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME, "The default domain", True)


@dataclass(frozen=True)
class Account:
    """A user as it is shown: never its password hash."""

    id: str
    name: str
    domain_id: str
    enabled: bool
    default_project_id: str | None
    host: str | None
    description: str | None
    email: str | None
    options: dict[str, Any]
    other: dict[str, Any]


@dataclass(frozen=True)
class Grant:
    """A role assignment with the names of what it links (Keystone's include_names)."""

    role_id: str
    role_name: str
    user_id: str
    user_name: str
    project_id: str
    project_name: str


def account(user: User) -> Account:
    extra = dict(user.extra)
    return Account(user.id, user.name, user.domain_id, user.enabled, user.default_project_id, user.host,
                   extra.pop("description", None), extra.pop("email", None), extra.pop("options", {}), extra)


def _admin(actor: Actor, action: str) -> None:
    if not isinstance(actor, Operator) and not actor.is_admin:
        raise Forbidden(action)


def _is_self(actor: Actor, user_id: str) -> bool:
    return isinstance(actor, Caller) and actor.user.id == user_id


def _project(store: Store, project_id: str) -> Project:
    found = records.find_project(store, id=project_id)
    if found is None:
        raise NotFound(f"Could not find project: {project_id}.")
    return found


def _user(store: Store, user_id: str) -> User:
    found = records.find_user(store, id=user_id)
    if found is None:
        raise NotFound(f"Could not find user: {user_id}.")
    return found


def _role(store: Store, role_id: str) -> Role:
    for role in ensure_roles(store).values():
        if role.id == role_id:
            return role
    raise NotFound(f"Could not find role: {role_id}.")


# ------------------------------------------------------------------ names or ids (the command line's)


def resolve_project(store: Store, ref: str) -> Project:
    found = records.find_project(store, id=ref) or records.find_project(store, name=ref)
    if found is None:
        raise NotFound(f"project {ref!r}: no project has that name or id (see `vmqos identity project list`)")
    return found


def resolve_user(store: Store, ref: str) -> User:
    found = records.find_user(store, id=ref) or records.find_user(store, name=ref)
    if found is None:
        raise NotFound(f"user {ref!r}: no user has that name or id (see `vmqos identity user list`)")
    return found


def resolve_role(store: Store, ref: str) -> Role:
    for role in ensure_roles(store).values():
        if ref in (role.id, role.name):
            return role
    raise NotFound(f"role {ref!r}: no role has that name or id; the roles are admin, member, reader, service")


# ------------------------------------------------------------------ domains


def list_domains(actor: Actor, *, name: str | None = None) -> list[Domain]:
    _admin(actor, "identity:list_domains")
    return [DEFAULT_DOMAIN] if name in (None, DEFAULT_DOMAIN.name) else []


def get_domain(actor: Actor, domain_id: str) -> Domain:
    """The Default domain: an admin's, and every project-scoped caller's own (its token's project's)."""
    if isinstance(actor, Caller) and not actor.is_admin and (actor.project is None or domain_id != DEFAULT_DOMAIN_ID):
        raise Forbidden("identity:get_domain")
    if domain_id != DEFAULT_DOMAIN_ID:
        raise NotFound(f"Could not find domain: {domain_id}.")
    return DEFAULT_DOMAIN


# ------------------------------------------------------------------ projects


def list_projects(store: Store, actor: Actor, *, name: str | None = None, enabled: bool | None = None,
                  domain_id: str | None = None) -> list[Project]:
    _admin(actor, "identity:list_projects")
    return [p for p in records.list_projects(store, name=name)
            if (enabled is None or p.enabled == enabled) and domain_id in (None, p.domain_id)]


def get_project(store: Store, actor: Actor, project_id: str) -> Project:
    own = isinstance(actor, Caller) and actor.project is not None and actor.project.id == project_id
    if not own:
        _admin(actor, "identity:get_project")
    return _project(store, project_id)


def user_projects(store: Store, actor: Actor, user_id: str) -> list[Project]:
    """The projects a user holds a role on (`GET /v3/users/{id}/projects`): an admin's, or the user's own."""
    if not _is_self(actor, user_id):
        _admin(actor, "identity:list_user_projects")
    _user(store, user_id)
    ids = {a.project_id for a in records.list_assignments(store, user_id=user_id)}
    return records.list_projects(store, ids=ids)


def create_project(store: Store, actor: Actor, values: ProjectInput) -> Project:
    _admin(actor, "identity:create_project")
    extra = dict(values.other) | {"tags": list(values.tags)}
    project = Project(uuid.uuid4().hex, values.name, DEFAULT_DOMAIN_ID, values.description, values.enabled, extra)
    records.save_project(store, project)
    return project


def update_project(store: Store, actor: Actor, project_id: str, values: ProjectInput) -> Project:
    _admin(actor, "identity:update_project")
    project = _project(store, project_id)
    changes: dict[str, Any] = {k: getattr(values, k) for k in ("name", "description", "enabled") if k in values.given}
    extra = dict(project.extra) | dict(values.other) | ({"tags": list(values.tags)} if "tags" in values.given else {})
    updated = replace(project, **changes, extra=extra)
    records.save_project(store, updated)
    if project.enabled and not updated.enabled:  # Keystone: a disabled project's tokens end at once
        records.revoke_tokens(store, project_id=project_id)
    return updated


def delete_project(store: Store, actor: Actor, project_id: str) -> None:
    """Delete a project with its role assignments and tokens, unless it still owns objects (409)."""
    _admin(actor, "identity:delete_project")
    project = _project(store, project_id)
    owned = project_references(store, project_id)
    if owned:
        what = ", ".join(f"{count} in {table}" for table, count in owned.items())
        raise ConflictError(f"Project {project.name} ({project.id}) still owns rows ({what}): delete them first "
                            "(e.g. `openstack network qos policy delete`); a deleted project would leave them "
                            "with an owner no one can be scoped to.")
    records.delete_project(store, project_id)


# ------------------------------------------------------------------ users


def list_users(store: Store, actor: Actor, *, name: str | None = None, enabled: bool | None = None) -> list[Account]:
    _admin(actor, "identity:list_users")
    return [account(u) for u in records.list_users(store, name=name) if enabled is None or u.enabled == enabled]


def get_user(store: Store, actor: Actor, user_id: str) -> Account:
    if not _is_self(actor, user_id):
        _admin(actor, "identity:get_user")
    return account(_user(store, user_id))


def _check_default_project(store: Store, project_id: str | None) -> None:
    if project_id is not None and records.find_project(store, id=project_id) is None:
        raise invalid("default_project_id", project_id, "the id of an existing project")


def _extra(values: UserInput, extra: dict[str, Any]) -> dict[str, Any]:
    extra = dict(extra) | dict(values.other)
    for key in ("description", "email", "options"):
        if key in values.given:
            extra[key] = getattr(values, key)
    return extra


def create_user(store: Store, actor: Actor, values: UserInput) -> Account:
    _admin(actor, "identity:create_user")
    _check_default_project(store, values.default_project_id)
    password_hash = hash_password(values.password) if values.password else "!"  # "!" matches no password
    user = User(uuid.uuid4().hex, values.name, DEFAULT_DOMAIN_ID, password_hash, values.enabled,
                values.default_project_id, values.host, _extra(values, {}))
    records.save_user(store, user)
    return account(user)


def _role_names_of(store: Store, user_id: str) -> set[str]:
    names = {role.id: role.name for role in ensure_roles(store).values()}
    return {names.get(a.role_id, "") for a in records.list_assignments(store, user_id=user_id)}


def _project_role_names(store: Store, user_id: str) -> set[str]:
    return _role_names_of(store, user_id) & set(PROJECT_ROLES)


def update_user(store: Store, actor: Actor, user_id: str, values: UserInput) -> Account:
    _admin(actor, "identity:update_user")
    user = _user(store, user_id)
    if "default_project_id" in values.given:
        _check_default_project(store, values.default_project_id)
    held = _project_role_names(store, user_id) if values.host is not None and "host" in values.given else set()
    if held:
        raise ConflictError(f"user {user.name} holds project roles ({', '.join(sorted(held))}): only a service "
                            "user is bound to a host; remove its project roles first")
    changes: dict[str, Any] = {k: getattr(values, k) for k in ("name", "enabled", "default_project_id", "host")
                               if k in values.given}
    if "password" in values.given:
        changes["password_hash"] = hash_password(values.password) if values.password else "!"
    updated = replace(user, **changes, extra=_extra(values, user.extra))
    records.save_user(store, updated)
    if "password" in values.given or (user.enabled and not updated.enabled):
        records.revoke_tokens(store, user_id=user_id)  # Keystone ends a user's tokens on both
    return account(updated)


def delete_user(store: Store, actor: Actor, user_id: str) -> None:
    _admin(actor, "identity:delete_user")
    _user(store, user_id)
    records.delete_user(store, user_id)


def change_password(store: Store, user_id: str, original: str, new: str, *, now: datetime | None = None,
                    settings: AuthSettings = DEFAULT_SETTINGS) -> None:
    """A user's own password change (`POST /v3/users/{id}/password`): whoever knows the original may,
    as in Keystone; a wrong original counts as a failed login and is refused while locked out."""
    at = now or datetime.now(UTC)
    user = check_password(store, records.find_user(store, id=user_id), original, now=at, settings=settings)
    if user is None or not user.enabled:
        raise NotAuthenticated("The request you have made requires authentication.")
    records.save_user(store, replace(user, password_hash=hash_password(new)))
    records.revoke_tokens(store, user_id=user_id)


# ------------------------------------------------------------------ roles and assignments


def list_roles(store: Store, actor: Actor, *, name: str | None = None) -> list[Role]:
    _admin(actor, "identity:list_roles")
    return [r for r in sorted(ensure_roles(store).values(), key=lambda r: r.name) if name in (None, r.name)]


def get_role(store: Store, actor: Actor, role_id: str) -> Role:
    _admin(actor, "identity:get_role")
    return _role(store, role_id)


def _grant_allowed(store: Store, user: User, role: Role) -> None:
    held = _role_names_of(store, user.id)
    if role.name == SERVICE_ROLE and held & set(PROJECT_ROLES):
        raise ConflictError(f"user {user.name} holds project roles ({', '.join(sorted(held))}): the service role "
                            "is for agents' own users; create one with `vmqos identity user create NAME --role "
                            "service --host HOST`")
    if role.name != SERVICE_ROLE and (user.host is not None or SERVICE_ROLE in held):
        bound = f"bound to host {user.host}" if user.host else "a service user"
        raise ConflictError(f"user {user.name} is {bound}: it holds only the service role, never a project "
                            f"role such as {role.name}")


def grant(store: Store, actor: Actor, project_id: str, user_id: str, role_id: str) -> None:
    """`PUT /v3/projects/{p}/users/{u}/roles/{r}`: idempotent, as in Keystone."""
    _admin(actor, "identity:create_grant")
    _project(store, project_id)
    user, role = _user(store, user_id), _role(store, role_id)
    _grant_allowed(store, user, role)
    records.assign(store, user_id, project_id, role_id)


def check_grant(store: Store, actor: Actor, project_id: str, user_id: str, role_id: str) -> None:
    _admin(actor, "identity:check_grant")
    if not records.list_assignments(store, user_id=user_id, project_id=project_id, role_id=role_id):
        raise NotFound(f"Could not find role assignment with role: {role_id}, user or group: {user_id}, "
                       f"project, domain, or system: {project_id}.")


def revoke_grant(store: Store, actor: Actor, project_id: str, user_id: str, role_id: str) -> None:
    _admin(actor, "identity:revoke_grant")
    if not records.unassign(store, user_id, project_id, role_id):
        raise NotFound(f"Could not find role assignment with role: {role_id}, user or group: {user_id}, "
                       f"project, domain, or system: {project_id}.")


def list_grants(store: Store, actor: Actor, *, user_id: str | None = None, project_id: str | None = None,
                role_id: str | None = None) -> list[Grant]:
    """The role assignments matching every filter given, with names (Keystone's include_names)."""
    _admin(actor, "identity:list_role_assignments")
    found = records.list_assignments(store, user_id=user_id, project_id=project_id, role_id=role_id)
    roles = {r.id: r.name for r in ensure_roles(store).values()}
    users = {u.id: u.name for u in records.list_users(store, ids={a.user_id for a in found})}
    projects = {p.id: p.name for p in records.list_projects(store, ids={a.project_id for a in found})}
    return [Grant(a.role_id, roles.get(a.role_id, ""), a.user_id, users.get(a.user_id, ""), a.project_id,
                  projects.get(a.project_id, "")) for a in found]
