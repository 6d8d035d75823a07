"""Keystone's project lookups, for clients that turn a project's name into its id.

`openstack flavor create --private --project demo` and `openstack volume type create --project`
ask Keystone (`GET /v3/projects/demo`, then `GET /v3/projects?name=demo`) before they give Nova or
Cinder the id. Keystone's default policy: an admin reads every project; a project's user reads
its own project and may not list them (identity:get_project, identity:list_projects).
"""

from __future__ import annotations

from vmqos.core.errors import NotFound, VmqosError
from vmqos.services.identity import Caller
from vmqos.store import Store
from vmqos.store import identity as records
from vmqos.store.identity import Project


class Forbidden(VmqosError):
    """Keystone's 403 for an action its policy refuses the caller."""

    http_status = 403

    def __init__(self, action: str) -> None:
        super().__init__(f"You are not authorized to perform the requested action: {action}.")


def show_project(store: Store, caller: Caller, project_id: str) -> Project:
    """The project; 404 for the admin when there is none, 403 for a project user asking of another one
    (Keystone checks the policy before it says whether the project exists)."""
    if not caller.is_admin and (caller.project is None or caller.project.id != project_id):
        raise Forbidden("identity:get_project")
    project = records.find_project(store, id=project_id)
    if project is None:
        raise NotFound(f"Could not find project: {project_id}.")
    return project


def list_projects(store: Store, caller: Caller, name: str | None = None,
                  domain_id: str | None = None) -> list[Project]:
    if not caller.is_admin:
        raise Forbidden("identity:list_projects")
    return [p for p in records.list_projects(store)
            if (name is None or p.name == name) and (domain_id is None or p.domain_id == domain_id)]
