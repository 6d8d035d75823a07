"""The demo's steps: a command shown as on a terminal, then run, in this process or as the real `openstack`."""

from __future__ import annotations

import shlex
from typing import Sequence

import click
from rich.markup import escape

from vmqos.cli.errors import run
from vmqos.cli.output import stderr, stdout


def announce(prompt: str, argv: Sequence[str], suffix: str = "") -> None:
    """The command as a rule across the terminal, or as a plain line when it is too long for one
    (a rule would cut it: `flavor set` with nine properties)."""
    text = f"{prompt} {' '.join(shlex.quote(a) for a in argv)}{suffix}"
    stdout.print()
    if len(text) + 4 <= stdout.width:
        stdout.rule(f"[bold]{escape(text)}", align="left")
    else:
        stdout.print(f"[bold]{escape(text)}", soft_wrap=True)


def vmqos_step(args: list[str], ok: tuple[int, ...] = (0,), prompt: str = "$") -> int:
    """One step: `vmqos ARGS` in this process, through the root command the demo was started from;
    its exit status (one of `ok`, else the demo stops)."""
    root = click.get_current_context().find_root().command
    announce(f"{prompt} vmqos", args)
    try:
        code = run(root, args)
    except SystemExit as exc:  # commands that end with an exit status of their own (port set, check, verify)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if code not in ok:
        raise click.ClickException(f"demo step failed with exit code {code}: vmqos {' '.join(args)}")
    return code


def print_output(out: str, err: str = "") -> None:
    """What a subprocess printed, as it printed it (no markup, no highlighting)."""
    if out.strip():
        stdout.out(out.rstrip("\n"))
    if err.strip():
        stderr.out(err.rstrip("\n"))
