"""The one place an error becomes a line on stderr and an exit status, for every command line run.

`vmqos` itself and the demo (which runs `vmqos` commands as steps, in-process) both go through
`run`, so a step fails in the demo exactly as it would on the operator's terminal.
"""

from __future__ import annotations

import os

import click

from vmqos.core.errors import VmqosError


def run(group: click.Command, argv: list[str] | None) -> int:
    """Run `group` on `argv`; its exit status. A VmqosError is its one-line message, a bug one line
    too unless VMQOS_DEBUG asks for the traceback."""
    try:
        group.main(args=argv, prog_name="vmqos", standalone_mode=False)
    except VmqosError as exc:
        click.echo(f"vmqos: error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("vmqos: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except OSError as exc:
        click.echo(f"vmqos: error: {os_error(exc)}", err=True)
        return 1
    except Exception as exc:  # a bug: one line unless asked for the traceback
        if os.environ.get("VMQOS_DEBUG"):
            raise
        click.echo(f"vmqos: internal error: {type(exc).__name__}: {exc} (set VMQOS_DEBUG=1 for a traceback)",
                   err=True)
        return 70
    return 0


def os_error(exc: OSError) -> str:
    """An OSError that no driver translated, as one line: its file only when it has one (pyroute2's
    say "failed to open netns" with no file), and what to do when it was a refusal."""
    text = f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc.strerror or exc)
    if isinstance(exc, PermissionError):
        text += " (permission denied: run vmqos as root)"
    return text
