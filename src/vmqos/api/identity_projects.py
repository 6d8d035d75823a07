"""Keystone's GET /v3/projects and /v3/projects/{id}: enough for the openstack client to find a project
by name or id (services.projects says who may); errors are Keystone's `{"error": {...}}`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from vmqos.api.identity import base_url
from vmqos.api.network import caller, store_of
from vmqos.services import projects
from vmqos.services.identity import Caller
from vmqos.store.identity import Project

router = APIRouter(prefix="/v3", tags=["identity"])


def _view(request: Request, project: Project) -> dict[str, Any]:
    return {"id": project.id, "name": project.name, "domain_id": project.domain_id, "description": "",
            "enabled": True, "parent_id": project.domain_id, "is_domain": False, "tags": [], "options": {},
            "links": {"self": f"{base_url(request)}/v3/projects/{project.id}"}}


@router.get("/projects", summary="List projects (admins; filter: name)")
def list_projects(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    found = projects.list_projects(store_of(request), who, request.query_params.get("name"))
    return {"projects": [_view(request, p) for p in found],
            "links": {"self": f"{base_url(request)}/v3/projects", "previous": None, "next": None}}


@router.get("/projects/{project_id}", summary="A project (admins, or a member of it)")
def show_project(request: Request, project_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"project": _view(request, projects.show_project(store_of(request), who, project_id))}
