"""`vmqos port set|show|clear DEV --server URL --host HOST` (issue 14, the native API): the real CLI against a
real `vmqos server` subprocess, as an admin, as a member of another project, and with a bad value.

The edit is the local command's (domiftune semantics: an absent direction keeps its value, `0` clears it),
sent through the native PUT; the values below are checked in canonical units, read back from the server.
`port list`, `events` and `quarantine list` with --server read what an agent reported; `fleet instances` lists
the Neutron ports' device_ids.
Cost: one server start (~6 s) and fifteen CLI processes (~1 s each on 2 vCPUs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from datetime import UTC, datetime, timedelta

import pytest

from vmqos.core.formats.hostfile import policy_from_data
from vmqos.services.fleet_wire import EventReport, PortUsage, QuarantineReport, Registration, Report, UsageLine
from vmqos.services.server_client import ServerClient

from .conftest import ADMIN_PASSWORD, PASSWORD, free_port

pytestmark = pytest.mark.server
HOST = "vqnative1"
DEVICE = "vq-nat0"


def _cli(server, *args: str, user: str = "admin", project: str = "admin",
         url: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real `vmqos` CLI with the openstack CLI's OS_* credentials and $VMQOS_URL (no --server)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "VMQOS_"))}
    env |= {"OS_USERNAME": user, "OS_PASSWORD": ADMIN_PASSWORD if user == "admin" else PASSWORD,
            "OS_PROJECT_NAME": project, "VMQOS_URL": url or server.url}
    return subprocess.run([sys.executable, "-m", "vmqos.cli.main", *args], cwd=server.cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def _qos(port: dict):
    return policy_from_data("read-back", port["policy"]).qos


def test_port_set_show_clear_against_a_server(server):
    # --inbound as virsh domiftune: 12800 kB/s average = 102.4 Mbit/s, burst 64 KiB; --outbound with a peak
    made = json.loads(_ok(_cli(server, "port", "set", DEVICE, "--server", server.url, "--host", HOST,
                               "--inbound", "12800,0,64", "--outbound", "1000,2000,32", "--json")))
    assert (made["host"], made["device"], made["source"]) == (HOST, DEVICE, "native")
    qos = _qos(made)
    assert qos.ingress.bandwidth.rate_bps == 102_400_000 and qos.ingress.bandwidth.burst_bytes == 65_536
    assert (qos.egress.bandwidth.rate_bps, qos.egress.bandwidth.peak_bps) == (8_000_000, 16_000_000)

    # an absent direction keeps its value, 0 clears one: read from the server, changed, written back;
    # --server defaults to $VMQOS_URL when --host is given
    changed = json.loads(_ok(_cli(server, "port", "set", DEVICE, "--host", HOST, "--outbound", "0", "--json")))
    qos = _qos(changed)
    assert qos.ingress.bandwidth.rate_bps == 102_400_000 and qos.egress.bandwidth is None
    assert changed["desired_revision"] > made["desired_revision"]

    shown = _ok(_cli(server, "port", "show", DEVICE, "--server", server.url, "--host", HOST))
    assert f"{DEVICE} on host {HOST}" in shown and "native:vq-nat0: ingress rate 102400kbit, burst 64kb" in shown

    # the local command's own message for a bad value, before any request (here: floor on outbound)
    bad = _one_line_error(_cli(server, "port", "set", DEVICE, "--host", HOST, "--outbound", "100,0,0,5"))
    assert bad.startswith("vmqos: error: --outbound: 5 is not valid: libvirt accepts floor only on inbound")

    # a member of another project: 403 with the server's message; and the port is not theirs to see
    refused = _one_line_error(_cli(server, "port", "set", DEVICE, "--host", HOST, "--inbound", "10,0,0",
                                   user="bob", project="other"))
    assert "403" in refused and "admin only" in refused and "bob" in refused
    hidden = _one_line_error(_cli(server, "port", "show", DEVICE, "--host", HOST, user="bob", project="other"))
    assert "404" in hidden and f"device {DEVICE} on host {HOST}" in hidden
    assert _qos(json.loads(_ok(_cli(server, "port", "show", DEVICE, "--host", HOST, "--json")))) == qos

    cleared = json.loads(_ok(_cli(server, "port", "clear", DEVICE, "--server", server.url, "--host", HOST, "--json")))
    assert cleared == {"host": HOST, "device": DEVICE, "cleared": True}
    after = json.loads(_ok(_cli(server, "port", "show", DEVICE, "--host", HOST, "--json")))
    assert after["policy"] is None and after["desired_revision"] > changed["desired_revision"]

    gone = _one_line_error(_cli(server, "port", "clear", DEVICE, "--host", HOST, url=f"http://127.0.0.1:{free_port()}"))
    assert gone.startswith("vmqos: error: http://127.0.0.1:") and "unreachable" in gone
    mixed = _cli(server, "port", "clear", DEVICE, "--host", HOST, "--force")
    assert mixed.returncode == 2 and "--live, --config and --force are for this host" in mixed.stderr


def test_port_list_events_and_quarantines_against_a_server(server):
    assert _cli(server, "port", "set", "vq-nat1", "--host", HOST, "--inbound", "1000,0,0").returncode == 0
    admin = {"OS_USERNAME": "admin", "OS_PASSWORD": ADMIN_PASSWORD, "OS_PROJECT_NAME": "admin"}
    agent = ServerClient.from_env(server.url, host=HOST, environ=admin)
    agent.register(Registration(agent_version="test"))
    now = datetime.now(UTC).replace(microsecond=0)
    old, new = now - timedelta(hours=3), now - timedelta(minutes=5)
    agent.report(Report(
        events=[EventReport(device="vq-nat1", at=old, kind="flood", message="12000 pps in", direction="ingress"),
                EventReport(device="vq-nat1", at=new, kind="quarantined", message="quarantined: flood")],
        quarantines=[QuarantineReport(device="vq-nat1", since=new, reason="flood of 12000 pps")]))

    listed = json.loads(_ok(_cli(server, "port", "list", "--server", server.url, "--host", HOST, "--json")))
    limited = [(p["device"], _qos(p).ingress.bandwidth.rate_bps) for p in listed if p["policy"]]
    assert limited == [("vq-nat1", 8_000_000)]
    table = _ok(_cli(server, "port", "list", "--host", HOST))  # $VMQOS_URL
    assert "vq-nat1" in table and "ingress rate 8mbit" in table
    assert json.loads(_ok(_cli(server, "port", "list", "--json", user="bob", project="other"))) == []

    events = json.loads(_ok(_cli(server, "events", "--server", server.url, "--host", HOST, "--json")))
    assert [(e["kind"], e["device"]) for e in events] == [("flood", "vq-nat1"), ("quarantined", "vq-nat1")]  # oldest
    recent = _ok(_cli(server, "events", "--host", HOST, "--since", "1h")).strip().splitlines()
    assert len(recent) == 1 and f"quarantined {HOST}/vq-nat1: quarantined: flood" in " ".join(recent[0].split())

    held = _ok(_cli(server, "quarantine", "list", "--server", server.url))
    row = [cell.strip() for cell in held.splitlines()[-1].split("│")]  # the table `vmqos fleet quarantines` prints
    assert row[:2] == [HOST, "vq-nat1"] and row[3] == "flood of 12000 pps", held


def test_fleet_instances_lists_the_neutron_ports_device_ids(server):
    admin = ServerClient.from_env(server.url, environ={"OS_USERNAME": "admin", "OS_PASSWORD": ADMIN_PASSWORD,
                                                       "OS_PROJECT_NAME": "admin"})

    def neutron(path: str, body: dict) -> dict:  # the admin's token, through the client's own session
        answer = admin.session.request(f"{server.url}/v2.0/{path}", "POST", json=body, raise_exc=False)
        assert answer.status_code == 201, answer.text
        return answer.json()

    net = neutron("networks", {"network": {"name": "vq-inst-net"}})["network"]
    made = neutron("ports", {"port": {"network_id": net["id"], "device_id": "vm-native-1",
                                      "device_owner": "compute:nova", "binding:host_id": HOST}})["port"]
    listed = json.loads(_ok(_cli(server, "fleet", "instances", "--host", HOST, "--json")))
    assert [(i["id"], i["hosts"], [(p["port_id"], p["device"]) for p in i["ports"]]) for i in listed] == [
        ("vm-native-1", [HOST], [(made["id"], "tap" + made["id"][:11])])]


def test_two_concurrent_port_set_writers_lose_no_update(server):
    """Two `port set --server` at once (the CLI's own read-change-write, services.fleet_remote), made to read the
    same revision before either writes: the second write is refused (412), read again and applied on top, so both
    changes hold. Without the conditional write the second PUT would drop the first one's --inbound."""
    import threading

    from vmqos.core.desired.ports import PortChange
    from vmqos.services.fleet_remote import set_remote

    admin = {"OS_USERNAME": "admin", "OS_PASSWORD": ADMIN_PASSWORD, "OS_PROJECT_NAME": "admin"}
    device = "vq-race0"
    assert _cli(server, "port", "set", device, "--host", HOST, "--inbound", "1000,0,0").returncode == 0
    both_read = threading.Barrier(2, timeout=30)

    class ReadsTogether(ServerClient):
        """The first read of each writer waits for the other's: both hold the same revision when they write."""

        waited = False

        def port(self, device, host=None):
            found = super().port(device, host)
            if not self.waited:
                self.waited = True
                both_read.wait()
            return found

    changes = {"in": PortChange(inbound="2000,0,0"), "out": PortChange(outbound="3000,0,0")}
    results: dict[str, object] = {}

    def write(name: str) -> None:
        plain = ServerClient.from_env(server.url, environ=admin)
        client = ReadsTogether(plain.url, plain.session)
        try:
            results[name] = set_remote(client, HOST, device, changes[name])
        except Exception as exc:  # reported below, with the other writer's result
            results[name] = exc

    threads = [threading.Thread(target=write, args=(name,)) for name in changes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(not isinstance(r, Exception) for r in results.values()), results
    final = json.loads(_ok(_cli(server, "port", "show", device, "--host", HOST, "--json")))
    qos = _qos(final)
    assert (qos.ingress.bandwidth.rate_bps, qos.egress.bandwidth.rate_bps) == (16_000_000, 24_000_000)


def test_usage_and_following_events_against_a_server(server):
    import signal
    import time

    admin = {"OS_USERNAME": "admin", "OS_PASSWORD": ADMIN_PASSWORD, "OS_PROJECT_NAME": "admin"}
    device = "vq-use0"
    assert _cli(server, "port", "set", device, "--host", HOST, "--inbound", "1000,0,0").returncode == 0
    agent = ServerClient.from_env(server.url, host=HOST, environ=admin)
    agent.register(Registration(agent_version="test"))
    at = datetime.now(UTC).replace(microsecond=0)
    hour = at.replace(minute=0, second=0)
    agent.report(Report(usage=[PortUsage(device=device, at=at, lines=[
        UsageLine(direction="egress", local_ip="10.0.0.5", remote_ip="192.0.2.1", granularity="hour",
                  period_start=hour, bytes=5_000_000, packets=4000)])]))
    used = json.loads(_ok(_cli(server, "usage", "--host", HOST, "--port", device, "--json")))
    assert [(u["remote_ip"], u["bytes"]) for u in used["lines"]] == [("192.0.2.1", 5_000_000)]
    assert "192.0.2.1" in _ok(_cli(server, "usage", "--host", HOST, "--port", device))
    assert "--port DEV" in _cli(server, "usage", "--host", HOST).stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "VMQOS_"))} | admin
    env["PYTHONFAULTHANDLER"] = "1"
    follower = subprocess.Popen([sys.executable, "-m", "vmqos.cli.main", "events", "--server", server.url, "--host",
                                 HOST, "--port", device, "--follow", "--json", "--limit", "1"], cwd=server.cwd,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True,  # its Ctrl-C is its own, not this run's
                                # as a terminal starts it: a run started in the background by a shell
                                # ignores SIGINT (bash does that to `cmd &`), and a child inherits an
                                # ignored signal (CI's follower sat in its long poll through its Ctrl-C)
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        time.sleep(3)  # it has started and waits in the server's long poll (no assertion on this time)
        agent.report(Report(events=[EventReport(device=device, at=at, kind="flood", message=f"burst {i}")
                                    for i in range(2)]))
        lines = [follower.stdout.readline() for _ in range(2)]
        assert [json.loads(line)["message"] for line in lines] == ["burst 0", "burst 1"]
        follower.send_signal(signal.SIGINT)  # Ctrl-C ends it cleanly: no traceback, status 0
        try:
            _out, err = follower.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # say where it waits (faulthandler on SIGABRT)
            follower.send_signal(signal.SIGABRT)
            _out, err = follower.communicate(timeout=10)
            pytest.fail(f"the follower outlived its Ctrl-C by 30 s; its threads:\n{err[-4000:]}")
        assert follower.returncode == 0 and "Traceback" not in err, err
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
