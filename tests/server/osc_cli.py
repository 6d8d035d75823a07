"""Run the real `openstack` CLI for the server tier: a forked child of a warm client per call (osc_forkserver.py).

A call returns what `subprocess.run([cli, *args], env=..., cwd=..., capture_output=True, text=True)`
returns: a CompletedProcess with the command's exit status, stdout and stderr. The client is the
unmodified python-openstackclient in its own process per call; only its imports are paid once per
server instead of once per call (about 0.6 s of CPU each; see the fork server's docstring).
VMQOS_OSC_EXEC=1 turns it off: every call is an exec of the console script, as before. So does a
CLI that is not a Python console script of openstackclient (a wrapper, a missing file).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import tempfile
import time
from pathlib import Path

FORKSERVER = Path(__file__).with_name("osc_forkserver.py")
START_TIMEOUT_S = 60  # the warm-up imports: ~1 s idle, more on a loaded 2-vCPU machine


def exec_openstack(cli: Path, args: tuple[str, ...], env: dict[str, str], cwd: Path,
                   timeout: float) -> subprocess.CompletedProcess[str]:
    """The plain way: an exec of the console script per call."""
    return subprocess.run([str(cli), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def console_script_python(cli: Path) -> Path | None:
    """The interpreter of `cli` when it is openstackclient's console script (its shebang), else None."""
    try:
        head = cli.read_bytes()[:4096].decode("utf-8", "replace")
    except OSError:
        return None
    first, _, rest = head.partition("\n")
    if not first.startswith("#!") or "from openstackclient.shell import main" not in rest:
        return None
    python = Path(first[2:].strip())
    return python if os.access(python, os.X_OK) else None


class OpenstackForks:
    """One warm client (the fork server) for the calls of one server; `close()` ends it."""

    def __init__(self, cli: Path, python: Path, base_env: dict[str, str], cwd: Path) -> None:
        self.cli = cli
        self._files = Path(tempfile.mkdtemp(prefix="vq-osc-"))
        self._proc = subprocess.Popen([str(python), str(FORKSERVER), str(cli)], cwd=cwd, env=base_env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self._pending = b""  # what the server wrote past the last line read
        self.last_cpu_s = 0.0  # the last call's CPU time (user + system), as the fork server measured it
        ready = self._read(START_TIMEOUT_S)
        if ready != {"ready": 1}:
            self.close()
            raise AssertionError(f"the openstack fork server did not start: {ready}")

    def _read(self, timeout: float) -> dict[str, int] | None:
        """The server's next line, None at EOF or after `timeout` seconds (raw reads: no hidden buffer)."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                return None
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return json.loads(line)

    def run(self, args: tuple[str, ...], env: dict[str, str], cwd: Path,
            timeout: float) -> subprocess.CompletedProcess[str]:
        assert self._proc.stdin is not None
        out, err, empty = self._files / "stdout", self._files / "stderr", self._files / "stdin"
        for path in (out, err, empty):
            path.write_bytes(b"")
        argv = [str(self.cli), *args]
        self._proc.stdin.write(json.dumps({"argv": argv, "env": env, "cwd": str(cwd), "stdin": str(empty),
                                           "stdout": str(out), "stderr": str(err)}) + "\n")
        self._proc.stdin.flush()
        deadline = time.monotonic() + timeout
        forked = self._read(timeout)
        if forked is None or "pid" not in forked:
            raise AssertionError(f"the openstack fork server stopped: {forked}")
        ended = self._read(deadline - time.monotonic())
        if ended is None:
            os.kill(forked["pid"], signal.SIGKILL)
            self._read(10)
            raise subprocess.TimeoutExpired(argv, timeout, out.read_text(), err.read_text())
        self.last_cpu_s = ended.get("cpu_us", 0) / 1e6
        # text=True reads with the locale's encoding and universal newlines, as subprocess.run does
        return subprocess.CompletedProcess(argv, ended["status"], out.read_text(), err.read_text())

    def close(self) -> None:
        """End the fork server and remove its files; a second call does nothing."""
        if not self._files.exists():
            return
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()  # EOF: the server returns
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        for path in self._files.iterdir():
            path.unlink()
        self._files.rmdir()
