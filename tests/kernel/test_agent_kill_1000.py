"""Kernel tier, issue 15's fault: a real `vmqos agent` killed with -9 in the middle of applying 1,000 ports,
then started again, converges with no orphaned object.

A lab fleet of one host on SQLite (`lab.fleet`, as `vmqos lab up --hosts 1` makes it: the server in its
control namespace, the agent inside `F1-host` with `--netns`), 1,000 veth pairs `vqa000..vqa999` in that
host, and a native row for each on the server (each its own rate, so that a port holding another
port's limit is seen). The agent is started, and killed with SIGKILL as soon as the kernel holds some
ports' HTB roots but not all of them (about a third, with every IFB made, on this machine). While it
is dead, a tenth of the ports stop being wanted (some of them already carry objects of the killed
pass). Started again, it must bring the server's host record to in sync at the latest revision with 900
ports in sync, and the kernel to exactly what they want: `vmqos check --netns` (issue 13's orphan finder over the agent's cache) finds no drift
and no orphan, and the kernel holds 900 HTB roots, 900 IFBs, nothing on the released devices.

Cost: about 47 s on 2 vCPUs, teardown included (a one-host fleet, 1,000 veth pairs, 1,000 native rows,
the killed pass, 12 s from the restart to the server's in-sync record, one `vmqos check`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vmqos.core.formats.hostfile import policy_from_data
from vmqos.core.plan.names import ifb_name
from vmqos.lab import fleet as fleets
from vmqos.services import fleet_desired
from vmqos.services.ports import check_host, open_store
from vmqos.store import fleet as desired_rows
from vmqos.store import fleet_status

pytestmark = pytest.mark.kernel

PORTS = 1000
SRC = str(Path(__file__).resolve().parents[2] / "src")
WAIT_S = 90.0  # a bound, not a measurement: two vCPUs shared with other suites


def _veths(netns: str, count: int) -> list[str]:
    names = [f"vqa{i:03d}" for i in range(count)]
    lines = "".join(f"link add {n} type veth peer name vqb{n[3:]}\nlink set {n} up\nlink set vqb{n[3:]} up\n"
                    for n in names)
    subprocess.run(["ip", "-n", netns, "-batch", "-"], input=lines, text=True, check=True, timeout=60)
    return names


def _rates(i: int) -> dict[str, dict[str, str]]:
    return {"ingress": {"rate": f"{10_000 + i}kbit"}, "egress": {"rate": f"{5_000 + i}kbit"}}


def _kernel(netns: str) -> tuple[set[str], set[str]]:
    """(devices with an HTB root, IFB devices) in the namespace, read with tc and ip themselves."""
    qdiscs = subprocess.run(["tc", "-n", netns, "qdisc", "show"], capture_output=True, text=True, timeout=30).stdout
    htb = set(re.findall(r"^qdisc htb \S+ dev (\S+) root", qdiscs, re.M))
    links = subprocess.run(["ip", "-n", netns, "-o", "link", "show", "type", "ifb"], capture_output=True, text=True,
                           timeout=30).stdout
    ifbs = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if line.strip()}
    return {d for d in htb if not d.startswith("vqi")}, ifbs


def _until(what: str, check: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.5)


def test_an_agent_killed_during_an_apply_of_1000_ports_converges_when_restarted_with_no_orphan(fleet_name):
    name = fleet_name
    status = fleets.fleet_up(name, 1, 1)  # the server on SQLite in the fleet's state directory
    host = f"{name}1"
    netns = f"{host}-host"
    fleets.stop(name, host)  # started again below, once the 1,000 ports are wanted
    devices = _veths(netns, PORTS)
    with open_store(status.db) as server:
        for i, device in enumerate(devices):
            fleet_desired.set_port(server, host, device, policy_from_data(f"vq-{device}", _rates(i)))

    fleets.start_agent(name, 1, 1)
    pid_file = fleets.state_dir(name) / f"agent-{host}.pid"
    deadline = time.monotonic() + WAIT_S
    while True:  # some ports' roots, not all: the pass is under way
        htb, ifbs = _kernel(netns)
        if htb and len(htb) < PORTS:
            break
        assert len(htb) < PORTS, "the agent applied every port before it could be killed"
        assert time.monotonic() < deadline, "the agent wrote nothing within the bound"
        time.sleep(0.02)
    fleets.stop(name, host, signal.SIGKILL)
    assert not pid_file.exists()
    htb, ifbs = _kernel(netns)
    assert htb and len(htb) < PORTS, (len(htb), len(ifbs))  # killed mid-pass (366 of 1,000 roots, all IFBs, here)

    released = devices[::10]  # while it is dead, a tenth stops being wanted (some half-made already)
    with open_store(status.db) as server:
        for device in released:
            fleet_desired.clear_port(server, host, device)
        latest = desired_rows.counters(server).revision
    kept = [d for d in devices if d not in set(released)]
    assert any(d in htb or ifb_name(d) in ifbs for d in released), "no released port carried objects of the pass"

    fleets.start_agent(name, 1, 1)

    def converged() -> bool:
        with open_store(status.db, read_only=True) as server:
            record = fleet_status.hosts(server, host)
            summary = fleet_status.summaries(server, host).get(host)
        return bool(record) and record[0].applied_revision == latest and summary is not None \
            and summary.live == len(kept) and summary.statuses == {"in_sync": len(kept)}

    _until("the server's record of the host in sync at the latest revision", converged)

    htb, ifbs = _kernel(netns)
    assert htb == set(kept), sorted(set(kept) ^ htb)[:10]
    assert ifbs == {ifb_name(d) for d in kept}, sorted(ifbs ^ {ifb_name(d) for d in kept})[:10]
    cache = f"sqlite:///{fleets.state_dir(name) / f'agent-{host}.db'}"
    with open_store(cache, read_only=True) as store:
        drift = check_host(store, netns)  # orphans come back as drift rows of their own
    assert [d for d in drift if not d.ok] == [], [d for d in drift if not d.ok][:5]
    assert {d.port for d in drift} == set(kept)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    checked = subprocess.run([sys.executable, "-m", "vmqos.cli.main", "check", "--netns", netns, "--db", cache],
                             capture_output=True, text=True, timeout=120, env=env)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    classes = subprocess.run(["tc", "-n", netns, "class", "show", "dev", "vqa001"], capture_output=True, text=True,
                             timeout=30).stdout
    assert "rate 10001Kbit" in classes, classes  # each port holds its own limit, not another's
    assert "Traceback" not in (fleets.state_dir(name) / f"agent-{host}.log").read_text()
