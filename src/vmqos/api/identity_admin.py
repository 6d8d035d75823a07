"""Keystone v3's management subset: domains, projects, users, roles and role assignments.

Paths, bodies and status codes are Keystone's (keystone/api/projects.py, users.py, roles.py,
role_assignments.py, domains.py) as python-openstackclient 10.5.0 and openstacksdk 4.22 call them:
`openstack project|user|role|role assignment|domain ...`. Each entity carries Keystone's
`links.self`, each collection `links` with `self`, `previous`, `next`; a user shows no password
and `password_expires_at` null; a top-level project's `parent_id` is its domain. Who may do what
is decided in services.identity_admin; a body is read by services.identity_input.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response

from vmqos.api import auth
from vmqos.api.identity import base_url
from vmqos.api.models import KeystoneError
from vmqos.services import identity_admin as admin
from vmqos.services.authn import LocalAuthenticator
from vmqos.services.identity import Caller
from vmqos.services.identity_admin import Account, Domain, Grant
from vmqos.services.identity_input import HOST_ATTRIBUTE, read_password_change, read_project, read_user
from vmqos.store.identity import Project, Role

router = APIRouter(prefix="/v3", tags=["identity"])
_ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": KeystoneError} for c in (400, 401, 403, 404, 409, 501)}


def _who(request: Request) -> Caller:
    """A caller of this server's own identity service (501 when an external Keystone owns identity)."""
    return auth.local(request).validate(request.headers.get("X-Auth-Token"))


def _service(request: Request) -> LocalAuthenticator:
    return auth.local(request)


def _collection(request: Request, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: items, "links": {"self": str(request.url), "previous": None, "next": None}}


def _flag(request: Request, name: str) -> bool | None:
    """A boolean query filter as Keystone reads one: absent is None, '0'/'false' false, else true."""
    value = request.query_params.get(name)
    return None if value is None else value.lower() not in ("0", "false", "no", "off")


# ------------------------------------------------------------------ views


def domain_view(request: Request, domain: Domain) -> dict[str, Any]:
    return {"id": domain.id, "name": domain.name, "description": domain.description, "enabled": domain.enabled,
            "tags": [], "options": {}, "links": {"self": f"{base_url(request)}/v3/domains/{domain.id}"}}


def project_view(request: Request, project: Project) -> dict[str, Any]:
    extra = {k: v for k, v in project.extra.items() if k != "tags"}
    return {**extra, "id": project.id, "name": project.name, "domain_id": project.domain_id,
            "description": project.description, "enabled": project.enabled, "parent_id": project.domain_id,
            "is_domain": False, "tags": list(project.extra.get("tags", [])), "options": {},
            "links": {"self": f"{base_url(request)}/v3/projects/{project.id}"}}


def user_view(request: Request, user: Account) -> dict[str, Any]:
    view: dict[str, Any] = {**user.other, "id": user.id, "name": user.name, "domain_id": user.domain_id,
                            "enabled": user.enabled, "password_expires_at": None, "options": user.options,
                            "links": {"self": f"{base_url(request)}/v3/users/{user.id}"}}
    for key, value in (("default_project_id", user.default_project_id), ("description", user.description),
                       ("email", user.email), (HOST_ATTRIBUTE, user.host)):
        if value is not None:
            view[key] = value
    return view


def role_view(request: Request, role: Role) -> dict[str, Any]:
    return {"id": role.id, "name": role.name, "domain_id": None, "description": None, "options": {},
            "links": {"self": f"{base_url(request)}/v3/roles/{role.id}"}}


def assignment_view(request: Request, grant: Grant, names: bool) -> dict[str, Any]:
    domain = {"id": "default", "name": "Default"}
    role: dict[str, Any] = {"id": grant.role_id, **({"name": grant.role_name} if names else {})}
    user: dict[str, Any] = {"id": grant.user_id, **({"name": grant.user_name, "domain": domain} if names else {})}
    project: dict[str, Any] = {"id": grant.project_id,
                               **({"name": grant.project_name, "domain": domain} if names else {})}
    link = f"{base_url(request)}/v3/projects/{grant.project_id}/users/{grant.user_id}/roles/{grant.role_id}"
    return {"role": role, "user": user, "scope": {"project": project}, "links": {"assignment": link}}


# ------------------------------------------------------------------ domains


@router.get("/domains", responses=_ERRORS, summary="List domains (only Default)")
def list_domains(request: Request, who: Caller = Depends(_who)) -> dict[str, Any]:
    found = admin.list_domains(who, name=request.query_params.get("name"))
    return _collection(request, "domains", [domain_view(request, d) for d in found])


@router.get("/domains/{domain_id}", responses=_ERRORS)
def show_domain(request: Request, domain_id: str, who: Caller = Depends(_who)) -> dict[str, Any]:
    return {"domain": domain_view(request, admin.get_domain(who, domain_id))}


# ------------------------------------------------------------------ projects


@router.get("/projects", responses=_ERRORS, summary="List projects (filters: name, enabled, domain_id)")
def list_projects(request: Request, who: Caller = Depends(_who)) -> dict[str, Any]:
    found = admin.list_projects(_service(request).store, who, name=request.query_params.get("name"),
                                enabled=_flag(request, "enabled"), domain_id=request.query_params.get("domain_id"))
    return _collection(request, "projects", [project_view(request, p) for p in found])


@router.post("/projects", status_code=201, responses=_ERRORS)
def create_project(request: Request, body: Any = Body(None), who: Caller = Depends(_who)) -> dict[str, Any]:
    made = admin.create_project(_service(request).store, who, read_project(body, create=True))
    return {"project": project_view(request, made)}


@router.get("/projects/{project_id}", responses=_ERRORS)
def show_project(request: Request, project_id: str, who: Caller = Depends(_who)) -> dict[str, Any]:
    return {"project": project_view(request, admin.get_project(_service(request).store, who, project_id))}


@router.patch("/projects/{project_id}", responses=_ERRORS)
def update_project(request: Request, project_id: str, body: Any = Body(None),
                   who: Caller = Depends(_who)) -> dict[str, Any]:
    changed = admin.update_project(_service(request).store, who, project_id, read_project(body, create=False))
    return {"project": project_view(request, changed)}


@router.delete("/projects/{project_id}", status_code=204, responses=_ERRORS,
               summary="Delete a project (409 while it still owns QoS policies or other objects)")
def delete_project(request: Request, project_id: str, who: Caller = Depends(_who)) -> Response:
    admin.delete_project(_service(request).store, who, project_id)
    return Response(status_code=204)


# ------------------------------------------------------------------ users


@router.get("/users", responses=_ERRORS, summary="List users (filters: name, enabled)")
def list_users(request: Request, who: Caller = Depends(_who)) -> dict[str, Any]:
    found = admin.list_users(_service(request).store, who, name=request.query_params.get("name"),
                             enabled=_flag(request, "enabled"))
    return _collection(request, "users", [user_view(request, u) for u in found])


@router.post("/users", status_code=201, responses=_ERRORS,
             summary=f"Create a user ({HOST_ATTRIBUTE}: the host a service user is bound to)")
def create_user(request: Request, body: Any = Body(None), who: Caller = Depends(_who)) -> dict[str, Any]:
    return {"user": user_view(request, admin.create_user(_service(request).store, who, read_user(body, create=True)))}


@router.get("/users/{user_id}", responses=_ERRORS, summary="Show a user (an admin, or the user itself)")
def show_user(request: Request, user_id: str, who: Caller = Depends(_who)) -> dict[str, Any]:
    return {"user": user_view(request, admin.get_user(_service(request).store, who, user_id))}


@router.patch("/users/{user_id}", responses=_ERRORS)
def update_user(request: Request, user_id: str, body: Any = Body(None), who: Caller = Depends(_who)) -> dict[str, Any]:
    changed = admin.update_user(_service(request).store, who, user_id, read_user(body, create=False))
    return {"user": user_view(request, changed)}


@router.delete("/users/{user_id}", status_code=204, responses=_ERRORS)
def delete_user(request: Request, user_id: str, who: Caller = Depends(_who)) -> Response:
    admin.delete_user(_service(request).store, who, user_id)
    return Response(status_code=204)


@router.post("/users/{user_id}/password", status_code=204, responses=_ERRORS,
             summary="Change one's own password (knowing the original, as in Keystone; no token needed)")
def change_password(request: Request, user_id: str, body: Any = Body(None)) -> Response:
    service = _service(request)
    original, new = read_password_change(body)
    admin.change_password(service.store, user_id, original, new, now=service.clock(), settings=service.settings)
    return Response(status_code=204)


@router.get("/users/{user_id}/projects", responses=_ERRORS, summary="The projects a user holds a role on")
def list_user_projects(request: Request, user_id: str, who: Caller = Depends(_who)) -> dict[str, Any]:
    found = admin.user_projects(_service(request).store, who, user_id)
    return _collection(request, "projects", [project_view(request, p) for p in found])


# ------------------------------------------------------------------ roles and assignments


@router.get("/roles", responses=_ERRORS, summary="List roles: admin, member, reader, service")
def list_roles(request: Request, who: Caller = Depends(_who)) -> dict[str, Any]:
    found = admin.list_roles(_service(request).store, who, name=request.query_params.get("name"))
    return _collection(request, "roles", [role_view(request, r) for r in found])


@router.get("/roles/{role_id}", responses=_ERRORS)
def show_role(request: Request, role_id: str, who: Caller = Depends(_who)) -> dict[str, Any]:
    return {"role": role_view(request, admin.get_role(_service(request).store, who, role_id))}


_GRANT = "/projects/{project_id}/users/{user_id}/roles/{role_id}"


@router.put(_GRANT, status_code=204, responses=_ERRORS, summary="Give a user a role on a project")
def grant(request: Request, project_id: str, user_id: str, role_id: str, who: Caller = Depends(_who)) -> Response:
    admin.grant(_service(request).store, who, project_id, user_id, role_id)
    return Response(status_code=204)


@router.head(_GRANT, status_code=204, responses=_ERRORS, summary="Check a role assignment")
@router.get(_GRANT, status_code=204, include_in_schema=False)
def check_grant(request: Request, project_id: str, user_id: str, role_id: str,
                who: Caller = Depends(_who)) -> Response:
    admin.check_grant(_service(request).store, who, project_id, user_id, role_id)
    return Response(status_code=204)


@router.delete(_GRANT, status_code=204, responses=_ERRORS, summary="Remove a role assignment")
def revoke_grant(request: Request, project_id: str, user_id: str, role_id: str,
                 who: Caller = Depends(_who)) -> Response:
    admin.revoke_grant(_service(request).store, who, project_id, user_id, role_id)
    return Response(status_code=204)


@router.get("/projects/{project_id}/users/{user_id}/roles", responses=_ERRORS)
def list_grants_of(request: Request, project_id: str, user_id: str, who: Caller = Depends(_who)) -> dict[str, Any]:
    store = _service(request).store
    found = admin.list_grants(store, who, user_id=user_id, project_id=project_id)
    roles = {r.id: r for r in admin.list_roles(store, who)}
    return _collection(request, "roles", [role_view(request, roles[g.role_id]) for g in found if g.role_id in roles])


@router.get("/role_assignments", responses=_ERRORS,
            summary="List role assignments (filters: user.id, scope.project.id, role.id; include_names)")
def list_role_assignments(request: Request, who: Caller = Depends(_who)) -> dict[str, Any]:
    q = request.query_params
    names = bool(_flag(request, "include_names"))
    found = admin.list_grants(_service(request).store, who, user_id=q.get("user.id"),
                              project_id=q.get("scope.project.id"), role_id=q.get("role.id"))
    if any(k in q for k in ("group.id", "scope.domain.id", "scope.system")):
        found = []  # vmqos has no groups, and no roles on a domain or the system
    return _collection(request, "role_assignments", [assignment_view(request, g, names) for g in found])
