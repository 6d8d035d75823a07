"""`vmqos uplink set|show|unset --server URL --host HOST` (issue 16): the real CLI against a real `vmqos server`
subprocess, on SQLite (test_uplink_api covers both back ends). A host's ports carry guarantees (native
rows with `min`); an uplink they do not fit is refused before anything is written, in one line naming
the ports, their rates and the capacity (the agent's own words); `--oversubscribe` takes it with a
warning; the agent's later refusal (a report) is what `show` prints; bad values and a non-admin are one
line naming the option or the reason. Cost: one server start (~6 s) and about twelve CLI processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from vmqos.services.fleet_wire import PortReport, Registration, Report
from vmqos.services.server_client import ServerClient

from .conftest import ADMIN_PASSWORD, PASSWORD

pytestmark = [pytest.mark.server]
HOST = "vquplink1"
ADMIN = {"OS_USERNAME": "admin", "OS_PASSWORD": ADMIN_PASSWORD, "OS_PROJECT_NAME": "admin"}


def _cli(server, *args: str, user: str = "admin", project: str = "admin") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "VMQOS_"))}
    env |= {"OS_USERNAME": user, "OS_PASSWORD": ADMIN_PASSWORD if user == "admin" else PASSWORD,
            "OS_PROJECT_NAME": project}
    return subprocess.run([sys.executable, "-m", "vmqos.cli.main", "uplink", *args, "--server", server.url,
                           "--host", HOST], cwd=server.cwd, env=env, capture_output=True, text=True, timeout=60)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0 and result.stdout == "", (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def _guarantee(server, device: str, body: dict) -> None:
    """A native row of HOST with guarantees, through the API (the CLI's domiftune syntax has no egress floor)."""
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"name": "Default"}, "password": ADMIN_PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}
    token = httpx.post(f"{server.url}/v3/auth/tokens", json=auth, timeout=30).headers["X-Subject-Token"]
    done = httpx.put(f"{server.url}/v1/hosts/{HOST}/ports/{device}", json=body,
                     headers={"X-Auth-Token": token}, timeout=30)
    assert done.status_code == 200, done.text


def test_uplink_set_show_unset_refusals_and_errors(server):
    assert "404" in _one_line_error(_cli(server, "show")) and f"host {HOST} has no uplink" in \
        _one_line_error(_cli(server, "show"))
    _guarantee(server, "vq-up1", {"policy": {"egress": {"rate": "80mbit", "min": "40mbit"},
                                             "ingress": {"min": "30mbit"}}, "addresses": ["10.247.0.11"]})
    _guarantee(server, "vq-up2", {"policy": {"egress": {"min": "20mbit"}}})

    # the guarantees from the instances (60 Mbit/s) above 50 Mbit/s: refused, naming ports, rates and capacity
    refused = _one_line_error(_cli(server, "set", "--device", "wan0", "--capacity", "50mbit"))
    assert "from the instances add up to 60 Mbit/s" in refused and "capacity of 50 Mbit/s" in refused, refused
    assert "vq-up1 40 Mbit/s" in refused and "vq-up2 20 Mbit/s" in refused and "oversubscribe" in refused, refused
    assert "404" in _one_line_error(_cli(server, "show"))  # nothing was written

    made = json.loads(_ok(_cli(server, "set", "--device", "wan0", "--capacity", "12500kbps", "--json")))
    assert (made["host"], made["uplink"], made["status"], made["notes"]) == \
        (HOST, {"device": "wan0", "capacity_bps": 100_000_000, "oversubscribe": False}, "unknown", [])
    shown = json.loads(_ok(_cli(server, "show", "--json")))
    assert shown == {k: v for k, v in made.items() if k != "notes"}

    scaled = _cli(server, "set", "--device", "wan0", "--capacity", "50mbit", "--oversubscribe", "--json")
    changed = json.loads(_ok(scaled))
    assert changed["uplink"]["oversubscribe"] is True and changed["revision"] > made["revision"]
    assert [n["field"] for n in changed["notes"]] == ["uplink.from the instances"], changed["notes"]
    assert "scaled" in scaled.stderr and "60 Mbit/s" in scaled.stderr, scaled.stderr

    # the agent's later refusal (a guarantee raised after the uplink was set) is what `show` prints
    reason = "uplink refused: uplink wan0: the guaranteed minimums from the instances add up to 60 Mbit/s"
    agent = ServerClient.from_env(server.url, host=HOST, environ=ADMIN)
    agent.register(Registration(agent_version="test"))
    agent.report(Report(applied_revision=changed["revision"], ports=[
        PortReport(device="wan0", revision=changed["revision"], status="error", message=reason)]))
    text = _ok(_cli(server, "show")).splitlines()
    assert f"status         error: {reason}" in text, text
    assert "capacity       50 Mbit/s (50000000 bit/s)" in text, text

    for args, option in ((("--device", "wan0", "--capacity", "10zbit"), "--capacity: '10zbit' is not valid"),
                         (("--device", "wan0", "--capacity", "100kbit"), "--capacity: '100kbit' is not valid"),
                         (("--device", "wan/0", "--capacity", "1gbit"), "--device: 'wan/0' is not valid")):
        assert _one_line_error(_cli(server, "set", *args)).startswith(f"vmqos: error: {option}")
    forbidden = _one_line_error(_cli(server, "set", "--device", "wan0", "--capacity", "1gbit", user="alice",
                                     project="demo"))
    assert "403" in forbidden, forbidden

    gone = json.loads(_ok(_cli(server, "unset", "--json")))
    assert gone == {"host": HOST, "uplink": None, "removed": True}
    assert "404" in _one_line_error(_cli(server, "show"))
    assert "404" in _one_line_error(_cli(server, "unset"))
