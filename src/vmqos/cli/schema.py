"""`vmqos schema`: the JSON Schema of vmqos's own host file."""

from __future__ import annotations

import click

from vmqos.cli.output import print_json
from vmqos.core.formats.hostfile import schema as host_schema


@click.command()
def schema() -> None:
    """Print the JSON Schema of the vmqos host file (YAML or JSON).

    \b
    Example:
      vmqos schema > vmqos-host.schema.json
    """
    print_json(host_schema())
