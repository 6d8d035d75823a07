"""The top-level commands of `vmqos`, loaded only when run: the root group imports none of them.

Why: every command module reaches the store (SQLAlchemy), the host file's models (pydantic) or the
agent, and importing all of them cost ~0.66 s of CPU on every `vmqos` run (measured 2026-12-07,
`python -X importtime -m vmqos.cli.main port show --help`), paid ~100 times by the suite's
subprocesses and once by every operator's command. A run now imports its own command's module only
(click's documented LazyGroup pattern). `vmqos --help` lists every command from this table, so that
listing imports none; tests/core/test_cli_commands.py proves each line equal to what the command's
own docstring gives, so the table cannot drift from the commands.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from gettext import gettext as _

import click
from click.utils import make_default_short_help


@dataclass(frozen=True)
class Entry:
    """Where a command lives ("module:attribute") and the first paragraph of its help."""

    target: str
    help: str


# name -> where it lives, and the first paragraph of its docstring (what `vmqos --help` shortens)
COMMANDS: dict[str, Entry] = {
    "agent": Entry("vmqos.cli.agent:agent", "Follow this host's desired state on a vmqos server and enforce it on "
                   "the kernel (needs root)."),
    "apply": Entry("vmqos.cli.port:apply", "Make the kernel match a host file, and store it as the desired state."),
    "check": Entry("vmqos.cli.port:check", "Compare the kernel with the desired state: exit 0 when they match, 1 "
                   "with a per-port report."),
    "convert": Entry("vmqos.cli.convert:convert", "Convert QoS between the formats operators already use (FILE or - "
                     "for stdin)."),
    "demo": Entry("vmqos.cli.demo:demo", "Run the demo: a lab of namespaces, the seed examples applied to it, and "
                  "real traffic."),
    "events": Entry("vmqos.cli.watch:events", "Flood detections and the actions taken, with their reasons, oldest "
                    "first."),
    "exporter": Entry("vmqos.cli.watch:exporter", "Serve Prometheus metrics of every managed port "
                      "(vmqos_port_*_total, limits, quarantines)."),
    "fleet": Entry("vmqos.cli.fleet:fleet", "A vmqos server's fleet: its hosts and their ports, as the agents report "
                   "them."),
    "identity": Entry("vmqos.cli.identity:identity_group", "Projects, users and roles of `vmqos server` (Keystone's "
                      "subset), at its database."),
    "instance": Entry("vmqos.cli.instance:instance", "CPU and disk limits of a lab instance (its cgroups), live and in "
                      "the desired state."),
    "lab": Entry("vmqos.cli.lab:lab", "A hypervisor made of network namespaces, to try vmqos on without VMs (needs "
                 "root)."),
    "monitor": Entry("vmqos.cli.watch:monitor", "Sample every managed port, detect floods, quarantine their source, "
                     "count usage per IP."),
    "plan": Entry("vmqos.cli.plan:plan", "Show what vmqos would enforce on one port, and the exact tc/nft commands (a "
                  "dry run)."),
    "port": Entry("vmqos.cli.port:port", "Limit, inspect and release one port (a VM's tap, a veth) now."),
    "quarantine": Entry("vmqos.cli.watch:quarantine", "Put a port under the quarantine policy now, or lift it (what "
                        "`vmqos monitor` does on a flood)."),
    "schema": Entry("vmqos.cli.schema:schema", "Print the JSON Schema of the vmqos host file (YAML or JSON)."),
    "server": Entry("vmqos.cli.server:server", "Serve Keystone v3 tokens and Neutron QoS policies, networks and ports "
                    "(/v3, /v2.0) for the openstack CLI."),
    "top": Entry("vmqos.cli.top:top", "A live view of every managed port, busiest first: limit, offered, delivered, "
                 "dropped, pps."),
    "uplink": Entry("vmqos.cli.uplink:uplink", "A host's uplink on a vmqos server: the link where its ports' "
                    "guaranteed minimums are held."),
    "usage": Entry("vmqos.cli.watch:usage", "Bytes and packets per instance address and remote address, per hour or "
                   "per day."),
    "verify": Entry("vmqos.cli.verify:verify", "Drive real traffic through a port and judge it against the port's "
                    "limits."),
    "vm": Entry("vmqos.cli.vm:vm", "QoS of libvirt domains: CPU through libvirt's scheduler parameters, disks through "
                "QEMU's throttling (`<iotune>`), network through vmqos's own shaping of the domain's tap."),
    "volume": Entry("vmqos.cli.volume:volume", "Volumes with a size and a type, attached to an instance; their QoS is "
                    "applied live."),
    "volume-type": Entry("vmqos.cli.volume:volume_type", "Volume types with a Cinder QoS spec (consumer front-end, "
                         "back-end or both)."),
}


def load(name: str) -> click.Command:
    """The command `name` of the table, its module imported now."""
    module, _colon, attribute = COMMANDS[name].target.partition(":")
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command), f"{COMMANDS[name].target} is not a click command"
    return command


class LazyGroup(click.Group):
    """A group whose commands are the table's, each imported when it runs or shows its own help."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(load(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own listing (Group.format_commands), its lines from the table: no command imported."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, make_default_short_help(COMMANDS[name].help, limit) if name in COMMANDS
                 else self.commands[name].get_short_help_str(limit)) for name in names]
        with formatter.section(_("Commands")):
            formatter.write_dl(rows)
