"""The real `openstack` CLI for a program that runs it itself (the demo): an `openstack` executable of
the test's that relays each call to a warm client (osc_forkserver.py's relay mode).

Why: the demo's sections make ~20 `openstack` calls (`vmqos demo`, a process of its own, runs the
command $VMQOS_OPENSTACK_CLI names), each ~0.75 s of CPU for python-openstackclient's imports alone.
The relay client is a few lines of Python run with -I -S (~15 ms): it hands the call - its argv,
environment, working directory, stdin/stdout/stderr and network namespace - to the fork server over a
Unix socket, and exits with the status of the forked child, which is the unmodified client running
the console script's `main()` as an exec would (see osc_forkserver.py for what differs: imports done
before, and the HOME they saw, which is the relay's own directory here). A relay killed on a timeout
takes its call with it. VMQOS_OSC_EXEC=1 turns it off in the tests that use it (the real CLI then).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .osc_cli import FORKSERVER, START_TIMEOUT_S

# The relay client. Its fds 0-2 and its network namespace travel with the request (SCM_RIGHTS); an fd
# the caller closed goes as /dev/null, as the child would otherwise write into the relay's own files.
CLIENT = '''#!{python} -IS
"""`openstack` relayed to a warm python-openstackclient (tests/server/osc_relay.py); exits with its status."""
import json, os, signal, socket, sys

fds = []
for fd in (0, 1, 2):
    try:
        os.fstat(fd)
        fds.append(fd)
    except OSError:
        fds.append(os.open(os.devnull, os.O_RDWR))
fds.append(os.open("/proc/self/ns/net", os.O_RDONLY))
request = json.dumps({{"argv": [{cli!r}, *sys.argv[1:]], "env": dict(os.environ), "cwd": os.getcwd()}}).encode()
with socket.socket(socket.AF_UNIX) as sock:
    sock.connect({socket!r})
    socket.send_fds(sock, [len(request).to_bytes(4, "big") + request], fds)
    answer = b""
    while not answer.endswith(b"\\n"):
        chunk = sock.recv(4096)
        if not chunk:
            sys.exit("openstack (relayed): the warm client went away without an exit status")
        answer += chunk
status = json.loads(answer)["status"]
if status < 0:  # killed by a signal: so is this process, as the caller of an exec would see it
    signal.signal(-status, signal.SIG_DFL)
    os.kill(os.getpid(), -status)
sys.exit(status)
'''


class OpenstackRelay:
    """A fork server in relay mode and its client executable (`command`); `close()` ends both and returns
    the exit statuses of the calls it served, in order."""

    def __init__(self, cli: Path, python: Path) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="vq-osc-relay-"))
        home = self._dir / "home"  # what the client's imports saw as HOME (its cache directories)
        home.mkdir()
        sock = self._dir / "socket"
        self.command = self._dir / "openstack"
        self.command.write_text(CLIENT.format(python=sys.executable, cli=str(cli), socket=str(sock)))
        self.command.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")} | {"HOME": str(home)}
        self._proc = subprocess.Popen([str(python), str(FORKSERVER), str(cli), "--socket", str(sock)], cwd=home,
                                      env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._statuses: list[int] | None = None
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], START_TIMEOUT_S)
        line = self._proc.stdout.readline() if ready else b""
        if json.loads(line or b"null") != {"ready": 1}:
            self.close()
            raise AssertionError(f"the openstack relay did not start: {line!r}")

    def __enter__(self) -> OpenstackRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> list[int]:
        """End the fork server (EOF on its stdin), remove the relay's files; the statuses of the calls served."""
        if self._statuses is not None:
            return self._statuses
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.close()
        deadline = time.monotonic() + 10
        out = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._proc.stdout], [], [], max(deadline - time.monotonic(), 0))
            chunk = os.read(self._proc.stdout.fileno(), 65536) if ready else b""
            if not chunk:
                break
            out += chunk
        try:
            self._proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()
        self._statuses = [m["status"] for m in map(json.loads, out.splitlines()) if "status" in m]
        shutil.rmtree(self._dir)
        return self._statuses
