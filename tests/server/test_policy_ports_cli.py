"""`vmqos port set DEV --server URL --host HOST --policy ID` (issue 14): the real CLI against a real `vmqos server`
subprocess makes a device follow a typed vmqos policy, `port show` names the policy's id, and what cannot be
done is one line naming the field. Cost: one server start (~6 s) and five CLI processes (~1 s each on 2 vCPUs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from .conftest import ADMIN_PASSWORD

pytestmark = pytest.mark.server
HOST = "vqpolicy1"
DEVICE = "vq-pol0"
GOLD = {"name": "gold-cli", "qos": {"ingress": {"bandwidth": {"rate_bps": 10_000_000, "peak_bps": 20_000_000}}}}


def _cli(server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "VMQOS_"))}
    env |= {"OS_USERNAME": "admin", "OS_PASSWORD": ADMIN_PASSWORD, "OS_PROJECT_NAME": "admin"}
    return subprocess.run([sys.executable, "-m", "vmqos.cli.main", *args, "--server", server.url, "--host", HOST],
                          cwd=server.cwd, env=env, capture_output=True, text=True, timeout=60)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def _policy(server) -> str:
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"name": "Default"}, "password": ADMIN_PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}
    token = httpx.post(f"{server.url}/v3/auth/tokens", json=auth, timeout=30).headers["X-Subject-Token"]
    made = httpx.post(f"{server.url}/v1/policies", json=GOLD, headers={"X-Auth-Token": token}, timeout=30)
    assert made.status_code == 201, made.text
    return str(made.json()["policy"]["id"])


def test_port_set_with_a_policy_id_follows_it_and_port_show_names_it(server):
    policy_id = _policy(server)
    done = _cli(server, "port", "set", DEVICE, "--policy", policy_id, "--json")
    assert done.returncode == 0, done.stderr
    port = json.loads(done.stdout)
    assert (port["source"], port["policy_id"], port["policy_name"]) == ("native", policy_id, f"vmqos:{policy_id}")
    assert port["policy"] == {"ingress": {"rate": "10mbit", "peak": "20mbit"}}
    shown = _cli(server, "port", "show", DEVICE)
    assert shown.returncode == 0, shown.stderr
    assert any(line.split() == ["policy", "id", policy_id] for line in shown.stdout.splitlines()), shown.stdout

    unknown = _one_line_error(_cli(server, "port", "set", DEVICE, "--policy", "no-such-policy"))
    assert "404" in unknown and "policy_id: no vmqos policy no-such-policy" in unknown
    mixed = _one_line_error(_cli(server, "port", "set", DEVICE, "--policy", policy_id, "--inbound", "1000,0,0"))
    assert mixed.startswith(f"vmqos: error: --policy: '{policy_id}' is not valid: with a policy's id leave")
