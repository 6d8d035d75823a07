"""The fleet end to end: the real openstack CLI changes a rule, an agent's long poll sees it; `vmqos fleet`
and `vmqos port show --server` read the server; services.server_client's errors, one line each.

`vmqos server` runs in a subprocess on SQLite (the in-process modules run on both back ends); the
agent is services.server_client.ServerClient, as the agent imports it, with a service user's
OS_* credentials.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from vmqos.core.formats.hostfile import policy_from_data
from vmqos.services import fleet_desired
from vmqos.services.fleet_wire import (PortReport, PortUsage, QuarantineReport, Registration, Report, RevisionGone,
                                      UsageLine)
from vmqos.services.server_client import ServerClient, ServerForbidden, ServerUnauthorized, ServerUnreachable
from vmqos.store import Store

from .conftest import ADMIN_PASSWORD, PASSWORD, free_port, vmqos

pytestmark = pytest.mark.server
HOST = "vqfleet1"


def _credentials(user: str, password: str, project: str) -> dict[str, str]:
    return {"OS_USERNAME": user, "OS_PASSWORD": password, "OS_PROJECT_NAME": project}


def _vmqos_as_admin(server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "VMQOS_"))}
    env |= _credentials("admin", ADMIN_PASSWORD, "admin") | {"VMQOS_URL": server.url}
    return subprocess.run([sys.executable, "-m", "vmqos.cli.main", *args], cwd=server.cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def _ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    return result


def test_a_rule_changed_with_the_openstack_cli_reaches_a_waiting_agent(server):
    _ok(vmqos("identity", "user", "create", "agent-f1", "--role", "service", "--host", HOST, "--password", PASSWORD,
              "--db", server.db, cwd=server.cwd))
    server.json("network", "qos", "policy", "create", "vq-fleet")
    rule = server.json("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps", "3000",
                       "--max-burst-kbits", "300", "--egress", "vq-fleet")
    _ok(server.openstack("network", "create", "vq-fleet-net"))
    made = server.json("port", "create", "--network", "vq-fleet-net", "--host", HOST, "--qos-policy", "vq-fleet",
                       "vq-fleet-port")
    device = "tap" + made["id"][:11]

    agent = ServerClient.from_env(server.url, host=HOST, environ=_credentials("agent-f1", PASSWORD, "service"))
    assert agent.register(Registration(agent_version="test")).status == "unknown"
    snapshot = agent.desired()
    assert [(r.device, r.port_id) for r in snapshot.ports] == [(device, made["id"])]
    limit = snapshot.ports[0].as_policy()
    assert limit is not None and limit.qos.egress.bandwidth.rate_bps == 3_000_000  # type: ignore[union-attr]

    seen: dict = {}

    def wait_for_it() -> None:
        start = time.monotonic()
        seen["changes"] = agent.changes(snapshot.revision, wait=30)
        seen["waited"] = time.monotonic() - start

    poll = threading.Thread(target=wait_for_it)
    poll.start()
    time.sleep(0.3)
    _ok(server.openstack("network", "qos", "rule", "set", "--max-kbps", "4000", "vq-fleet", rule["id"]))
    poll.join(60)
    changed = seen["changes"]
    assert seen["waited"] < 20 and [r.device for r in changed.changes] == [device]
    new_limit = changed.changes[0].as_policy()
    assert new_limit is not None and new_limit.qos.egress.bandwidth.rate_bps == 4_000_000  # type: ignore[union-attr]
    line = UsageLine(direction="egress", local_ip="10.0.0.5", remote_ip="192.0.2.7", granularity="day",
                     period_start=datetime(2026, 12, 7, tzinfo=UTC), bytes=4096, packets=4)
    assert agent.usage(device).usage is None
    agent.report(Report(applied_revision=changed.revision,
                        ports=[PortReport(device=device, revision=changed.changes[0].revision, status="in_sync")],
                        usage=[PortUsage(device=device, at=datetime(2026, 12, 7, 1, tzinfo=UTC), lines=[line])]))
    assert agent.usage(device).usage.lines == [line]  # type: ignore[union-attr]

    hosts = json.loads(_ok(_vmqos_as_admin(server, "fleet", "hosts", "--json")).stdout)
    assert [(h["name"], h["status"], h["ports"]) for h in hosts] == [(HOST, "in_sync", 1)]
    ports = json.loads(_ok(_vmqos_as_admin(server, "fleet", "ports", "--host", HOST, "--json")).stdout)
    assert [(p["device"], p["status"], p["policy"]["egress"]["rate"]) for p in ports] == [(device, "in_sync", "4mbit")]
    shown = _ok(_vmqos_as_admin(server, "port", "show", device, "--server", server.url, "--host", HOST)).stdout
    assert f"{device} on host {HOST}" in shown and "rate 4mbit" in shown and "in_sync" in shown
    lonely = _vmqos_as_admin(server, "port", "show", device, "--server", server.url)
    assert lonely.returncode != 0 and "--server needs --host HOST" in lonely.stderr

    # a quarantine the agent's monitor placed is listed fleet-wide, and gone once the agent reports it lifted
    assert _ok(_vmqos_as_admin(server, "fleet", "quarantines")).stdout.strip() == "no quarantine in force"
    since = datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC)
    agent.report(Report(quarantines=[QuarantineReport(device=device, since=since, reason="syn_flood: 9,000 SYN/s")]))
    listed = json.loads(_ok(_vmqos_as_admin(server, "fleet", "quarantines", "--host", HOST, "--json")).stdout)
    assert [(q["host"], q["device"], q["reason"]) for q in listed] == [(HOST, device, "syn_flood: 9,000 SYN/s")]
    table = _ok(_vmqos_as_admin(server, "fleet", "quarantines")).stdout
    assert device in table and "2026-12-07T01:02:03" in table and "syn_flood" in table, table
    agent.report(Report(quarantines=[QuarantineReport(device=device, since=since, reason="", lifted=True)]))
    assert json.loads(_ok(_vmqos_as_admin(server, "fleet", "quarantines", "--json")).stdout) == []

    with pytest.raises(ServerForbidden, match="user agent-f1 is bound to host vqfleet1"):
        agent.desired("other-host")
    with pytest.raises(ServerUnauthorized, match="refused the credentials"):
        ServerClient.from_env(server.url, host=HOST, environ=_credentials("agent-f1", "wrong", "service")).desired()
    with pytest.raises(ServerUnreachable, match="unreachable"):
        ServerClient.from_env(f"http://127.0.0.1:{free_port()}", host=HOST,
                              environ=_credentials("agent-f1", PASSWORD, "service")).desired()

    with Store(server.db) as store:  # a tombstone, compacted as a week later: the agent's `since` is gone
        fleet_desired.set_port(store, HOST, "vq-gone", policy_from_data("gold", {"egress": {"rate": "1mbit"}}))
        fleet_desired.clear_port(store, HOST, "vq-gone")
        assert fleet_desired.compact(store, now=datetime.now(UTC) + timedelta(days=30)) == 1
    with pytest.raises(RevisionGone, match="read /v1/hosts/vqfleet1/desired again") as caught:
        agent.changes(changed.revision)
    assert "\n" not in str(caught.value)
    assert agent.desired().revision > changed.revision


def test_vmqos_verify_uploads_its_runs_through_the_real_client_and_a_failure_is_one_warning(server, tmp_path):
    """cli.verify_upload with services.server_client against `vmqos server`: what `vmqos verify --server` does
    once its runs are over (the runs themselves are tests/traffic's)."""
    from tests.core.test_verify_upload import AT, PNG, _run
    from vmqos.cli.verify_upload import Finished, upload_runs

    server.json("network", "qos", "policy", "create", "vq-verify")
    server.json("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps", "20000", "--egress",
                "vq-verify")
    _ok(server.openstack("network", "create", "vq-verify-net"))
    made = server.json("port", "create", "--network", "vq-verify-net", "--host", HOST, "--qos-policy", "vq-verify",
                       "vq-verify-port")
    device = "tap" + made["id"][:11]
    admin = ServerClient.from_env(server.url, environ=_credentials("admin", ADMIN_PASSWORD, "admin"))
    plot = tmp_path / "egress.png"
    plot.write_bytes(PNG)
    said: list[str] = []
    warned: list[str] = []
    finished = [Finished(_run("ingress", 20_000_000), AT, None), Finished(_run("egress", 30_000_000), AT, str(plot))]
    ids = upload_runs(admin, device, HOST, finished, [], said.append, warned.append)
    assert len(ids) == 2 and not warned
    runs = admin.verify_runs(device, HOST)
    assert [(r.id, r.direction, r.ok, r.has_plot) for r in runs] == \
        [(ids[1], "egress", False, True), (ids[0], "ingress", True, False)]
    image = admin.session.get(f"{server.url}/v1/hosts/{HOST}/ports/{device}/verify-runs/{ids[1]}/plot.png")
    assert image.headers["Content-Type"] == "image/png" and image.content == PNG

    assert upload_runs(admin, "vq-nothing", HOST, finished, [], said.append, warned.append) == []
    assert len(warned) == 1 and "404" in warned[0] and "\n" not in warned[0]
