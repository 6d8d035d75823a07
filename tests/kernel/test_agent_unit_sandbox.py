"""The agent's kernel work runs inside contrib/systemd/vmqos-agent.service's sandbox.

`vmqos agent` drives the reconciler through services/, as `vmqos port set --netns` does; this runs
that command under the agent unit's confinement, applied from the unit file as systemd 252 applies
it (tests/unit_sandbox.py: uid 0 with exactly CAP_NET_ADMIN and CAP_SYS_ADMIN, no new privileges,
@system-service + @mount + bpf, MemoryDenyWriteExecute=, AF_UNIX/INET/INET6/NETLINK only): netlink
and `tc -batch` through `ip netns exec` (its mounts), nftables, an IFB, and the police mode's eBPF
program loaded over bpf(2). Each step is read back from the kernel outside the sandbox.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from unit_sandbox import confined

import vmqos

from .conftest import sh

pytestmark = pytest.mark.kernel
UNIT = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "vmqos-agent.service"
SRC = str(Path(vmqos.__file__).resolve().parent.parent)
DEVICE = "vq-sbtap"


def _agent_does(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(confined(UNIT, [sys.executable, "-m", "vmqos.cli.main", *args]), capture_output=True,
                          text=True, timeout=120, cwd=cwd, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                                "PYTHONPATH": SRC})


def test_the_agents_kernel_work_runs_in_its_sandbox(netns, tmp_path):
    subprocess.run(["ip", "-n", netns, "link", "add", DEVICE, "type", "veth", "peer", "name", "vq-sbpeer"], check=True)
    subprocess.run(["ip", "-n", netns, "link", "set", DEVICE, "up"], check=True)
    db = f"sqlite:///{tmp_path / 'agent.db'}"
    where = ("--netns", netns, "--db", db)

    status = subprocess.run(confined(UNIT, [sys.executable, "-c", "print(open('/proc/self/status').read())"]),
                            capture_output=True, text=True, timeout=60).stdout
    # exactly CAP_NET_ADMIN (12) and CAP_SYS_ADMIN (21), both seccomp filters
    assert "CapEff:\t0000000000201000" in status and "NoNewPrivs:\t1" in status, status
    assert "Seccomp_filters:\t2" in status, status

    police = _agent_does("port", "set", DEVICE, *where, "--inbound", "1000,0,0", "--outbound", "1000,0,0",
                         "--egress-mode", "police", cwd=tmp_path)
    assert police.returncode == 0, police.stdout + police.stderr
    assert "htb" in sh(netns, f"tc qdisc show dev {DEVICE}").stdout
    assert " bpf " in sh(netns, f"tc filter show dev {DEVICE} ingress").stdout  # the bucket, loaded over bpf(2)
    assert f"from_{DEVICE.replace('-', '_')}" in sh(netns, "nft list table netdev vmqos").stdout

    shape = _agent_does("port", "set", DEVICE, *where, "--inbound", "2000,0,0", "--outbound", "500,0,0",
                        "--egress-mode", "shape", cwd=tmp_path)
    assert shape.returncode == 0, shape.stdout + shape.stderr
    links = json.loads(sh(netns, "ip -j link show type ifb").stdout)
    assert len(links) == 1 and "rate 4Mbit" in sh(netns, f"tc class show dev {links[0]['ifname']}").stdout

    shown = _agent_does("port", "show", DEVICE, *where, "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["kernel"]["in_sync"] is True, shown.stdout

    cleared = _agent_does("port", "clear", DEVICE, *where, cwd=tmp_path)
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    assert "htb" not in sh(netns, f"tc qdisc show dev {DEVICE}").stdout
