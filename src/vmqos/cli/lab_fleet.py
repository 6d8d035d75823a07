"""`vmqos lab up --hosts N` and its companions: a fleet of lab hosts, each with an agent, and one server.

The commands of `vmqos lab` call these when the lab is a fleet; `vmqos lab openstack` runs the real
`openstack` CLI as the fleet's admin inside the control namespace, where the server is reachable.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vmqos.cli.output import print_json, stdout
from vmqos.core.errors import NotFound
from vmqos.lab import fleet as fleets
from vmqos.lab.control_plane import OpenStack, openstack_cli


def print_fleet(status: fleets.FleetStatus) -> None:
    from rich.table import Table

    table = Table(title=f"fleet {status.name}: server {status.server_url} in netns {status.ctl_ns}, "
                        f"state in {status.state_dir}", title_justify="left", show_edge=False)
    for column in ("process", "where", "pid", "log"):
        table.add_column(column)
    for proc in status.processes:
        where = status.ctl_ns if proc.role == "server" else f"{proc.role}-host"
        table.add_row("vmqos server" if proc.role == "server" else f"vmqos agent --host {proc.role}", where,
                      str(proc.pid) if proc.pid else "[red]not running[/]", proc.log)
    stdout.print(table)


def fleet_up(name: str, hosts: int, instances: int, db: str | None, as_json: bool) -> None:
    status = fleets.fleet_up(name, hosts, instances, db)
    if as_json:
        print_json(status)
    else:
        print_fleet(status)
        stdout.print(f"the openstack CLI as the fleet's admin: vmqos lab openstack --name {name} -- network qos "
                     "policy list")


def fleet_status(name: str) -> fleets.FleetStatus | None:
    return fleets.fleet_status(name)


def fleet_down(name: str) -> list[str]:
    return fleets.fleet_down(name)


def admin_client(name: str, home: Path) -> OpenStack:
    env = fleets.admin_env(name)
    status = fleets.fleet_status(name)
    assert status is not None
    return OpenStack(openstack_cli(), env["OS_AUTH_URL"], env["OS_USERNAME"], env["OS_PASSWORD"],
                     env["OS_PROJECT_NAME"], home, netns=status.ctl_ns)


@click.command("openstack", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True})
@click.option("--name", default="lab", show_default=True, help="The fleet (`vmqos lab up --hosts N --name NAME`).")
@click.argument("args", nargs=-1, required=True, metavar="-- ARGS...")
def openstack(name: str, args: tuple[str, ...]) -> None:
    """Run the real `openstack` CLI as the fleet's admin, inside its control namespace; exit with its code.

    \b
    Examples:
      vmqos lab openstack -- network qos policy create bw-limiter
      vmqos lab openstack --name fleet -- port list --long
    """
    status = fleets.fleet_status(name)
    if status is None:
        raise NotFound(f"no fleet {name!r} is up: `vmqos lab up --hosts 2 --name {name}` builds one")
    client = admin_client(name, Path(status.state_dir))
    sys.exit(client.call(list(args)))
