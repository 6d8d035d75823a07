"""Traffic tier: `vmqos demo --only traffic --only openstack`: the seeds' workflow through the real openstack CLI.

The demo runs as an operator runs it (`vmqos demo`, a process of its own, as root) on a lab of its
own, `vqd<4 hex>`: `vmqos server init`, `vmqos server --all-in-one` on the lab's host namespace,
python-openstackclient 10.5.0 creating seed 003's bw-limiter policy and rule, a port bound to the
lab host with vm4's device, `port set --qos-policy`; the kernel read back, `vmqos verify` of the
egress, `rule set --max-kbps 6000` live, `port unset`, the flavor and volume QoS spec as vmqos reads
them. The demo host file's ports (vm1..3, the traffic section) share the host namespace with the
server's port in another database: `vmqos check` after the section says they are untouched. The
test judges what the demo printed (the read-back and verify's verdicts, which measure with real
traffic), then that nothing was left behind: no namespace of the lab, no server listening, no
section directory. Bounded: the demo must end within DEMO_TIMEOUT_S.

The demo runs the command $VMQOS_OPENSTACK_CLI names: here a relay (tests/server/osc_relay.py) whose
calls are forked children of one warm, unmodified python-openstackclient, which saves ~0.5 s of CPU
per call (~20 calls); `make demo` and VMQOS_OSC_EXEC=1 run the console script itself.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.kernel.conftest import require
from tests.server.conftest import openstack_cli
from tests.server.osc_cli import console_script_python
from tests.server.osc_relay import OpenstackRelay
from tests.traffic.conftest import _missing, _namespaces, _remove_leftovers
from vmqos.lab import lab_down

pytestmark = [pytest.mark.kernel, pytest.mark.traffic]

DEMO_TIMEOUT_S = 400  # about 75 s on an idle 2-vCPU machine: 21 s of traffic, ~15 openstack commands, 9 s of verify


def _demo(lab: str, cwd: Path, *sections: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("KEEP", "VMQOS_DB")} | env
    environ["VMQOS_DB"] = f"sqlite:///{cwd / 'host.db'}"  # the host file's store, not the machine's
    environ["TMPDIR"] = str(cwd)  # the section's directory, which a failed demo keeps, goes with tmp_path
    only = [arg for section in sections for arg in ("--only", section)]
    return subprocess.run([sys.executable, "-m", "vmqos.cli.main", "demo", "--lab", lab, *only],
                          cwd=cwd, env=environ, capture_output=True, text=True, timeout=DEMO_TIMEOUT_S)


@pytest.fixture
def lab_name():
    require("traffic", _missing())
    name = f"vqd{uuid.uuid4().hex[:4]}"
    try:
        yield name
    finally:
        try:
            lab_down(name)
        finally:
            _remove_leftovers(name)


@pytest.fixture
def openstack_command():
    """The `openstack` the demo runs, and the relay behind it (None: the console script itself)."""
    cli = openstack_cli()
    python = None if os.environ.get("VMQOS_OSC_EXEC") == "1" else console_script_python(cli)
    if python is None:
        yield cli, None
        return
    with OpenstackRelay(cli, python) as relay:
        yield relay.command, relay


def _served(relay: OpenstackRelay | None, at_least: int) -> None:
    """The demo's openstack calls went through the relay, each a success (the relay's own count)."""
    if relay is not None:
        statuses = relay.close()
        assert len(statuses) >= at_least and set(statuses) == {0}, statuses


def _row(out: str, step: str) -> str:
    found = re.search(rf"^ {re.escape(step)} +│(.*)$", out, re.MULTILINE)
    assert found, f"no summary row for {step!r} in:\n{out}"
    return found.group(1)


def _measured_under_the_limit(row: str, limit_mbit: float) -> None:
    """Traffic held the limit: never more than 5 % above it, and close below it. Below 10 Mbit/s one
    TCP flow through the shaper reads up to 12.6 % under the limit on this machine (issue 16: the
    128 KiB queue floor a 64 KiB aggregate needs), so the floor here is 15 % under, not verify's 5 %."""
    found = re.search(r"achieved ([\d.]+) Mbit/s", row)
    assert found, row
    assert 0.85 * limit_mbit <= float(found.group(1)) <= 1.05 * limit_mbit, row


def test_the_seeds_openstack_workflow_ends_as_measured_limits_and_leaves_nothing(lab_name, tmp_path,
                                                                               openstack_command):
    command, relay = openstack_command
    done = _demo(lab_name, tmp_path, "traffic", "openstack", VMQOS_OPENSTACK_CLI=str(command))
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert "Traceback" not in out + done.stderr
    _served(relay, 13)  # the section's 13 openstack commands

    # the seed's policy reached the kernel as 3 Mbit/s with a 300 kbit burst, and traffic held it
    held = _row(out, "port set --qos-policy bw-limiter")
    assert "3 Mbit/s, burst 37,500 bytes" in held, held
    _measured_under_the_limit(held, 3.0)
    # the rule changed live: the same port at 6 Mbit/s, measured again
    changed = _row(out, "network qos rule set --max-kbps 6000")
    assert "6 Mbit/s, burst 37,500 bytes" in changed, changed
    _measured_under_the_limit(changed, 6.0)
    # unset: nothing of vmqos on the device (the demo read it back), and traffic far above the old limit
    released = _row(out, "port unset --qos-policy")
    assert "no limit (nothing of vmqos on the device)" in released, released
    goodput = re.search(r"iperf3 goodput ([\d.]+) (Gbit/s|Mbit/s)", released)
    assert goodput and float(goodput.group(1)) * (1000 if goodput.group(2) == "Gbit/s" else 1) > 60, released

    # the flavor and the volume spec as vmqos reads them (Cinder's per-GB key at the volume's 20 GB)
    assert "flavor m1.resquota: network ingress: 262.144 Mbit/s, peak 524.288 Mbit/s, burst 128 MiB" in out
    assert "flavor m1.resquota: cpu: shares 512" in out
    assert re.search(r"consumer front-end: read_bytes_sec 1,000,000, write_bytes_sec 1,024,000, total_iops_sec 200",
                     out), out
    assert "vmqos server stopped (exit status 0)" in out
    # the host file's ports, in the same namespace under another database: as the host file left them
    checked = out[out.index("$ vmqos check --netns"):]
    assert all(f"tap-vm{i}: ok" in checked for i in (1, 2, 3)) and "\nin sync" in checked, checked

    # nothing left behind: the lab, the server, the section's directory
    assert not {ns for ns in _namespaces() if ns.startswith(f"{lab_name}-")}
    url = re.search(r"serving on http://127\.0\.0\.1:(\d+)", out)
    assert url, out
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", int(url.group(1)))) != 0, "the server still listens"
    log = re.search(r"its log: (/\S+)/server\.log\)", out)
    assert log and not Path(log.group(1)).exists(), out


def test_without_the_openstack_cli_one_line_says_how_to_get_it_and_nothing_is_built(lab_name, tmp_path):
    done = _demo(lab_name, tmp_path, "openstack", VMQOS_OPENSTACK_CLI=str(tmp_path / "no-openstack"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"vmqos: error: the openstack CLI is not at {tmp_path / 'no-openstack'}: `make demo` installs it "
        "(python-openstackclient 10.5.0 in .venv-osc), or set $VMQOS_OPENSTACK_CLI to an `openstack` command"]
    assert not {ns for ns in _namespaces() if ns.startswith(f"{lab_name}-")}


def _fleet_row(out: str, step: str) -> str:
    """A row of the fleet section's summary, its wrapped lines joined."""
    lines = out[out.index("a fleet of two lab hosts"):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f" {step}"))
    row = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("  ") or "│" not in line:
            break
        row.append(line)
    columns = [" ".join(part.strip() for part in cells) for cells in zip(*(r.split("│") for r in row))]
    return " | ".join(columns)


def _held(row: str, limit_mbit: float) -> None:
    """Every verdict in the row: the limit held (never above it by more than verify's 5 %, and not far below)."""
    rates = [float(r) for r in re.findall(r"achieved ([\d.]+) Mbit/s", row)]
    assert rates and "FAIL" not in row, row
    assert all(0.75 * limit_mbit <= r <= 1.05 * limit_mbit for r in rates), row


def test_the_fleet_section_server_and_two_agents_hold_the_seeds_policy_through_reboot_flood_and_server_kill(
        lab_name, tmp_path, openstack_command):
    from vmqos.cli.demo_fleet import fleet_name
    from vmqos.lab import fleet as fleets

    command, relay = openstack_command
    fleet = fleet_name(lab_name)
    try:
        done = _demo(lab_name, tmp_path, "fleet", VMQOS_OPENSTACK_CLI=str(command))
    finally:
        fleets.fleet_down(fleet)
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert "Traceback" not in out + done.stderr
    _served(relay, 7)  # the section's 7 openstack commands, run in the fleet's control namespace
    created = _fleet_row(out, "port create --host fleetN --qos-policy bw-limiter")
    assert "on both hosts" in created, created
    _held(created, 3.0)
    _held(_fleet_row(out, "network qos rule set --max-kbps 6000"), 6.0)
    rebooted = _fleet_row(out, f"vm1 on {fleet}1 reboots")
    assert "limit back" in rebooted, rebooted
    _held(rebooted, 6.0)
    # a flood quarantined fleet-wide: the row, and the server's own table (`vmqos fleet quarantines`) while it held
    flooded = _fleet_row(out, f"hping3 SYN flood from vm1 on {fleet}1")
    assert "quarantined" in flooded and "listed by the server" in flooded, flooded
    assert "the server lists none" in flooded, flooded
    _held(flooded, 6.0)  # lifted: the bw-limiter's limit again
    listed = out[out.index("vmqos fleet quarantines --server"):]
    assert re.search(rf"^ *{fleet}1 +│ tap-vm1 +│ 20\d\d-", listed, re.M), listed[:2000]
    assert "no quarantine in force" in listed, listed[:3000]
    _held(_fleet_row(out, "vmqos server killed -9"), 6.0)
    _held(_fleet_row(out, "server back; network qos rule set --max-kbps 4000"), 4.0)
    # nothing left behind: the fleet's namespaces and its state directory
    assert not {ns for ns in _namespaces() if ns.startswith((f"{fleet}1-", f"{fleet}2-", f"{fleet}-ctl"))}
    assert not fleets.state_dir(fleet).exists()
