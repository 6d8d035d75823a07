"""`vmqos server` runs inside contrib/systemd/vmqos-server.service's sandbox: Python, uvicorn, argon2 (cffi)
and OpenSSL under MemoryDenyWriteExecute=, SystemCallFilter=, RestrictAddressFamilies=, no capability
and no new privileges, applied from the unit file itself as systemd 252 applies them (tests/unit_sandbox.py;
systemd is not PID 1 here). The server serves HTTPS, logs the admin in (an argon2 verification), creates
and lists a policy, and stops cleanly on SIGTERM (what `systemctl stop` sends); /proc shows the filters on the server's own process. The
same sandbox refuses W+X memory, a packet socket and a call of @resources, so it is not a no-op.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from unit_sandbox import confined

from .conftest import ADMIN_PASSWORD, ROOT, Pki, vmqos
from .serving import call, running_server, token

pytestmark = pytest.mark.server
UNIT = ROOT / "contrib" / "systemd" / "vmqos-server.service"

PROBE = r"""
import errno, mmap, os, socket
def refused(what, call, code):
    try:
        call()
    except OSError as exc:
        assert exc.errno == code, (what, exc)
        print(what, "refused", errno.errorcode[exc.errno])
    else:
        raise SystemExit(f"{what} was allowed")
refused("W+X memory", lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC), errno.EPERM)
refused("AF_PACKET socket", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW), errno.EAFNOSUPPORT)
refused("sched_setaffinity (@resources)", lambda: os.sched_setaffinity(0, os.sched_getaffinity(0)), errno.EPERM)
socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
print([line for line in open("/proc/self/status") if line.startswith(("CapEff", "NoNewPrivs", "Seccomp:"))])
"""


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def test_the_server_serves_https_inside_the_units_sandbox(pki: Pki, tmp_path: Path):
    db = f"sqlite:///{tmp_path / 'vmqos.db'}"
    done = vmqos("server", "init", "--admin-password", ADMIN_PASSWORD, "--db", db, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with running_server(tmp_path, db, "--tls-cert", str(pki.cert), "--tls-key", str(pki.key), cafile=pki.ca,
                        wrap=lambda argv: confined(UNIT, argv)) as s:
        assert s.pid is not None
        status = _status(s.pid)
        assert (status["CapEff"], status["CapBnd"], status["NoNewPrivs"], status["Seccomp"],
                status["Seccomp_filters"]) == ("0" * 16, "0" * 16, "1", "2", "2"), status
        context = ssl.create_default_context(cafile=str(pki.ca))
        admin, _ = token(s.url, "admin", ADMIN_PASSWORD, "admin", context=context)
        headers = {"X-Auth-Token": admin}
        status_code, _, made = call("POST", f"{s.url}/v2.0/qos/policies", {"policy": {"name": "sandboxed"}},
                                    headers, context=context)
        assert status_code == 201, made
        _, _, listed = call("GET", f"{s.url}/v2.0/qos/policies", headers=headers, context=context)
        assert [p["name"] for p in listed["policies"]] == ["sandboxed"]
    log = (tmp_path / "server.log").read_text()
    assert "Finished server process" in log and "Traceback" not in log, log


def test_the_sandbox_refuses_what_the_unit_forbids(tmp_path: Path):
    done = subprocess.run(confined(UNIT, [sys.executable, "-c", PROBE]), capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[:3] == ["W+X memory refused EPERM", "AF_PACKET socket refused EAFNOSUPPORT",
                                            "sched_setaffinity (@resources) refused EPERM"]
    assert "'CapEff:\\t0000000000000000\\n'" in done.stdout and "'NoNewPrivs:\\t1\\n'" in done.stdout
