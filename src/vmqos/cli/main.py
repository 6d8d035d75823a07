"""Entry point: the command group, and the one place errors become a line on stderr."""

from __future__ import annotations

import sys

import click

from vmqos import __version__
from vmqos.cli.commands import LazyGroup
from vmqos.cli.errors import run
from vmqos.cli.logs import HELP as LOG_HELP
from vmqos.cli.logs import LEVELS, configure


# Its commands: vmqos/cli/commands.py's table, each imported only when it runs.
@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=LOG_HELP)
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


def main(argv: list[str] | None = None) -> int:
    return run(cli, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
