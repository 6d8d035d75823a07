"""Keystone's project look-ups, as far as the openstack client needs them to turn a project name into
its id (`openstack network rbac create --target-project NAME`: openstacksdk's find_project tries
GET /v3/projects/NAME, then GET /v3/projects?name=NAME).

Keystone's default policies (keystone/common/policies/project.py): identity:get_project is an admin's
or the project's own reader's; identity:list_projects is an admin's. Anyone else gets 403, and the
client then passes the name on as given (neutron refuses it as no project id), as with a real Keystone.
"""

from __future__ import annotations

from vmqos.core.errors import VmqosError
from vmqos.services.identity import Caller
from vmqos.store import Store
from vmqos.store import identity as records
from vmqos.store.identity import Project


class Forbidden(VmqosError):
    """Keystone's 403: the policy does not allow this caller the action."""

    http_status = 403


class ProjectNotFound(VmqosError):
    http_status = 404


def _refused(action: str) -> Forbidden:
    return Forbidden(f"You are not authorized to perform the requested action: {action}.")


def show_project(store: Store, caller: Caller, project_id: str) -> Project:
    if not caller.is_admin and (caller.project is None or caller.project.id != project_id):
        raise _refused("identity:get_project")
    project = records.find_project(store, id=project_id)
    if project is None:
        raise ProjectNotFound(f"Could not find project: {project_id}.")
    return project


def list_projects(store: Store, caller: Caller, name: str | None = None) -> list[Project]:
    if not caller.is_admin:
        raise _refused("identity:list_projects")
    return records.list_projects(store, name=name)
