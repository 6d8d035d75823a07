"""Kernel tier: a lab fleet on PostgreSQL — a server, two hosts with an agent each — through its faults.

`vmqos lab up --hosts 2` as an operator runs it (the server in its control namespace on a database of
the suite's throw-away PostgreSQL, one agent inside each host), the real openstack CLI creating seed
003's bw-limiter and a port on each host; each host's kernel is read back with vmqos's read-back of
that agent's cache (`services.ports.show_port`: the desired limit, and an HTB class at that rate in
sync). Then the faults of issue 15, each judged on both kernels:
- a partition of host 1 (its mgmt0 down, so no route to the server): a change reaches host 2,
  host 1 keeps its old limit, and catches up once the route is back;
- the server killed with -9: both limits hold, a change made while it was away is taken when it is
  back;
- PostgreSQL restarted under the server: the next change still reaches both hosts;
- an agent killed with -9 and started again: it re-enforces from its cache, no orphan is left.
The traffic proof of these limits is the demo's fleet section (tests/traffic/test_demo_fleet.py).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.server.conftest import openstack_cli
from vmqos.core.errors import NotFound
from vmqos.core.plan.tc_objects import HtbClass
from vmqos.lab import fleet as fleets
from vmqos.lab.control_plane import OpenStack
from vmqos.services.ports import check_host, open_store, show_port

pytestmark = [pytest.mark.kernel, pytest.mark.postgres]

WAIT_S = 20.0  # agents follow within a second; the bound covers a backoff of up to 5 s on a busy machine


def _egress(name: str, host: str) -> int | None:
    """The egress rate host `host`'s kernel holds on tap-vm1 in sync with its agent's desired state, or None."""
    cache = f"sqlite:///{fleets.state_dir(name) / f'agent-{host}.db'}"
    try:
        with open_store(cache, read_only=True) as store:
            shown = show_port(store, f"{host}-host", "tap-vm1")
    except NotFound:
        return None
    rate = shown.desired.egress.rate_bps
    held = shown.kernel.in_sync and any(isinstance(o, HtbClass) and o.rate_bps == rate for o in shown.kernel.objects)
    return rate if held else None


def _until(what: str, check: Callable[[], bool], timeout: float = WAIT_S) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.1)
    return time.monotonic() - start


def _both(name: str, rate: int) -> Callable[[], bool]:
    return lambda: all(_egress(name, f"{name}{i}") == rate for i in (1, 2))


def test_a_fleet_on_postgresql_holds_its_limits_through_partition_server_kill_pg_restart_and_agent_kill(
        fleet_name, pg_url, postgres_cluster, tmp_path: Path):
    name = fleet_name
    fleets.fleet_up(name, 2, 1, db=pg_url)
    env = fleets.admin_env(name)
    client = OpenStack(openstack_cli(), env["OS_AUTH_URL"], "admin", env["OS_PASSWORD"], "admin", tmp_path,
                       netns=f"{name}-ctl")

    def openstack(*args: str) -> str:
        done = client.run(args)
        assert done.ok, f"openstack {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    openstack("network", "qos", "policy", "create", "bw-limiter")
    rule = openstack("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps", "3000",
                     "--max-burst-kbits", "300", "--egress", "bw-limiter", "-f", "value", "-c", "id")
    openstack("network", "create", "fleet-net")
    for i in (1, 2):
        openstack("port", "create", "--network", "fleet-net", "--host", f"{name}{i}", "--binding-profile",
                  "device=tap-vm1", "--qos-policy", "bw-limiter", f"p{i}")
    _until("3 Mbit/s on both hosts", _both(name, 3_000_000))

    # a partition of host 1: host 2 follows, host 1 keeps what it had, then catches up
    fleets.partition(name, 1, cut=True)
    openstack("network", "qos", "rule", "set", "--max-kbps", "5000", "bw-limiter", rule)
    _until("5 Mbit/s on host 2", lambda: _egress(name, f"{name}2") == 5_000_000)
    time.sleep(1.0)
    assert _egress(name, f"{name}1") == 3_000_000, "the partitioned host must keep the limit it had"
    fleets.partition(name, 1, cut=False)
    _until("host 1 catching up after the partition", _both(name, 5_000_000))

    # the server killed: both limits hold; a change made while it is away queues and arrives
    fleets.stop(name, "server", signal.SIGKILL)
    time.sleep(2.0)
    assert _both(name, 5_000_000)(), "a dead server must not remove a limit"
    fleets.start_server(name, 2)
    openstack("network", "qos", "rule", "set", "--max-kbps", "4000", "bw-limiter", rule)
    _until("4 Mbit/s on both hosts after the server came back", _both(name, 4_000_000))

    # PostgreSQL restarted under the server: it reconnects, the next change reaches both hosts
    postgres_cluster.stop()
    postgres_cluster.start()
    openstack("network", "qos", "rule", "set", "--max-kbps", "6000", "bw-limiter", rule)
    _until("6 Mbit/s on both hosts after PostgreSQL restarted", _both(name, 6_000_000))

    # an agent killed and started again: it keeps and re-enforces its cache, leaves no orphan
    fleets.stop(name, f"{name}1", signal.SIGKILL)
    assert _egress(name, f"{name}1") == 6_000_000, "a killed agent must not remove a limit"
    fleets.start_agent(name, 2, 1)
    openstack("network", "qos", "rule", "set", "--max-kbps", "2000", "bw-limiter", rule)
    _until("2 Mbit/s on both hosts after the agent restarted", _both(name, 2_000_000))
    cache = f"sqlite:///{fleets.state_dir(name) / f'agent-{name}1.db'}"
    with open_store(cache, read_only=True) as store:
        drift = check_host(store, f"{name}1-host")  # orphans come back as drift rows of their own
    assert [d.port for d in drift] == ["tap-vm1"] and all(d.ok for d in drift), drift

    status = fleets.fleet_status(name)
    assert status is not None and all(p.pid for p in status.processes), status
    for log in ("server.log", f"agent-{name}1.log", f"agent-{name}2.log"):
        assert "Traceback" not in (fleets.state_dir(name) / log).read_text(), log
