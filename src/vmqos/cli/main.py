"""Entry point: the command group, and the one place errors become a line on stderr."""

from __future__ import annotations

import sys

import click

from vmqos import __version__
from vmqos.cli.agent import agent
from vmqos.cli.convert import convert
from vmqos.cli.errors import run
from vmqos.cli.fleet import fleet
from vmqos.cli.identity import identity_group
from vmqos.cli.demo import demo
from vmqos.cli.instance import instance
from vmqos.cli.lab import lab
from vmqos.cli.logs import HELP as LOG_HELP
from vmqos.cli.logs import LEVELS, configure
from vmqos.cli.plan import plan
from vmqos.cli.port import apply, check, port
from vmqos.cli.schema import schema
from vmqos.cli.server import server
from vmqos.cli.uplink import uplink
from vmqos.cli.verify import verify
from vmqos.cli.vm import vm
from vmqos.cli.volume import volume, volume_type
from vmqos.cli.watch import COMMANDS as WATCH_COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=LOG_HELP)
@click.version_option(__version__, prog_name="vmqos")
@click.option("-v", "--verbose", count=True, help="Log to stderr: -v INFO, -vv DEBUG.")
@click.option("--log-level", type=click.Choice(list(LEVELS), case_sensitive=False), metavar="LEVEL",
              help="Log at LEVEL (debug, info, warning, error); beats -v and $VMQOS_LOG_LEVEL.")
@click.option("--log-json", is_flag=True, help="Log one JSON object per line (ts, level, logger, message, fields).")
def cli(verbose: int, log_level: str | None, log_json: bool) -> None:
    """Give every VM or container on a Linux host the network, CPU and disk it paid for.

    Units: rates are bit/s and sizes bytes inside vmqos; on input, tc's units are accepted with
    iproute2's exact meanings (100mbit, 12500kbps = 100 Mbit/s, 64kb = 65536 bytes).
    Directions are the instance's: ingress = towards it (libvirt inbound), egress = sent by it.
    """
    configure(verbose, log_level, log_json)


cli.add_command(convert)
cli.add_command(plan)
cli.add_command(schema)
cli.add_command(demo)
cli.add_command(port)
cli.add_command(apply)
cli.add_command(check)
cli.add_command(lab)
cli.add_command(instance)
cli.add_command(volume_type)
cli.add_command(volume)
cli.add_command(vm)
cli.add_command(verify)
cli.add_command(server)
cli.add_command(uplink)
cli.add_command(agent)
cli.add_command(fleet)
cli.add_command(identity_group)
for _command in WATCH_COMMANDS:
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    return run(cli, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
