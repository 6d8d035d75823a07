"""A lab's control plane: a throw-away `vmqos server --all-in-one` and the real `openstack` CLI that drives it.

Until agents exist (issue 15), `--all-in-one` is the lab's agent: the server enforces, on the lab's
host namespace, that host's desired state (the Neutron ports bound to it, its native ports, its uplink). Both are processes of their own,
started as an operator starts them, so that the demo shows what a terminal would: the server is
`python -m vmqos.cli.main server ...` (the same interpreter, the same sources), its output in a
log file; the client is python-openstackclient, unmodified, from the virtualenv `make` puts it in
(it pulls many packages that must not move the project's pins). The front ends may not start
processes (a contract); the lab, which already starts the demo's iperf3, does it for them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Sequence

from vmqos.core.errors import KernelError, NotFound, VmqosError
from vmqos.drivers.process import in_netns

OPENSTACK_CLI_ENV = "VMQOS_OPENSTACK_CLI"
START_TIMEOUT_S = 30.0  # uvicorn, the app and the enforcer's first pass, on a busy 2-vCPU machine
STOP_TIMEOUT_S = 30.0  # the enforcer ends the pass under way (bounded by the reconciler's tool timeouts)
CLI_TIMEOUT_S = 60.0


def openstack_cli() -> Path:
    """The real `openstack` command: $VMQOS_OPENSTACK_CLI, else `.venv-osc/bin/openstack` of the checkout
    (beside `src/`, where `make` installs it), else beside the virtualenv vmqos runs from (a worktree
    run with another checkout's `.venv`). NotFound says how to get it."""
    env = os.environ.get(OPENSTACK_CLI_ENV)
    if env:
        candidates = [Path(env)]
    else:
        checkout = Path(__file__).resolve().parents[3]  # src/vmqos/lab/control_plane.py
        candidates = [checkout / ".venv-osc" / "bin" / "openstack",
                      Path(sys.prefix).parent / ".venv-osc" / "bin" / "openstack"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise NotFound(f"the openstack CLI is not at {candidates[0]}: `make demo` installs it (python-openstackclient "
                   f"10.5.0 in .venv-osc), or set ${OPENSTACK_CLI_ENV} to an `openstack` command")


def free_port() -> int:
    """A TCP port nobody listens on now on 127.0.0.1 (the kernel's pick; the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class CliRun:
    """One finished `openstack` command: what it printed and how it ended."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class AllInOneServer:
    """`vmqos server --all-in-one --netns NETNS --host HOST` on a free loopback port, for a `with` block.

    Entering starts it and waits until `/` answers (KernelError naming the log if it does not);
    leaving stops it with SIGTERM, as Ctrl-C would (SIGKILL after STOP_TIMEOUT_S), whatever ends the
    block. The limits it placed stay in place (the server's rule); the caller unsets them."""

    def __init__(self, db: str, netns: str, host: str, log_path: Path) -> None:
        self.db, self.netns, self.host, self.log_path = db, netns, host, log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = ("server", "--all-in-one", "--netns", netns, "--host", host, "--listen",
                     f"127.0.0.1:{self.port}", "--db", db)
        self.returncode: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def _failed(self, what: str) -> KernelError:
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:] if self.log_path.exists() else []
        last = f": {' / '.join(tail)}" if tail else ""
        return KernelError(f"vmqos server {what}{last} (its log: {self.log_path})")

    def __enter__(self) -> "AllInOneServer":
        self._log = open(self.log_path, "wb")
        self._proc = subprocess.Popen([sys.executable, "-m", "vmqos.cli.main", *self.argv], stdout=self._log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not self._answers():
                if self._proc.poll() is not None:
                    raise self._failed(f"exited with status {self._proc.returncode} before it served")
                if time.monotonic() > deadline:
                    raise self._failed(f"did not answer on {self.url} within {START_TIMEOUT_S:g} s")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; its exit status (None if never started)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.returncode = proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.returncode

    def __exit__(self, *exc: object) -> None:
        self.stop()


class OpenStack:
    """The real `openstack` CLI with the OS_* variables of one user on one server, as an operator's shell has them."""

    def __init__(self, cli: Path, auth_url: str, username: str, password: str, project: str, home: Path,
                 netns: str | None = None) -> None:
        self.cli, self.netns = cli, netns  # netns: where the server is reachable (a fleet's control namespace)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        # HOME: the client's cache and config go to the demo's temp dir, not root's home
        self.env = env | {"OS_AUTH_URL": auth_url, "OS_USERNAME": username, "OS_PASSWORD": password,
                          "OS_PROJECT_NAME": project, "OS_USER_DOMAIN_NAME": "Default",
                          "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3", "HOME": str(home)}
        self.home = home

    def exports(self) -> str:
        """The `export OS_…` line an operator types (the password shown as given: a demo's)."""
        names = ("OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME", "OS_USER_DOMAIN_NAME",
                 "OS_PROJECT_DOMAIN_NAME", "OS_IDENTITY_API_VERSION")
        return "export " + " ".join(f"{n}={self.env[n]}" for n in names)

    def argv(self, args: Sequence[str]) -> list[str]:
        """The command line of `openstack ARGS` (inside the server's namespace when it has one)."""
        return in_netns([str(self.cli), *args], self.netns)

    def call(self, args: Sequence[str]) -> int:
        """`openstack ARGS` on the caller's terminal (its output is the operator's); its exit code."""
        return subprocess.run(self.argv(args), cwd=self.home, env=self.env).returncode

    def run(self, args: Sequence[str]) -> CliRun:
        try:
            done = subprocess.run(self.argv(args), cwd=self.home, env=self.env, capture_output=True,
                                  text=True, timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise VmqosError(f"openstack {' '.join(args)} did not finish within {CLI_TIMEOUT_S:g} s") from None
        return CliRun(tuple(args), done.returncode, done.stdout, done.stderr)
