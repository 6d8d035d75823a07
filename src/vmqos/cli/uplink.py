"""`vmqos uplink set|show|unset --server URL --host HOST`: a host's shared link on a vmqos server (issue 16).

A thin adapter over services.fleet_remote_uplink: the options parsed into an UplinkSpec (tc's rate
units, as everywhere else on the command line), the result printed as text or --json. The client
(keystoneauth1) is imported when a command runs, as `vmqos fleet` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import click

from vmqos.cli.output import print_json, print_notes, stdout
from vmqos.core.units import human_rate

if TYPE_CHECKING:
    from vmqos.services.fleet_wire import HostUplink
    from vmqos.services.server_client import ServerClient

SERVER_HELP = "the vmqos server's URL (or $VMQOS_URL); credentials from OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME"


def _where(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--host", "host", metavar="HOST", required=True,
                        help="the host whose uplink it is (its agent's --host)")(func)
    return click.option("--server", envvar="VMQOS_URL", metavar="URL", help=SERVER_HELP)(func)


def _client(server: str | None) -> ServerClient:
    from vmqos.services.server_client import ServerClient

    return ServerClient.from_env(server)


def _print(found: HostUplink) -> None:
    up = found.uplink
    status = found.status + (f": {found.message}" if found.message else "")
    lines = [("uplink", f"{up.device} on host {found.host}"),
             ("capacity", f"{human_rate(up.capacity_bps)} ({up.capacity_bps} bit/s)"),
             ("oversubscribe", "yes: guarantees above the capacity are scaled down to fit" if up.oversubscribe
              else "no: guarantees above the capacity are refused"),
             ("revision", str(found.revision)),
             ("status", status),
             ("reported", found.reported_at.isoformat(timespec="seconds") if found.reported_at else "never")]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        stdout.print(f"{key:<{width}}  {value}", markup=False)


@click.group()
def uplink() -> None:
    """A host's uplink on a vmqos server: the link where its ports' guaranteed minimums are held.

    The host's agent builds an HTB tree per direction on the uplink (a class per port with a
    guarantee, `min` in its policy or Neutron's minimum_bandwidth rule). Guarantees that add up to
    more than the capacity are refused, as Neutron's placement refuses them, unless
    --oversubscribe scales them down to fit. Admin only.

    \b
    Examples:
      vmqos uplink set --server http://ctl:9696 --host compute1 --device bond0 --capacity 10gbit
      vmqos uplink show --server http://ctl:9696 --host compute1 --json
      vmqos uplink unset --server http://ctl:9696 --host compute1
    """


@uplink.command("set")
@click.option("--device", required=True, metavar="DEV", help="the host's physical or bond device (a lab's wan0)")
@click.option("--capacity", required=True, metavar="RATE",
              help="what the link carries, in tc's units: 10gbit, 100mbit, 12500kbps (= 100 Mbit/s)")
@click.option("--oversubscribe/--no-oversubscribe", default=False,
              help="scale guarantees above the capacity down to fit (with a warning) instead of refusing them")
@click.option("--json", "as_json", is_flag=True, help="print the uplink as the server then has it, as JSON")
@_where
def uplink_set(device: str, capacity: str, oversubscribe: bool, as_json: bool, server: str | None,
               host: str) -> None:
    """Set (or change in place) a host's uplink; its agent plans it.

    The guarantees of the host's ports, as the server has them, must fit the capacity: if they do
    not, nothing is written and the one line says which ports and rates (the agent would refuse
    the same uplink). A guarantee raised later is refused by the agent: `vmqos uplink show` says so.

    \b
    Examples:
      vmqos uplink set --server http://ctl:9696 --host compute1 --device wan0 --capacity 100mbit
      vmqos uplink set --host compute1 --device bond0 --capacity 25gbit --oversubscribe   # $VMQOS_URL
    """
    from vmqos.services.fleet_remote_uplink import set_uplink, uplink_spec

    spec = uplink_spec(device, capacity, oversubscribe)  # a bad value: one line, before credentials are needed
    done = set_uplink(_client(server), host, spec)
    print_notes(done.notes)
    if as_json:
        print_json(done.uplink.model_dump(mode="json") | {"notes": [n.as_json() for n in done.notes]})
        return
    _print(done.uplink)


@uplink.command("show")
@click.option("--json", "as_json", is_flag=True, help="print the uplink and its status as JSON")
@_where
def uplink_show(as_json: bool, server: str | None, host: str) -> None:
    """A host's uplink and its agent's last word on it (in_sync, or error with the one line why).

    \b
    Examples:
      vmqos uplink show --server http://ctl:9696 --host compute1
      vmqos uplink show --server http://ctl:9696 --host compute1 --json | jq .status
    """
    from vmqos.services.fleet_remote_uplink import show_uplink

    found = show_uplink(_client(server), host)
    if as_json:
        print_json(found.model_dump(mode="json"))
        return
    _print(found)


@uplink.command("unset")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@_where
def uplink_unset(as_json: bool, server: str | None, host: str) -> None:
    """Remove a host's uplink: its agent releases the uplink's trees (the ports keep their own limits).

    \b
    Example: vmqos uplink unset --server http://ctl:9696 --host compute1
    """
    from vmqos.services.fleet_remote_uplink import unset_uplink

    unset_uplink(_client(server), host)
    if as_json:
        print_json({"host": host, "uplink": None, "removed": True})
        return
    stdout.print(f"uplink of host {host} removed; its agent releases the uplink's trees", markup=False)
