"""`vmqos lab`: build, show, enter and remove a hypervisor made of network namespaces."""

from __future__ import annotations

import sys

import click

from vmqos.cli import lab_fleet
from vmqos.cli.output import print_json, stderr, stdout
from vmqos.core.errors import NotFound
from vmqos.lab import (
    DEFAULT_INSTANCES,
    DEFAULT_NAME,
    LabStatus,
    lab_down,
    lab_exec,
    lab_status,
    lab_up,
)
from vmqos.lab.topology import (
    BRIDGE,
    GATEWAY,
    INSTANCE_PREFIX,
    LAB_NETWORK,
    instance_index,
)

_name_option = click.option("--name", default=DEFAULT_NAME, show_default=True,
                            help="The lab: 1 to 8 of a-z, 0-9, '-'; its namespaces are NAME-host, NAME-vmN, NAME-wan.")


def print_status(status: LabStatus) -> None:
    from rich.table import Table

    host_ns = f"{status.name}-host"
    table = Table(title=f"lab {status.name}: {LAB_NETWORK}, instances' gateway {GATEWAY} ({BRIDGE} in {host_ns})",
                  title_justify="left", show_edge=False)
    for column in ("instance", "namespace", "port", "port MAC", "eth0 MAC", "address"):
        table.add_column(column)
    if host_ns in status.namespaces:
        table.add_row("host", host_ns, BRIDGE, status.bridge_mac or "missing", "",
                      f"{status.gateway}/{INSTANCE_PREFIX}" if status.gateway else "missing")
    for inst in (*status.instances, *([status.wan] if status.wan else [])):
        table.add_row(inst.name, inst.netns, inst.port or "missing", inst.port_mac or "-", inst.mac or "missing",
                      inst.cidr if inst.address else "missing")
    stdout.print(table)


def _print_problems(status: LabStatus) -> None:
    for problem in status.problems:
        stderr.print(f"[yellow]warning[/]: lab {status.name}: {problem}", markup=True)


@click.group()
def lab() -> None:
    """A hypervisor made of network namespaces, to try vmqos on without VMs (needs root).

    Its instances' ports are the host ends of veths in NAME-host, as a VM's taps are, so vmqos
    limits them as it would limit a real hypervisor's ports.
    """


@lab.command()
@_name_option
@click.option("--instances", type=int, default=DEFAULT_INSTANCES, show_default=True,
              help="How many instances vm1..vmN (1 to 100); existing extra ones are kept.")
@click.option("--hosts", type=int, default=None, metavar="N",
              help="A fleet: N lab hosts NAME1..NAMEn (1 to 9), each with a `vmqos agent`, and one `vmqos server`.")
@click.option("--db", metavar="URL", help="With --hosts: the server's database (default: SQLite in the fleet's "
                                          "state directory), e.g. postgresql+psycopg://vmqos@/vmqos?host=/run/pg")
@click.option("--json", "as_json", is_flag=True, help="Print the lab's status as JSON for scripts.")
def up(name: str, instances: int, hosts: int | None, db: str | None, as_json: bool) -> None:
    """Build the lab, or finish it: only what is missing is created, the rest is kept.

    \b
    NAME-host  the hypervisor: bridge br-int = 10.247.0.1/25, the instances' gateway;
               one port tap-vmN per instance (the host end of a veth, like a VM's tap);
               uplink wan0 = 10.247.0.129/30; IPv4 forwarding on
    NAME-vmN   instance N: eth0 = 10.247.0.(10+N)/25, default route via 10.247.0.1
    NAME-wan   the internet: eth0 = 10.247.0.130/30, default route via 10.247.0.129

    All addresses are in 10.247.0.0/24 and exist only inside the lab's namespaces: the root
    namespace is not touched. MACs are fixed per lab: 02:76:71:00:xx:N is vmN's eth0,
    02:76:71:01:xx:N its tap.

    With --hosts N, a fleet: N such labs NAME1..NAMEn, a control namespace NAME-ctl where
    `vmqos server` listens on 10.248.0.1:9696 (management network 10.248.0.0/24, mgmt0 in each
    NAMEi-host), and in each NAMEi-host a `vmqos agent --host NAMEi` with its own service account.

    \b
    Examples:
      vmqos lab up
      vmqos lab up --name lab2 --instances 5 --json
      vmqos lab up --hosts 2 --name fleet
    """
    if hosts is not None:
        lab_fleet.fleet_up(name, hosts, instances, db, as_json)
        return
    if db is not None:
        raise click.UsageError("--db is the fleet server's database: give it with --hosts N")
    status = lab_up(name, instances)
    extra = [i.name for i in status.instances if instance_index(i.name) > instances]
    if extra:
        stderr.print(f"[cyan]note[/]: lab {name} keeps {', '.join(extra)} beyond --instances {instances} "
                     f"(`vmqos lab down --name {name}` then `up` to shrink it)", markup=True)
    _print_problems(status)
    if as_json:
        print_json(status)
    else:
        print_status(status)


@lab.command("list")
@_name_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_(name: str, as_json: bool) -> None:
    """Show the lab's instances, namespaces, ports, MACs and addresses, as the kernel has them."""
    fleet = lab_fleet.fleet_status(name)
    if fleet is not None:
        if as_json:
            print_json(fleet)
        else:
            lab_fleet.print_fleet(fleet)
        return
    status = lab_status(name)
    if status is None:
        raise NotFound(f"no lab {name!r} is up: `vmqos lab up --name {name}` builds it")
    _print_problems(status)
    if as_json:
        print_json(status)
    else:
        print_status(status)


@lab.command("exec", context_settings={"allow_interspersed_args": False})
@_name_option
@click.argument("inst", metavar="INST")
@click.argument("command", nargs=-1, required=True, metavar="-- CMD...")
def exec_(name: str, inst: str, command: tuple[str, ...]) -> None:
    """Run CMD inside the namespace of INST (vm1.., wan or host); exit with CMD's exit code.

    CMD uses this terminal's stdin and stdout. Options of `lab exec` go before `--`, before or
    after INST, as `kubectl exec` and `docker exec` take them.

    \b
    Examples:
      vmqos lab exec vm1 -- ping -c 1 10.247.0.130
      vmqos lab exec vm1 --name lab2 -- ip -br addr
      vmqos lab exec host -- bridge link
    """
    name, command = _options_after_inst(name, command)
    sys.exit(lab_exec(name, inst, command))


def _options_after_inst(name: str, command: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """`exec vm1 --name LAB -- CMD`: the options between INST and `--` are `lab exec`'s own.

    A command that does not start with an option (`exec vm1 echo -- x`) is left whole."""
    if "--" not in command or not command[0].startswith("-"):
        return name, command
    cut = command.index("--")
    before, after = list(command[:cut]), command[cut + 1:]
    while before:
        word = before.pop(0)
        if word == "--name" and before:
            name = before.pop(0)
        elif word.startswith("--name="):
            name = word.split("=", 1)[1]
        else:
            raise click.UsageError(f"{word!r} is not an option of `lab exec` before `--` (it takes --name NAME); "
                                   "the command and its own options go after `--`")
    if not after:
        raise click.UsageError("no command after `--`: e.g. `vmqos lab exec vm1 -- ip -br addr`")
    return name, after


@lab.command()
@_name_option
def down(name: str) -> None:
    """Remove the lab: kill the processes left in its namespaces, then delete them (and their devices).

    A fleet's agents and server are stopped first (the limits they placed go with the namespaces),
    then its labs, its control namespace and its state directory are removed. Nothing else is
    touched; removing a lab that is not up is not an error.
    """
    removed = lab_fleet.fleet_down(name) if lab_fleet.fleet_status(name) is not None else lab_down(name)
    if removed:
        stdout.print(f"lab {name}: removed namespaces {', '.join(removed)}")
    else:
        stdout.print(f"lab {name}: nothing to remove")


lab.add_command(lab_fleet.openstack)
