"""`vmqos server`: the API server the real `openstack` CLI drives, and its users (`init`, `user`).

The server is started by uvicorn from the import string "vmqos.api.app:create_app": the command
line and the API are rooms side by side and neither imports the other (a contract). The database
is handed over in $VMQOS_DB. Listening on loopback is the default; the server needs no root.
"""

from __future__ import annotations

import os

import click

from vmqos.cli.port import DB_HELP
from vmqos.core.errors import InvalidValue
from vmqos.services import identity

DEFAULT_LISTEN = "127.0.0.1:9696"  # Neutron's port


def parse_listen(listen: str) -> tuple[str, int]:
    """ADDR:PORT (an IPv6 address in brackets) as (host, port)."""
    host, sep, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidValue("--listen", listen, "give ADDR:PORT, e.g. 127.0.0.1:9696 or [::1]:9696")
    return host, int(port)


@click.group(invoke_without_command=True)
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="ADDR:PORT",
              help="where to listen (0.0.0.0:9696 for every address)")
@click.option("--db", metavar="URL", help=DB_HELP)
@click.pass_context
def server(ctx: click.Context, listen: str, db: str | None) -> None:
    """Serve Keystone v3 tokens and Neutron QoS policies (/v3, /v2.0) for the openstack CLI.

    Run `vmqos server init --admin-password PW` once first; then
    OS_AUTH_URL=http://ADDR:PORT/v3 OS_USERNAME=admin OS_PROJECT_NAME=admin ... openstack network qos policy list
    """
    if ctx.invoked_subcommand is not None:
        return
    host, port = parse_listen(listen)
    url = db or os.environ.get("VMQOS_DB") or None
    identity.open_store(url).close()  # a database that cannot be opened is one line here, not a traceback
    if url:
        os.environ["VMQOS_DB"] = url
    import uvicorn  # lazy: ~100 ms that every other `vmqos` command would pay

    uvicorn.run("vmqos.api.app:create_app", factory=True, host=host, port=port, log_level="info")


@server.command()
@click.option("--admin-password", required=True, envvar="VMQOS_ADMIN_PASSWORD", metavar="PW",
              help="the admin user's password (or $VMQOS_ADMIN_PASSWORD, which `ps` does not show)")
@click.option("--db", metavar="URL", help=DB_HELP)
def init(admin_password: str, db: str | None) -> None:
    """Create user admin with role admin on project admin (domain Default); idempotent."""
    with identity.open_store(db) as store:
        user = identity.bootstrap(store, admin_password)
    click.echo(f"user {user.name} ({user.id}) has role admin on project admin")


@server.command()
@click.argument("name")
@click.option("--password", required=True, envvar="VMQOS_USER_PASSWORD", metavar="PW",
              help="the user's password (or $VMQOS_USER_PASSWORD)")
@click.option("--project", required=True, help="the project (made if missing)")
@click.option("--role", type=click.Choice(identity.ROLES), default="member", show_default=True)
@click.option("--db", metavar="URL", help=DB_HELP)
def user(name: str, password: str, project: str, role: str, db: str | None) -> None:
    """Create a user (or set its password) with ROLE on PROJECT; idempotent."""
    with identity.open_store(db) as store:
        found = identity.add_user(store, name, password, project, role)
    click.echo(f"user {found.name} ({found.id}) has role {role} on project {project}")
