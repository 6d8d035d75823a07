"""The instance, volume-type, volume and vm commands: help with examples, one-line errors, store-only paths."""

from __future__ import annotations

import json

import pytest
from test_cli import run

from vmqos.cli.main import main


@pytest.mark.parametrize("group,commands", [
    ("instance", ["set", "show"]), ("volume-type", ["create", "list", "show", "delete"]),
    ("volume", ["create", "extend", "attach", "detach", "list", "show", "delete"]), ("vm", ["list", "show", "set"]),
])
def test_help_has_examples(group, commands):
    result = run(group, "--help")
    assert result.returncode == 0 and "Examples:" in result.stdout, result.stdout
    for command in commands:
        assert run(group, command, "--help").returncode == 0


@pytest.mark.parametrize("args,needle", [
    (["instance", "set", "vm1", "--disk", "loop0"], "expected DEV:key=value"),
    (["instance", "set", "vm1", "--cpu-shares", "1"], "shares are from 2 to 262144"),
    (["instance", "set", "vm1", "--disk", "loop0:total_bytes_sec=100", "--config"], "not a VM"),
    (["instance", "set", "vm99999", "--config"], "use vm1 to vm100"),
    (["volume", "create", "v", "--type", "nope", "--size", "1"], "no volume type 'nope'"),
    (["volume-type", "create", "t", "--consumer", "front-end", "--spec", "read_iops_sec=abc"], "expected an integer"),
])
def test_bad_input_is_one_line(tmp_path, args, needle):
    result = run(*args, "--db", f"sqlite:///{tmp_path}/s.db")
    assert result.returncode != 0 and needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_volume_commands_without_an_attachment_touch_no_kernel(tmp_path, capsys):
    db = ["--db", f"sqlite:///{tmp_path}/s.db", "--lab", "vq5c"]
    assert main(["volume-type", "create", "gold", "--consumer", "front-end", "--spec",
                 "read_iops_sec_per_gb=10", "--spec", "read_iops_sec_per_gb_min=20", *db]) == 0
    assert main(["volume-type", "create", "archive", "--spec", "maxIOPSperGB=5", *db]) == 0  # back-end
    assert main(["volume", "create", "v1", "--type", "gold", "--size", "1", *db]) == 0
    assert main(["volume", "extend", "v1", "--size", "5", *db]) == 0
    capsys.readouterr()
    assert main(["volume", "show", "v1", "--json", *db]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["applied_on_host"] == {"read_iops_sec": 50} and shown["size_gb"] == 5
    assert main(["volume-type", "show", "archive", "--json", *db]) == 0
    archive = json.loads(capsys.readouterr().out)
    assert archive["applied_on_host"] is False
    assert any("never applied on the host" in n["message"] for n in archive["notes"])
    assert main(["volume", "extend", "v1", "--size", "2", *db]) == 2  # shrinking is refused, as in Cinder
