"""Real traffic between lab namespaces with iperf3, bounded in time, for the demo and verification."""

from __future__ import annotations

import json
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

from vmqos.core.errors import KernelError
from vmqos.drivers.process import in_netns


@dataclass(frozen=True)
class TrafficResult:
    protocol: str
    seconds: float
    sent_bps: float  # what the sender offered
    received_bps: float  # goodput at the receiver
    lost_percent: float | None = None
    retransmits: int | None = None


def result_of(data: dict, *, udp: bool) -> TrafficResult:
    """What a finished iperf3 client's JSON (`-J`) says: sent and received rates, loss or retransmits."""
    end = data["end"]
    if udp:
        summary = end["sum"]
        received = end.get("sum_received", {}).get("bits_per_second")
        lost = summary.get("lost_percent", 0.0)
        sent = summary["bits_per_second"]
        return TrafficResult("udp", summary["seconds"], sent,
                             received if received is not None else sent * (1 - lost / 100), lost)
    return TrafficResult("tcp", end["sum_received"]["seconds"], end["sum_sent"]["bits_per_second"],
                         end["sum_received"]["bits_per_second"], retransmits=end["sum_sent"].get("retransmits"))


def iperf3(server_ns: str, server_addr: str, client_ns: str, *, seconds: float = 3, udp_bps: int | None = None,
           udp_len: int | None = None, port: int = 5201, extra: tuple[str, ...] = ()) -> TrafficResult:
    """One iperf3 run from `client_ns` to a one-off server in `server_ns`.

    UDP uses a 4 MiB socket buffer: in a namespace the sender is otherwise back-pressured by the
    queue it overloads and never really offers more than the limit (kernel-lab-facts.md §1).
    """
    server = subprocess.Popen(in_netns(["iperf3", "-s", "-1", "-B", server_addr, "-p", str(port)], server_ns),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        argv = ["iperf3", "-c", server_addr, "-p", str(port), "-t", f"{seconds:g}", "-J", *extra]
        if udp_bps is not None:
            argv += ["-u", "-b", str(udp_bps), "-w", "4M"] + (["-l", str(udp_len)] if udp_len else [])
        data: dict = {}
        for _ in range(20):  # the server needs a moment to listen
            done = subprocess.run(in_netns(argv, client_ns), capture_output=True, text=True, timeout=seconds + 15)
            data = json.loads(done.stdout or "{}")
            if "error" not in data or "connect" not in data["error"]:
                break
            time.sleep(0.05)
        if "error" in data or not data:
            raise KernelError(f"iperf3 {client_ns} -> {server_addr} failed: {data.get('error', done.stderr.strip())}")
        return result_of(data, udp=udp_bps is not None)
    finally:
        server.kill()
        server.wait()


@contextmanager
def running(argv: Sequence[str], netns: str, *, delay: float = 0.0) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` in the background in `netns` (its output discarded), killed and reaped when the block
    ends, whatever ends it; `delay` gives a server a moment to listen before the block starts."""
    proc = subprocess.Popen(in_netns(list(argv), netns), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if delay:
            time.sleep(delay)
        yield proc
    finally:
        proc.kill()
        proc.wait()
