"""`lab exec` takes its options before `--`, wherever they stand (issue 13, item 19)."""

from __future__ import annotations

import os
import subprocess
import sys

VMQOS = [sys.executable, "-m", "vmqos.cli.main"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VMQOS_DEBUG"}
    return subprocess.run([*VMQOS, *args], capture_output=True, text=True, timeout=60, env=env)


def test_name_after_the_instance_names_the_lab():
    """Was: "lab 'lab' has no vm1" whatever --name said, and --name ran as the command."""
    result = run("lab", "exec", "vm1", "--name", "vqnone", "--", "true")
    assert result.returncode == 1
    assert "lab 'vqnone' has no vm1" in result.stderr and "internal error" not in result.stderr
    result = run("lab", "exec", "vm1", "--name=vqnone", "--", "true")
    assert "lab 'vqnone' has no vm1" in result.stderr


def test_an_unknown_option_before_the_separator_says_where_it_goes():
    result = run("lab", "exec", "vm1", "--bogus", "--", "true")
    assert result.returncode == 2
    assert "'--bogus' is not an option of `lab exec`" in result.stderr and "after `--`" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 3  # usage, hint, the error


def test_a_command_with_its_own_separator_is_left_whole():
    """`exec vm1 echo -- x` runs `echo -- x`: only a leading option is taken as exec's own."""
    result = run("lab", "exec", "--name", "vqnone", "vm1", "echo", "--", "x")
    assert "lab 'vqnone' has no vm1" in result.stderr
