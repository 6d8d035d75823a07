"""Kernel tier, issue 19: `vmqos-cni` with `vmqosServer` takes a Neutron QoS policy by name from a real
`vmqos server` (SQLite), chained after Debian's `bridge` + `host-local` in a host namespace `vqcs…`.

The server runs inside that namespace, on its loopback, since the plugin runs there (a runtime's
plugins run in the host's namespace; the root namespace's loopback is not reachable from it, and the
tests touch no root-namespace address or route). Its policies are made through its Neutron API with
the credentials the plugin uses (a project's member), so the plugin sees them as a runtime would. The
plugin's own store is another SQLite file: what reaches the kernel came over HTTP.

Costs about 15 s (a server started, three CLI processes, six plugin runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import cni_chain as cni
from tests.kernel.conftest import require
from vmqos.services.ports import show_port
from vmqos.store import Store
from vmqos.store import containers as rows

pytestmark = pytest.mark.kernel

ADMIN_PASSWORD = "admin-secret"
PASSWORD = "cni-s3cret-never-printed"
PORT = 9696  # the host namespace is new: its loopback has nothing else

# Runs inside the host namespace: waits for the server, then makes the policies through its Neutron API.
MAKE_POLICIES = r"""
import json, sys, time, urllib.request, urllib.error
url, password = sys.argv[1], sys.argv[2]
def call(method, path, body=None, token=None):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode() if body else None, method=method,
                                 headers={"Content-Type": "application/json", **({"X-Auth-Token": token} if token else {})})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers, json.loads(r.read() or b"null")
deadline = time.monotonic() + 20
while True:
    try:
        call("GET", "/")
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("the server did not start")
        time.sleep(0.1)
headers, _ = call("POST", "/v3/auth/tokens", {"auth": {"identity": {"methods": ["password"], "password": {"user": {
    "name": "cni", "domain": {"name": "Default"}, "password": password}}},
    "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}})
token = headers["X-Subject-Token"]
def policy(name, rules):
    _, made = call("POST", "/v2.0/qos/policies", {"policy": {"name": name}}, token)
    pid = made["policy"]["id"]
    for rtype, values in rules:
        call("POST", f"/v2.0/qos/policies/{pid}/{rtype}_rules", {f"{rtype}_rule": values}, token)
    return pid
print(json.dumps({"vqgold": policy("vqgold", [
    ("bandwidth_limit", {"max_kbps": 8000, "max_burst_kbps": 800, "direction": "egress"}),
    ("bandwidth_limit", {"max_kbps": 20000, "direction": "ingress"}),
    ("packet_rate_limit", {"max_kpps": 3, "direction": "egress"}),
    ("dscp_marking", {"dscp_mark": 26})]),
    "vqtwin": [policy("vqtwin", []), policy("vqtwin", [])]}))
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "VMQOS_"))} | {"PYTHONPATH": str(cni.SRC)}


def _vmqos(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "vmqos.cli.main", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=_env())
    assert done.returncode == 0, done.stderr


@pytest.fixture
def host():
    require("kernel", cni.missing())
    name = cni.new_name("vqcs")
    cni.netns_add(name)
    try:
        yield name
    finally:
        cni.netns_del(name)  # kills the server too, if a failure left it running


@pytest.fixture
def server(host, tmp_path):
    """`vmqos server` in the host namespace with a member `cni` of project demo; its policies made."""
    db = f"sqlite:///{tmp_path / 'server.db'}"
    _vmqos("server", "init", "--admin-password", ADMIN_PASSWORD, "--db", db, cwd=tmp_path)
    _vmqos("server", "user", "cni", "--password", PASSWORD, "--project", "demo", "--role", "member", "--db", db,
           cwd=tmp_path)
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(["ip", "netns", "exec", host, sys.executable, "-m", "vmqos.cli.main", "server",
                             "--listen", f"127.0.0.1:{PORT}", "--db", db], cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT, env=_env())
    try:
        made = subprocess.run(["ip", "netns", "exec", host, sys.executable, "-c", MAKE_POLICIES,
                               f"http://127.0.0.1:{PORT}", PASSWORD], capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr + (tmp_path / "server.log").read_text()
        yield proc, json.loads(made.stdout)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _ok(out: cni.Outcome) -> None:
    assert out.returncode == 0, (out.plugin, out.stdout, out.stderr[-2000:])


def _tc(host: str, what: str, dev: str) -> str:
    return subprocess.run(["ip", "netns", "exec", host, "tc", what, "show", "dev", dev], capture_output=True,
                          text=True, check=True).stdout


def test_a_policy_by_name_from_the_server_reaches_the_kernel_and_a_server_down_fails_add_not_del(
        host, server, tmp_path):
    proc, ids = server
    credentials = tmp_path / "cni-credentials.json"
    credentials.write_text(json.dumps({"username": "cni", "password": PASSWORD, "project_name": "demo"}))
    credentials.chmod(0o600)
    vmqos_conf = {"type": "vmqos-cni", "policy": "vqgold", "vmqosDatabase": str(tmp_path / "cni.db"),
                  "vmqosServer": {"url": f"http://127.0.0.1:{PORT}", "credentialsFile": str(credentials),
                                  "timeoutSeconds": 2}}
    chain = cni.Chain(host, cni.plugin_dir(tmp_path),
                      cni.conflist("vqnet", "10.199.2.0/24", "vqbr2", [vmqos_conf], tmp_path / "ipam"))
    made: list[str] = []
    try:
        ctr = cni.new_name("vqcc")
        made.append(ctr)
        path = cni.netns_add(ctr)
        out = chain.add("vqsrv1", path, env={"VMQOS_LOG_LEVEL": "DEBUG"})
        _ok(out)
        assert PASSWORD not in out.stdout + out.stderr  # not even at DEBUG (keystoneauth logs requests there)
        veth = [i["name"] for i in out.answer["interfaces"] if not i.get("sandbox") and i["name"].startswith("veth")][0]
        with Store(f"sqlite:///{tmp_path / 'cni.db'}") as store:
            shown = show_port(store, host, veth)
            assert shown.kernel.in_sync, shown
            assert shown.desired.ingress.rate_bps == 20_000_000 and shown.desired.egress.rate_bps == 8_000_000
            assert shown.desired.egress.pps == 3000
            state = store.load(host)
            assert state.policies["vqgold"].origin == "neutron"
            assert [p.policy for i in state.instances.values() for p in i.ports] == ["vqgold"]
        # the policy's limits on the kernel: ingress (towards the container) on the veth's root, egress on its IFB
        assert "rate 20Mbit" in _tc(host, "class", veth)
        [ifb] = cni.links(host, "ifb")
        assert "rate 8Mbit" in _tc(host, "class", ifb)
        ruleset = subprocess.run(["ip", "netns", "exec", host, "nft", "list", "ruleset"], capture_output=True,
                                 text=True, check=True).stdout
        assert "3000/second" in ruleset and "dscp set af31" in ruleset, ruleset

        # none, and two visible of that name: code 7 naming the policy and the server; nothing made
        for name, fragment in (("vqnone", "no Neutron QoS policy of that name"),
                               ("vqtwin", f"2 Neutron QoS policies named 'vqtwin' are visible on http://127.0.0.1:{PORT} "
                                          f"({', '.join(sorted(ids['vqtwin']))})")):
            conf = {**chain._conf(vmqos_conf, chain.results["vqsrv1"], None), "policy": name}
            out = cni.exec_plugin(host, chain.bin_dir, "vmqos-cni", "ADD", conf, container_id="vqsrvx", netns=path)
            assert out.returncode == 1 and out.answer["code"] == 7, out.stdout
            assert f"policy {name!r} from the vmqos server http://127.0.0.1:{PORT}" in out.answer["msg"]
            assert fragment in out.answer["msg"], out.answer["msg"]
        assert len(cni.links(host, "ifb")) == 1

        # the server down: CHECK and DEL of the running container need it not; a new container's ADD fails
        proc.terminate()
        proc.wait(timeout=10)
        _ok(chain.check("vqsrv1", path))
        ctr2 = cni.new_name("vqcc")
        made.append(ctr2)
        path2 = cni.netns_add(ctr2)
        started = time.monotonic()
        out = chain.add("vqsrv2", path2)
        assert time.monotonic() - started < 30  # bounded by timeoutSeconds, not keystoneauth's default
        assert out.plugin == "vmqos-cni" and out.returncode == 1 and out.answer["code"] == 11, out.stdout
        assert "'vqgold' from the vmqos server" in out.answer["msg"] and PASSWORD not in out.stdout + out.stderr
        assert len(cni.links(host, "ifb")) == 1  # nothing made for the container that must not start unlimited
        chain.results["vqsrv2"] = chain.partial["vqsrv2"]
        _ok(chain.delete("vqsrv2", path2))  # the runtime's answer to the failed ADD
        _ok(chain.delete("vqsrv1", path))
        assert cni.links(host, "ifb") == [] and cni.nft_chains(host) == []
        with Store(f"sqlite:///{tmp_path / 'cni.db'}") as store:
            assert rows.listed(store) == [] and store.load(host).instances == {}
    finally:
        for name in made:
            cni.netns_del(name)
