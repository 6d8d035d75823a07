"""The processes of a verify run: ping for the RTT, an iperf3 server, each killed by its pid at the end.

Every process is started in an endpoint's network namespace through `Processes`, which kills
them all when the run ends however it ends (even on Ctrl-C).
"""

from __future__ import annotations

import subprocess
import time
from typing import Any, Sequence

from vmqos.core.analysis.iperf import ping_replies
from vmqos.core.analysis.judge import Rtt
from vmqos.core.errors import KernelError
from vmqos.drivers.process import in_netns, run
from vmqos.verify.targets import Target

PING_INTERVAL_S = 0.1  # root may ping this fast
IDLE_PINGS = 10


class Processes:
    """Every process of a run, killed by its own pid when the run ends however it ends."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, argv: Sequence[str], netns: str | None, *, stdout: Any = subprocess.PIPE) -> subprocess.Popen[str]:
        proc = subprocess.Popen(in_netns(list(argv), netns), stdout=stdout, stderr=subprocess.PIPE, text=True)
        self.started.append(proc)
        return proc

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.kill()
            try:
                proc.communicate(timeout=5)
            except (subprocess.TimeoutExpired, ValueError, OSError):  # pragma: no cover - SIGKILL is not refused
                pass


def ping_argv(target: Target, *extra: str) -> list[str]:
    return ["ping", "-D", "-n", "-i", f"{PING_INTERVAL_S:g}", "-W", "1", *extra, target.peer.address]


def idle_rtts(procs: Processes, target: Target) -> list[Rtt]:
    proc = procs.start(ping_argv(target, "-c", str(IDLE_PINGS)), target.instance.netns)
    start = time.time()
    try:
        out, err = proc.communicate(timeout=IDLE_PINGS * PING_INTERVAL_S + 5)
    except subprocess.TimeoutExpired:
        raise KernelError(f"ping from {target.instance.netns} to {target.peer.address} did not finish") from None
    replies = ping_replies(out, start)
    if not replies:
        raise KernelError(f"{target.instance.netns} gets no ping reply from {target.peer.address} ({target.peer.where})"
                          f": {(err or out).strip().splitlines()[-1] if (err or out).strip() else 'no output'}; "
                          "check the addresses (--instance-address, --peer-address) and their routes")
    return [Rtt(r.at_s - (time.time() - start), r.rtt_us) for r in replies]  # negative: before the load


def _listening(netns: str, port: int) -> bool:
    return bool(run(["ss", "-Hltn", f"sport = :{port}"], netns, check=False).stdout.strip())


def iperf_server(procs: Processes, netns: str, address: str, port: int) -> subprocess.Popen[str]:
    proc = procs.start(["iperf3", "-s", "-1", "-B", address, "-p", str(port)], netns)
    deadline = time.monotonic() + 5
    while not _listening(netns, port):
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise KernelError(f"iperf3 server in {netns} on port {port} exited: {err.strip() or 'no output'} "
                              "(another server on that port? choose one with --iperf-port)")
        if time.monotonic() > deadline:
            raise KernelError(f"iperf3 server in {netns} is not listening on port {port} after 5 s")
        time.sleep(0.02)
    return proc
