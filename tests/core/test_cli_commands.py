"""The root command loads its commands lazily (vmqos/cli/commands.py): the listing and every command are as
before, and a run imports only its own command's module."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from vmqos.cli.commands import COMMANDS, load
from vmqos.cli.main import cli


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_tables_line_is_the_commands_own_short_help(name):
    command = load(name)
    assert command.name == name
    # what the table cannot say: a command with its own short_help, hidden or deprecated needs a column first
    assert command.short_help is None and not command.hidden and not command.deprecated
    paragraph = " ".join((command.help or "").split("\n\n")[0].split())
    assert COMMANDS[name].help == paragraph
    for limit in (20, 45, 60, 80, 200):
        shortened = click.utils.make_default_short_help(COMMANDS[name].help, limit)
        assert shortened == command.get_short_help_str(limit)


@pytest.mark.parametrize("width", [60, 100])
def test_the_listing_is_clicks_own_with_every_command_loaded(width):
    ctx = click.Context(cli, info_name="vmqos", terminal_width=width, max_content_width=100)
    lazy = click.HelpFormatter(width=width)
    cli.format_commands(ctx, lazy)
    eager = click.HelpFormatter(width=width)
    click.Group.format_commands(cli, ctx, eager)  # click's listing, which loads every command through get_command
    assert lazy.getvalue() == eager.getvalue()
    assert sorted(cli.commands) == sorted(COMMANDS)  # ... all of them, and no other


_IMPORTED = """
import json, sys
from vmqos.cli.main import main
code = main(sys.argv[1:])
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _imported(*args: str) -> tuple[str, set[str]]:
    done = subprocess.run([sys.executable, "-c", _IMPORTED, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout, set(json.loads(done.stderr.splitlines()[-1]))


def test_listing_imports_no_command_and_a_command_only_its_own_module():
    out, modules = _imported("--help")
    assert all(f"  {name} " in out for name in COMMANDS)
    commands = {f"vmqos.cli.{m}" for m in ("agent", "port", "server", "watch", "demo", "identity", "verify")}
    assert not modules & commands, sorted(modules & commands)
    assert not {m for m in modules if m.split(".")[0] in ("sqlalchemy", "pydantic", "fastapi", "pyroute2")}

    out, modules = _imported("server", "init", "--help")
    assert "--admin-password" in out
    assert "vmqos.cli.server" in modules
    assert not modules & {"vmqos.cli.agent", "vmqos.cli.port", "vmqos.services.agent_cache", "vmqos.cli.watch"}
