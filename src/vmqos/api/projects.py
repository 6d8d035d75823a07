"""Keystone's project reads at /v3/projects: enough for a client to turn a project's name into its id.

Shapes are keystone/api/projects.py's (a project with its links; a list with the collection's
links); errors are Keystone's `{"error": {...}}`. Only reads: projects are made by `vmqos server
user` (and the identity slice of issue 14).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from vmqos.api.identity import base_url
from vmqos.services import identity, projects
from vmqos.services.identity import Caller
from vmqos.store import Store
from vmqos.store.identity import Project

router = APIRouter(prefix="/v3/projects", tags=["identity"])


def _caller(request: Request) -> Caller:
    store: Store = request.app.state.store
    return identity.validate(store, request.headers.get("X-Auth-Token"))


def _view(request: Request, project: Project) -> dict[str, Any]:
    return {"id": project.id, "name": project.name, "domain_id": project.domain_id, "description": "",
            "enabled": True, "parent_id": project.domain_id, "is_domain": False, "tags": [], "options": {},
            "links": {"self": f"{base_url(request)}/v3/projects/{project.id}"}}


@router.get("", summary="Projects (admin), by name and domain")
def list_projects(request: Request, who: Caller = Depends(_caller)) -> dict[str, Any]:
    found = projects.list_projects(request.app.state.store, who, request.query_params.get("name"),
                                   request.query_params.get("domain_id"))
    return {"projects": [_view(request, p) for p in found],
            "links": {"self": str(request.url), "previous": None, "next": None}}


@router.get("/{project_id}", summary="One project (admin, or a user of that project)")
def show_project(request: Request, project_id: str, who: Caller = Depends(_caller)) -> dict[str, Any]:
    return {"project": _view(request, projects.show_project(request.app.state.store, who, project_id))}
