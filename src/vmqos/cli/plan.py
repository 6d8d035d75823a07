"""`vmqos plan`: a dry run for one port: the effective limits and the exact commands."""

from __future__ import annotations

import os
from typing import Any

import click

from vmqos.cli.convert import read_input
from vmqos.cli.output import print_json, print_notes, stdout
from vmqos.core.desired.effective import QosSource, combine
from vmqos.core.formats import neutron, nova
from vmqos.core.formats.domiftune import CLEAR, parse_direction
from vmqos.core.model.host import EgressMode, check_device_name
from vmqos.core.model.network import DirectionQos, NetworkQos
from vmqos.core.plan.diff import diff
from vmqos.core.plan.planner import Enforced, PortPlan, plan_port
from vmqos.core.plan.render import render
from vmqos.core.units import human_pps, human_rate, human_size


def _direction_arg(option: str, text: str | None) -> DirectionQos:
    if text is None:
        return DirectionQos()
    parsed = parse_direction(option, text)
    if parsed is CLEAR:
        return DirectionQos()
    limit, floor = parsed
    return DirectionQos(bandwidth=limit, min_bps=floor)


def _stem(path: str) -> str:
    """A flavor file's name without folder and extension (`m1.resquota.specs` -> `m1.resquota`)."""
    name = os.path.basename(path)
    return name.rsplit(".", 1)[0] if name.count(".") > 1 or name.endswith((".json", ".specs", ".txt")) else name


def build_sources(inbound: str | None, outbound: str | None, policy: str | None,
                  flavor: str | None) -> tuple[list[QosSource], list[Any]]:
    """The port's sources in precedence order: its own limits, its policy, its flavor."""
    sources: list[QosSource] = []
    notes: list[Any] = []
    own = NetworkQos(ingress=_direction_arg("--inbound", inbound), egress=_direction_arg("--outbound", outbound))
    if not own.is_empty:
        sources.append(QosSource("command line --inbound/--outbound", own))
    if policy is not None:
        pol, pol_notes = neutron.read_policy(read_input(policy))
        notes += pol_notes
        sources.append(QosSource(f"port policy {pol.name or policy}", pol.qos))
    if flavor is not None:
        doc = nova.read(read_input(flavor))
        notes += doc.notes
        if doc.network is not None:
            sources.append(QosSource(f"flavor {doc.name or _stem(flavor)}", doc.network))
    return sources, notes


def _fmt(enforced: Enforced) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    src = enforced.source
    if enforced.rate_bps is not None:
        rows.append(("rate", f"{enforced.rate_bps:,} bit/s ({human_rate(enforced.rate_bps)})", src["rate_bps"]))
    if enforced.peak_bps is not None:
        rows.append(("peak", f"{enforced.peak_bps:,} bit/s ({human_rate(enforced.peak_bps)})", src["peak_bps"]))
    if enforced.burst_bytes is not None:
        rows.append(("burst", f"{enforced.burst_bytes:,} B ({human_size(enforced.burst_bytes)})",
                     src["burst_bytes"]))
    if enforced.pps is not None:
        rows.append(("pps", human_pps(enforced.pps), src["pps"]))
        rows.append(("pps burst", f"{enforced.pps_burst:,} packets", src.get("pps_burst", "")))
    if enforced.dscp is not None:
        rows.append(("dscp", f"{enforced.dscp} (TOS {enforced.dscp << 2:#04x})", src["dscp"]))
    if enforced.min_bps is not None:
        rows.append(("minimum", f"{enforced.min_bps:,} bit/s ({human_rate(enforced.min_bps)})", src["min_bps"]))
    for c in enforced.classes:
        rows.append((f"class {c['name']}", f"{c['share_percent']} % of the rate", src.get("classes", "")))
    if enforced.mechanism:
        rows.append(("enforced by", enforced.mechanism, ""))
    return rows or [("", "no limit", "")]


def plan_json(result: PortPlan, commands: list[str], notes: list[Any]) -> dict[str, Any]:
    return {
        "port": result.port,
        "ingress": result.ingress.as_json(),
        "egress": result.egress.as_json(),
        "commands": commands,
        "notes": [n.as_json() for n in notes],
    }


def print_plan(result: PortPlan, commands: list[str]) -> None:
    from rich.table import Table

    table = Table(title=f"effective QoS of port {result.port}", title_justify="left", show_edge=False)
    for column in ("direction", "", "value", "source"):
        table.add_column(column)
    for name, enforced in (("ingress (to instance)", result.ingress), ("egress (from instance)", result.egress)):
        for i, (what, value, source) in enumerate(_fmt(enforced)):
            table.add_row(name if i == 0 else "", what, value, source)
    stdout.print(table)
    stdout.print()
    stdout.print("commands:" if commands else "commands: none (no limit)")
    for command in commands:
        stdout.print(command, markup=False)


def _from_host_file(path: str, device: str | None) -> PortPlan:
    """The plan of the host file's uplink, or of its port `device`, as `vmqos apply` would plan it."""
    from vmqos.core.formats.hostfile import read_host
    from vmqos.core.plan.host import plan_host

    state = read_host(read_input(path))
    if device is None:
        if state.uplink is None:
            raise click.UsageError(f"{path} names no uplink (`uplink: {{device: wan0, capacity: 10gbit}}`)")
        device = state.uplink.device
    plans = plan_host(state)
    if device not in plans:
        raise click.UsageError(f"{path} has no port or uplink {device!r}")
    return plans[device]


@click.command()
@click.option("--port", "device", help="The port device (a VM's tap, a veth).")
@click.option("--uplink-of", "host_file", type=click.Path(dir_okay=False, allow_dash=True),
              help="A host file: plan its uplink (the guaranteed minimums of its ports), or with --port that port.")
@click.option("--inbound", metavar="A,P,B[,F]", help="Towards the instance, domiftune units (kB/s, KiB).")
@click.option("--outbound", metavar="A,P,B", help="From the instance, domiftune units (kB/s, KiB).")
@click.option("--policy", type=click.Path(dir_okay=False, allow_dash=True),
              help="The port's Neutron QoS policy (JSON as the API returns it).")
@click.option("--flavor", type=click.Path(dir_okay=False, allow_dash=True),
              help="The instance's flavor extra specs (key=value lines or JSON).")
@click.option("--egress-mode", type=click.Choice([m.value for m in EgressMode]), default="shape", show_default=True,
              help="Limit traffic from the instance by shaping (IFB + HTB) or policing (nftables).")
@click.option("--window-clamp", type=click.Choice(["on", "off"]), default="off", show_default=True,
              help="The port's opt-in receive-window clamp (rewrites the window of the TCP ACKs it forwards; shape "
              "mode only).")
@click.option("--mtu", type=click.IntRange(68, 65535), default=1500, show_default=True, help="The port's MTU.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def plan(device: str | None, host_file: str | None, inbound: str | None, outbound: str | None, policy: str | None,
         flavor: str | None, egress_mode: str, window_clamp: str, mtu: int, as_json: bool) -> None:
    """Show what vmqos would enforce on one port, and the exact tc/nft commands (a dry run).

    Sources combine as Neutron does (the port's policy) and per direction the most restrictive
    limit of all sources wins; every value says where it came from.

    \b
    Examples:
      vmqos plan --port tap6ffab502-4a --outbound 12800,0,0
      vmqos plan --port tap-vm1 --flavor m1.resquota.specs
      vmqos plan --port tap-vm2 --policy bw-limiter.json --egress-mode police --json
      vmqos plan --port tap-vm3 --outbound 12800,0,0 --window-clamp on
      vmqos plan --uplink-of host.yaml
    """
    if host_file is not None:
        result = _from_host_file(host_file, device)
        commands = render(diff(result.objects, []))
        if as_json:
            print_notes(list(result.notes))
            print_json(plan_json(result, commands, list(result.notes)))
            return
        print_notes(list(result.notes))
        print_plan(result, commands)
        return
    if device is None:
        raise click.UsageError("give --port (and its sources), or --uplink-of HOSTFILE")
    check_device_name(device, "--port")
    sources, notes = build_sources(inbound, outbound, policy, flavor)
    effective = combine(sources, mtu=mtu)
    result = plan_port(device, effective, egress_mode=EgressMode(egress_mode), mtu=mtu,
                       window_clamp=window_clamp == "on")
    commands = render(diff(result.objects, []))
    all_notes = notes + list(result.notes)
    if as_json:
        print_notes(all_notes)
        print_json(plan_json(result, commands, all_notes))
        return
    print_notes(all_notes)
    print_plan(result, commands)
