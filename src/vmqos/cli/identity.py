"""`vmqos identity ...`: projects, users and role assignments of the API server, at its database.

The operator at the database may do everything (services.identity_admin.OPERATOR), as with
`keystone-manage`; over the API the same use cases are Keystone's `/v3/projects`, `/v3/users`, ...
for an admin. Every read takes `--json` (the same serializer as the API's), every command `--db`.
"""

from __future__ import annotations

from typing import Any

import click

from vmqos.cli.output import print_json, stdout
from vmqos.cli.option_help import DB_HELP
from vmqos.core.errors import InvalidValue
from vmqos.services import identity
from vmqos.services import identity_admin as admin
from vmqos.services.identity_admin import OPERATOR
from vmqos.services.identity_input import ProjectInput, UserInput, host_name

_JSON = click.option("--json", "as_json", is_flag=True, help="print JSON")
_DB = click.option("--db", metavar="URL", help=DB_HELP)


def _table(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    from rich.table import Table

    table = Table(show_edge=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    stdout.print(table)


@click.group("identity")
def identity_group() -> None:
    """Projects, users and roles of `vmqos server` (Keystone's subset), at its database.

    \b
    Roles: admin (everything, every project), member (reads and writes its project's objects),
    reader (reads them), service (an agent's account: bound to one host with --host, no project's member).
    \b
    Examples:
      vmqos identity project create demo
      VMQOS_USER_PASSWORD=... vmqos identity user create alice --project demo --role member
      vmqos identity user create agent-h1 --role service --host h1 --password PW
      vmqos identity role add reader --user bob --project demo
      vmqos identity assignment list --project demo --json
    """


# ------------------------------------------------------------------ projects


@identity_group.group("project")
def project() -> None:
    """Projects: who owns QoS policies, ports and volumes.

    \b
    Examples:
      vmqos identity project create demo --description "the demo tenant"
      vmqos identity project list --json
      vmqos identity project delete demo      # refused while it still owns QoS policies
    """


@project.command("create")
@click.argument("name")
@click.option("--description", default="", help="free text")
@_DB
def project_create(name: str, description: str, db: str | None) -> None:
    """Create project NAME (domain Default)."""
    with identity.open_store(db) as store:
        made = admin.create_project(store, OPERATOR, ProjectInput(frozenset({"name", "description"}), name,
                                                                   description))
    click.echo(f"project {made.name} ({made.id}) created")


@project.command("list")
@_JSON
@_DB
def project_list(as_json: bool, db: str | None) -> None:
    """Every project."""
    with identity.open_store(db) as store:
        found = admin.list_projects(store, OPERATOR)
    if as_json:
        print_json(found)
        return
    _table(("id", "name", "enabled", "description"), [(p.id, p.name, p.enabled, p.description) for p in found])


@project.command("show")
@click.argument("name")
@_JSON
@_DB
def project_show(name: str, as_json: bool, db: str | None) -> None:
    """One project (by name or id) and who holds which role on it."""
    with identity.open_store(db) as store:
        found = admin.resolve_project(store, name)
        grants = admin.list_grants(store, OPERATOR, project_id=found.id)
    if as_json:
        print_json({"project": found, "assignments": grants})
        return
    stdout.print(f"project {found.name} ({found.id}), {'enabled' if found.enabled else 'disabled'}"
                 + (f": {found.description}" if found.description else ""))
    for grant in grants:
        stdout.print(f"  {grant.user_name}: {grant.role_name}")


@project.command("delete")
@click.argument("name")
@_DB
def project_delete(name: str, db: str | None) -> None:
    """Delete a project (by name or id) with its role assignments; refused while it owns objects."""
    with identity.open_store(db) as store:
        found = admin.resolve_project(store, name)
        admin.delete_project(store, OPERATOR, found.id)
    click.echo(f"project {found.name} ({found.id}) deleted")


# ------------------------------------------------------------------ users


@identity_group.group("user")
def user() -> None:
    """Users: people, and agents' service accounts (bound to one host).

    \b
    Examples:
      VMQOS_USER_PASSWORD=... vmqos identity user create alice --project demo --role member
      vmqos identity user create agent-h1 --role service --host h1 --password PW   # project "service"
      vmqos identity user show alice --json
      VMQOS_USER_PASSWORD=... vmqos identity user set-password alice
      vmqos identity user delete alice
    """


_PASSWORD = click.option("--password", required=True, envvar="VMQOS_USER_PASSWORD", metavar="PW",
                         help="the password (or $VMQOS_USER_PASSWORD, which `ps` does not show)")


@user.command("create")
@click.argument("name")
@_PASSWORD
@click.option("--project", metavar="PROJECT", help="give the user --role on this project (and make it its default)")
@click.option("--role", type=click.Choice(identity.ROLES), help="the role on --project (default member; service "
              "needs no --project: it uses project service, made if missing)")
@click.option("--host", metavar="HOST", help="the host a service user acts for (with --role service)")
@click.option("--email", help="kept and shown, as Keystone does")
@click.option("--description", help="kept and shown, as Keystone does")
@_DB
def user_create(name: str, password: str, project: str | None, role: str | None, host: str | None,
                email: str | None, description: str | None, db: str | None) -> None:
    """Create user NAME, with a role on a project if asked."""
    if host is not None and role != identity.SERVICE_ROLE:
        raise InvalidValue("--host", host, "only a service user is bound to a host: add --role service")
    if role == identity.SERVICE_ROLE:
        project = project or "service"
    elif project is not None:
        role = role or "member"
    elif role is not None:
        raise InvalidValue("--role", role, "a project role needs --project PROJECT")
    with identity.open_store(db) as store:
        target = None
        if project is not None:
            found = admin.list_projects(store, OPERATOR, name=project)
            if not found and role == identity.SERVICE_ROLE:
                found = [admin.create_project(store, OPERATOR, ProjectInput(frozenset({"name"}), project))]
            if not found:
                raise InvalidValue("--project", project, "no such project: create it with "
                                                         f"`vmqos identity project create {project}`")
            target = found[0]
        given = {"name", "password", "host", "default_project_id"} | ({"email"} if email else set()) \
            | ({"description"} if description else set())
        made = admin.create_user(store, OPERATOR, UserInput(
            frozenset(given), name, password, True, target.id if target else None, host_name(host), description,
            email))
        if target is not None and role is not None:
            admin.grant(store, OPERATOR, target.id, made.id, admin.resolve_role(store, role).id)
    where = f" with role {role} on project {target.name}" if target is not None else ""
    bound = f", bound to host {host}" if host else ""
    click.echo(f"user {made.name} ({made.id}) created{where}{bound}")


@user.command("list")
@click.option("--project", metavar="PROJECT", help="only users with a role on this project")
@_JSON
@_DB
def user_list(project: str | None, as_json: bool, db: str | None) -> None:
    """Every user (or those with a role on --project)."""
    with identity.open_store(db) as store:
        found = admin.list_users(store, OPERATOR)
        if project is not None:
            ids = {g.user_id for g in admin.list_grants(store, OPERATOR,
                                                         project_id=admin.resolve_project(store, project).id)}
            found = [u for u in found if u.id in ids]
    if as_json:
        print_json(found)
        return
    _table(("id", "name", "enabled", "host", "default project"),
           [(u.id, u.name, u.enabled, u.host, u.default_project_id) for u in found])


@user.command("show")
@click.argument("name")
@_JSON
@_DB
def user_show(name: str, as_json: bool, db: str | None) -> None:
    """One user (by name or id) and its roles."""
    with identity.open_store(db) as store:
        found = admin.account(admin.resolve_user(store, name))
        grants = admin.list_grants(store, OPERATOR, user_id=found.id)
    if as_json:
        print_json({"user": found, "assignments": grants})
        return
    stdout.print(f"user {found.name} ({found.id}), {'enabled' if found.enabled else 'disabled'}"
                 + (f", bound to host {found.host}" if found.host else ""))
    for key in ("email", "description"):
        if getattr(found, key):
            stdout.print(f"  {key}: {getattr(found, key)}")
    for grant in grants:
        stdout.print(f"  {grant.role_name} on project {grant.project_name}")


@user.command("set-password")
@click.argument("name")
@_PASSWORD
@_DB
def user_set_password(name: str, password: str, db: str | None) -> None:
    """Set a user's password; its tokens end (as in Keystone)."""
    with identity.open_store(db) as store:
        found = admin.resolve_user(store, name)
        admin.update_user(store, OPERATOR, found.id, UserInput(frozenset({"password"}), password=password))
    click.echo(f"user {found.name} ({found.id}): password set, its tokens revoked")


@user.command("delete")
@click.argument("name")
@_DB
def user_delete(name: str, db: str | None) -> None:
    """Delete a user (by name or id) with its role assignments and tokens."""
    with identity.open_store(db) as store:
        found = admin.resolve_user(store, name)
        admin.delete_user(store, OPERATOR, found.id)
    click.echo(f"user {found.name} ({found.id}) deleted")


# ------------------------------------------------------------------ roles and assignments


@identity_group.group("role")
def role() -> None:
    """Role assignments: a user's role on a project.

    \b
    Examples:
      vmqos identity role add member --user alice --project demo
      vmqos identity role remove member --user alice --project demo
      vmqos identity role list
    """


def _grant_targets(store: Any, role_name: str, user_ref: str, project_ref: str) -> tuple[str, str, str, str]:
    found_user, found_project = admin.resolve_user(store, user_ref), admin.resolve_project(store, project_ref)
    return admin.resolve_role(store, role_name).id, found_user.id, found_project.id, found_project.name


@role.command("add")
@click.argument("role_name", metavar="ROLE", type=click.Choice(identity.ROLES))
@click.option("--user", "user_ref", required=True, metavar="USER")
@click.option("--project", "project_ref", required=True, metavar="PROJECT")
@_DB
def role_add(role_name: str, user_ref: str, project_ref: str, db: str | None) -> None:
    """Give USER the role ROLE on PROJECT (idempotent)."""
    with identity.open_store(db) as store:
        role_id, user_id, project_id, project_name = _grant_targets(store, role_name, user_ref, project_ref)
        admin.grant(store, OPERATOR, project_id, user_id, role_id)
    click.echo(f"user {user_ref} has role {role_name} on project {project_name}")


@role.command("remove")
@click.argument("role_name", metavar="ROLE", type=click.Choice(identity.ROLES))
@click.option("--user", "user_ref", required=True, metavar="USER")
@click.option("--project", "project_ref", required=True, metavar="PROJECT")
@_DB
def role_remove(role_name: str, user_ref: str, project_ref: str, db: str | None) -> None:
    """Take the role ROLE on PROJECT from USER; its tokens there stop working at once."""
    with identity.open_store(db) as store:
        role_id, user_id, project_id, project_name = _grant_targets(store, role_name, user_ref, project_ref)
        admin.revoke_grant(store, OPERATOR, project_id, user_id, role_id)
    click.echo(f"user {user_ref} no longer has role {role_name} on project {project_name}")


@role.command("list")
@_JSON
@_DB
def role_list(as_json: bool, db: str | None) -> None:
    """The four roles and their ids."""
    with identity.open_store(db) as store:
        found = admin.list_roles(store, OPERATOR)
    if as_json:
        print_json(found)
        return
    _table(("id", "name"), [(r.id, r.name) for r in found])


@identity_group.group("assignment")
def assignment() -> None:
    """Who holds which role where.

    \b
    Examples:
      vmqos identity assignment list
      vmqos identity assignment list --user alice --json
    """


@assignment.command("list")
@click.option("--user", "user_ref", metavar="USER", help="only this user's (name or id)")
@click.option("--project", "project_ref", metavar="PROJECT", help="only on this project (name or id)")
@_JSON
@_DB
def assignment_list(user_ref: str | None, project_ref: str | None, as_json: bool, db: str | None) -> None:
    """Role assignments, with names."""
    with identity.open_store(db) as store:
        user_id = admin.resolve_user(store, user_ref).id if user_ref else None
        project_id = admin.resolve_project(store, project_ref).id if project_ref else None
        found = admin.list_grants(store, OPERATOR, user_id=user_id, project_id=project_id)
    if as_json:
        print_json(found)
        return
    _table(("role", "user", "project"), [(g.role_name, g.user_name, g.project_name) for g in found])
