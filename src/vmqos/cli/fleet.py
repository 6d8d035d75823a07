"""`vmqos fleet hosts|instances|ports`, `vmqos port show|set|clear DEV --server URL --host H`: a fleet over /v1.

The command line talks to the server with services.server_client (keystoneauth1, the OS_* variables
the openstack CLI uses), never to its database: what it shows is what the server says. The client
is imported when a command runs: the other commands do not pay for keystoneauth1.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from vmqos.cli.output import print_json, stdout
from vmqos.core.units import human_rate

if TYPE_CHECKING:
    from datetime import datetime

    from vmqos.core.desired.ports import PortChange
    from vmqos.services.fleet_wire import Event, Port, Sample
    from vmqos.services.server_client import ServerClient

_ORDER = ("rate", "peak", "burst", "pps", "pps_burst", "dscp", "min", "min_pps")  # as a host file writes them
SERVER_HELP = "the vmqos server's URL (or $VMQOS_URL); credentials from OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME"


def client(server: str | None) -> ServerClient:
    from vmqos.services.server_client import ServerClient

    return ServerClient.from_env(server)


def _policy(port: Port) -> str:
    if port.policy is None:
        return "none (released)" if port.source else "-"
    parts = []
    for direction in ("ingress", "egress"):
        limits = port.policy.get(direction) or {}
        keys = sorted(limits, key=lambda k: (_ORDER.index(k) if k in _ORDER else len(_ORDER), k))
        shown = ", ".join(f"{k} {limits[k]}" for k in keys if not isinstance(limits[k], (list, dict)))
        if shown:
            parts.append(f"{direction} {shown}")
    return "; ".join(parts) or "nothing"


def _rates(sample: Sample | None) -> str:
    if sample is None:
        return "-"
    return " / ".join(f"{d}: {human_rate(r.delivered_bps)} of {human_rate(r.offered_bps)}, "
                      f"{human_rate(r.dropped_bps)} dropped"
                      for d, r in (("in", sample.ingress), ("out", sample.egress)))


def print_port(port: Port) -> None:
    """One device as `vmqos port show --server` shows it."""
    lines = [("port", f"{port.device} on host {port.host}"),
             ("neutron port", port.port_id or "-"),
             ("source", port.source or "reported by the agent only"),
             ("policy", f"{port.policy_name or '-'}: {_policy(port)}"),
             ("policy id", port.policy_id or "-"),
             ("revision", f"desired {port.desired_revision if port.desired_revision is not None else '-'}, "
                          f"applied {port.applied_revision if port.applied_revision is not None else '-'}"),
             ("status", port.status + (f": {port.message}" if port.message else "")),
             ("reported", port.reported_at.isoformat(timespec="seconds") if port.reported_at else "never"),
             ("rates", _rates(port.rates))]
    if port.quarantine is not None:
        lines.append(("quarantine", f"since {port.quarantine.since.isoformat()}: {port.quarantine.reason}"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        stdout.print(f"{key:<{width}}  {value}", markup=False)


@click.group()
def fleet() -> None:
    """A vmqos server's fleet: its hosts and their ports, as the agents report them.

    \b
    Examples:
      OS_USERNAME=admin OS_PASSWORD=... OS_PROJECT_NAME=admin vmqos fleet hosts --server http://ctl:9696
      vmqos fleet ports --server http://ctl:9696 --host compute1 --json
      vmqos fleet instances --server http://ctl:9696 --json
    """


@fleet.command("hosts")
@click.option("--server", envvar="VMQOS_URL", metavar="URL", help=SERVER_HELP)
@click.option("--json", "as_json", is_flag=True, help="print the hosts as JSON")
def hosts(server: str | None, as_json: bool) -> None:
    """Every host: its agent, its status (in_sync, drift, error, unknown, unreachable), its revisions."""
    found = client(server).hosts()
    if as_json:
        print_json([h.model_dump(mode="json") for h in found])
        return
    from rich.table import Table

    table = Table(show_edge=False)
    for column in ("host", "status", "ports", "desired rev", "applied rev", "agent", "last seen"):
        table.add_column(column)
    for h in found:
        table.add_row(h.name, h.status, str(h.ports), str(h.desired_revision),
                      "-" if h.applied_revision is None else str(h.applied_revision), h.agent_version or "-",
                      h.last_seen.isoformat(timespec="seconds") if h.last_seen else "never")
    stdout.print(table)


@fleet.command("ports")
@click.option("--server", envvar="VMQOS_URL", metavar="URL", help=SERVER_HELP)
@click.option("--host", "host", metavar="HOST", help="only this host's ports")
@click.option("--json", "as_json", is_flag=True, help="print the ports as JSON")
def ports(server: str | None, host: str | None, as_json: bool) -> None:
    """The ports the server wants limited (and those whose agent reported a problem), with their status."""
    print_ports(client(server).ports(host), as_json)


@fleet.command("instances")
@click.option("--server", envvar="VMQOS_URL", metavar="URL", help=SERVER_HELP)
@click.option("--host", "host", metavar="HOST", help="only this host's instances")
@click.option("--json", "as_json", is_flag=True, help="print the instances as JSON")
def instances(server: str | None, host: str | None, as_json: bool) -> None:
    """The instances the server knows from Neutron (its ports' device_id), their hosts and devices.

    \b
    Example: vmqos fleet instances --server http://ctl:9696 --host compute1
    """
    found = client(server).instances(host)
    if as_json:
        print_json([i.model_dump(mode="json") for i in found])
        return
    from rich.table import Table

    table = Table(show_edge=False)
    for column in ("instance", "hosts", "devices", "neutron ports"):
        table.add_column(column)
    for i in found:
        table.add_row(i.id, ", ".join(i.hosts) or "unbound", ", ".join(p.device for p in i.ports),
                      ", ".join(p.port_id for p in i.ports))
    stdout.print(table)


def print_ports(found: list[Port], as_json: bool) -> None:
    """`vmqos fleet ports` and `vmqos port list --server`: one row per device."""
    if as_json:
        print_json([p.model_dump(mode="json") for p in found])
        return
    from rich.table import Table

    table = Table(show_edge=False)
    for column in ("host", "device", "policy", "status", "rev (desired/applied)", "neutron port"):
        table.add_column(column)
    for p in found:
        revisions = "/".join("-" if r is None else str(r) for r in (p.desired_revision, p.applied_revision))
        table.add_row(p.host, p.device, _policy(p), p.status, revisions, p.port_id or "-")
    stdout.print(table)


def _needs_host(host: str | None) -> str:
    if not host:
        raise click.UsageError("--server needs --host HOST: the host the port is on")
    return host


def show_remote(server: str | None, host: str | None, device: str, as_json: bool) -> None:
    """`vmqos port show DEV --server URL --host HOST`."""
    found = client(server).port(device, _needs_host(host))
    if as_json:
        print_json(found.model_dump(mode="json"))
        return
    print_port(found)


def set_remote(server: str | None, host: str | None, device: str, change: PortChange, as_json: bool) -> None:
    """`vmqos port set DEV --server URL --host HOST ...`: the device as the server then has it."""
    from vmqos.services.fleet_remote import check_change
    from vmqos.services.fleet_remote import set_remote as set_on_server

    where = _needs_host(host)
    check_change(device, change)  # a bad value: the local command's message, before credentials are needed
    found = set_on_server(client(server), where, device, change)
    if as_json:
        print_json(found.model_dump(mode="json"))
        return
    print_port(found)


def clear_remote(server: str | None, host: str | None, device: str, as_json: bool) -> None:
    """`vmqos port clear DEV --server URL --host HOST`."""
    from vmqos.services.fleet_remote import clear_remote as clear_on_server

    where = _needs_host(host)
    clear_on_server(client(server), where, device)
    if as_json:
        print_json({"host": where, "device": device, "cleared": True})
        return
    stdout.print(f"{device} on host {where}: native limits released; its agent removes them", markup=False)


def list_remote(server: str | None, host: str | None, as_json: bool) -> None:
    """`vmqos port list --server URL [--host HOST]`."""
    print_ports(client(server).ports(host), as_json)


FOLLOW_WAIT_S = 25.0  # one long poll of `events --follow --server`; the server caps it at 60 s


def _event_text(ev: Event) -> str:
    where = f"{ev.host}/{ev.device}" + (f" ({ev.instance})" if ev.instance else "") + \
        (f" {ev.direction}" if ev.direction else "")
    return f"{ev.at:%Y-%m-%d %H:%M:%S} {ev.kind:<11} {where}: {ev.message}"


def events_remote(server: str | None, host: str | None, device: str | None, since: datetime | None, limit: int,
                  as_json: bool, follow: bool = False) -> None:
    """`vmqos events --server URL [--host HOST] [--follow]`: the newest `limit` events the agents reported,
    printed oldest first as the local command prints them (`since` filters what the server answered);
    with --follow, then every new one as it comes (the server's long poll, /v1/events/changes), one line
    each (one JSON object per line with --json) until Ctrl-C."""
    import json
    from datetime import UTC

    remote = client(server)
    newest = remote.events(host, device, limit).events
    found = [e for e in reversed(newest)
             if since is None or (e.at if e.at.tzinfo else e.at.replace(tzinfo=UTC)) >= since]
    if as_json and not follow:
        print_json([e.model_dump(mode="json") for e in found])
        return
    for ev in found:
        click.echo(json.dumps(ev.model_dump(mode="json")) if as_json else _event_text(ev))
    after = newest[0].id if newest else 0
    try:
        while follow:
            for ev in remote.event_changes(after, FOLLOW_WAIT_S, host, device).events:
                after = max(after, ev.id)
                click.echo(json.dumps(ev.model_dump(mode="json")) if as_json else _event_text(ev))
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


def usage_remote(server: str | None, host: str | None, device: str | None, granularity: str, min_bytes: int,
                 as_json: bool) -> None:
    """`vmqos usage --server URL --host HOST --port DEV`: the port's per-IP usage as its agent last reported it."""
    if not device:
        raise click.UsageError("--server needs --port DEV: a server keeps usage per port")
    found = client(server).usage(device, _needs_host(host)).usage
    lines = [] if found is None else [u for u in found.lines if u.granularity == granularity and u.bytes >= min_bytes]
    if as_json:
        print_json({"host": host, "device": device, "at": None if found is None else found.at.isoformat(),
                    "lines": [u.model_dump(mode="json") for u in lines]})
        return
    if found is None:
        stdout.print(f"{device} on host {host}: its agent has reported no usage yet", markup=False)
        return
    from rich.table import Table

    from vmqos.core.units import human_size

    table = Table(title=f"usage per {granularity} of {device} on {host} (reported {found.at:%Y-%m-%d %H:%M:%S})",
                  title_justify="left", show_edge=False)
    for column in ("period (UTC)", "direction", "instance address", "remote address", "bytes", "packets"):
        table.add_column(column, justify="right" if column in ("bytes", "packets") else "left")
    for u in sorted(lines, key=lambda u: (u.period_start, u.direction, -u.bytes)):
        table.add_row(f"{u.period_start:%Y-%m-%d %H:00}" if granularity == "hour" else f"{u.period_start:%Y-%m-%d}",
                      u.direction, u.local_ip, u.remote_ip, human_size(u.bytes), f"{u.packets:,}")
    stdout.print(table)


def quarantines_remote(server: str | None, host: str | None, as_json: bool) -> None:
    """`vmqos quarantine list --server URL [--host HOST]`: the quarantines in force."""
    found = client(server).quarantines(host).quarantines
    if as_json:
        print_json([q.model_dump(mode="json") for q in found])
        return
    if not found:
        stdout.print("no quarantine in force")
        return
    from rich.table import Table

    table = Table(show_edge=False)
    for column in ("host", "device", "since", "reason"):
        table.add_column(column)
    for q in found:
        table.add_row(q.host, q.device, q.since.isoformat(timespec="seconds"), q.reason)
    stdout.print(table)


@fleet.command("quarantines")
@click.option("--server", envvar="VMQOS_URL", metavar="URL", help=SERVER_HELP)
@click.option("--host", "host", metavar="HOST", help="only this host's quarantines")
@click.option("--json", "as_json", is_flag=True, help="print the quarantines as JSON")
def quarantines(server: str | None, host: str | None, as_json: bool) -> None:
    """The quarantines in force on every host, as their agents' monitors placed them (a flood's source).

    An agent reports a quarantine when its monitor places it and again when it is lifted, so that
    the server lists it fleet-wide, and still lists it while the agent is away.

    \b
    Examples:
      vmqos fleet quarantines --server http://ctl:9696
      vmqos fleet quarantines --server http://ctl:9696 --host compute1 --json
    """
    quarantines_remote(server, host, as_json)
