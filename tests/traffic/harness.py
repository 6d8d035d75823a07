"""Traffic-tier helpers: commands in a lab namespace, bounded iperf3 runs, ping, tcpdump, counters.

Every process started here is bounded (a timeout, or killed by its pid in a `finally`), and all
traffic stays between the lab's namespaces.
"""

from __future__ import annotations

import json
import os
import select
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from vmqos.drivers.process import in_netns

# TCP goodput per L2 frame byte: 1448 bytes of payload (MSS with timestamps) per 1514-byte frame.
TCP_GOODPUT_PER_FRAME = 0.956
ETH_HLEN = 14
IPERF_PORT = 5201
WRITER = Path(__file__).with_name("tap_writer.py")


def sh(ns: str, *argv: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(in_netns(argv, ns), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} in {ns} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def kill(proc: subprocess.Popen[Any] | None) -> None:
    """End a process this test started (by its own pid) and reap it."""
    if proc is None or proc.poll() is not None:
        return
    proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not refused
        pass


def log(message: str) -> None:
    """A measured value, for the report (visible with `pytest -s`, and in the captured output)."""
    print(f"[traffic] {message}", flush=True)


# -- iperf3 --------------------------------------------------------------------------------------

def _listening(ns: str, port: int) -> bool:
    out = sh(ns, "ss", "-Hltn", f"sport = :{port}", check=False).stdout
    return bool(out.strip())


class IperfServer:
    """`iperf3 -s -1 -J` in a namespace: serves one test, then prints its receiver-side JSON."""

    def __init__(self, ns: str, *extra: str, port: int = IPERF_PORT) -> None:
        self.ns, self.port, self.extra = ns, port, extra
        self.proc: subprocess.Popen[str] | None = None
        self.output: dict[str, Any] | None = None

    def start(self) -> "IperfServer":
        self.proc = subprocess.Popen(in_netns(["iperf3", "-s", "-1", "-J", "-p", str(self.port),
                                                      *self.extra], self.ns),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 5
        while not _listening(self.ns, self.port):
            if self.proc.poll() is not None:
                raise AssertionError(f"iperf3 server in {self.ns} exited: {self.proc.communicate()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"iperf3 server in {self.ns} is not listening after 5 s")
            time.sleep(0.05)
        return self

    def result(self, timeout: float = 15) -> dict[str, Any]:
        """The server's JSON once its one test is over."""
        assert self.proc is not None
        out, err = self.proc.communicate(timeout=timeout)
        try:
            self.output = json.loads(out)
        except json.JSONDecodeError:
            raise AssertionError(f"iperf3 server in {self.ns} printed no JSON: {out[-500:]!r} {err[-500:]!r}")
        if "error" in self.output:
            raise AssertionError(f"iperf3 server in {self.ns}: {self.output['error']}")
        return self.output

    def stop(self) -> None:
        kill(self.proc)


@contextmanager
def iperf_server(ns: str, *extra: str, port: int = IPERF_PORT) -> Iterator[IperfServer]:
    """A one-test server; `extra` e.g. ("-i", "0.2") for the receiver's own interval reports."""
    server = IperfServer(ns, *extra, port=port)
    try:
        yield server.start()
    finally:
        server.stop()


def client_argv(address: str, seconds: float, *extra: str, port: int = IPERF_PORT) -> list[str]:
    assert seconds <= 6, "each iperf3 run is bounded to a few seconds"
    return ["iperf3", "-c", address, "-p", str(port), "-t", f"{seconds:g}", "-J", *extra]


def start_client(ns: str, address: str, seconds: float, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(in_netns(client_argv(address, seconds, *extra), ns), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish_client(proc: subprocess.Popen[str], seconds: float) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=seconds + 20)
    except subprocess.TimeoutExpired:
        kill(proc)
        raise AssertionError(f"iperf3 client did not finish within {seconds + 20:g} s")
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        raise AssertionError(f"iperf3 client printed no JSON (exit {proc.returncode}): {out[-500:]!r} {err[-500:]!r}")
    if "error" in data:
        raise AssertionError(f"iperf3 client: {data['error']}")
    return data


def run_client(ns: str, address: str, seconds: float, *extra: str) -> dict[str, Any]:
    proc = start_client(ns, address, seconds, *extra)
    try:
        return finish_client(proc, seconds)
    finally:
        kill(proc)


def tcp_goodput(client: dict[str, Any]) -> float:
    """bit/s the receiver got (payload), as the client reports it."""
    return float(client["end"]["sum_received"]["bits_per_second"])


def tcp_retransmits(client: dict[str, Any]) -> int:
    return int(client["end"]["sum_sent"].get("retransmits", 0))


def frame_rate(goodput_bps: float) -> float:
    """The L2 frame rate that carries a full-size TCP goodput."""
    return goodput_bps / TCP_GOODPUT_PER_FRAME


def udp_received(server: dict[str, Any]) -> tuple[int, int, float]:
    """(datagrams received, payload bytes received, seconds) from the receiving server's JSON."""
    total = server["end"]["sum"]
    received = int(total["packets"]) - int(total["lost_packets"])
    seconds = float(total["seconds"])
    return received, int(total["bytes"]), seconds


# -- ping, tcpdump -------------------------------------------------------------------------------

def start_ping(ns: str, address: str, count: int = 15, interval: float = 0.2) -> subprocess.Popen[str]:
    return subprocess.Popen(in_netns(["ping", "-n", "-i", f"{interval:g}", "-c", str(count), "-W", "2",
                                      address], ns), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ping_rtts(proc: subprocess.Popen[str], timeout: float = 15) -> list[float]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        kill(proc)
    return [float(line.split("time=")[1].split()[0]) for line in out.splitlines() if "time=" in line]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


class Capture:
    """tcpdump in a namespace, started and *ready* (it said "listening on") before traffic is sent."""

    def __init__(self, ns: str, args: Sequence[str]) -> None:
        self.proc = subprocess.Popen(in_netns(["tcpdump", "-l", *args], ns), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.stderr = ""
        deadline = time.monotonic() + 10
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while "listening on" not in self.stderr:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                kill(self.proc)
                raise AssertionError(f"tcpdump in {ns} did not start: {self.stderr!r}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096).decode(errors="replace")
                if not chunk:
                    continue
                self.stderr += chunk

    def output(self, timeout: float = 10) -> str:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill(self.proc)
            out, err = self.proc.communicate()
        return out + err

    def stop(self) -> None:
        kill(self.proc)


# -- counters ------------------------------------------------------------------------------------

def link_stats(ns: str, device: str) -> dict[str, int]:
    data = json.loads(sh(ns, "ip", "-s", "-j", "link", "show", "dev", device).stdout)
    return {"rx_packets": data[0]["stats64"]["rx"]["packets"], "rx_bytes": data[0]["stats64"]["rx"]["bytes"],
            "tx_packets": data[0]["stats64"]["tx"]["packets"], "tx_bytes": data[0]["stats64"]["tx"]["bytes"]}


class RxSampler:
    """Reads a device's rx_bytes every `period` seconds in a thread: the frame rate on the wire."""

    def __init__(self, ns: str, device: str, period: float = 0.2) -> None:
        self.ns, self.device, self.period = ns, device, period
        self.samples: list[tuple[float, int]] = []  # (monotonic time, rx bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> tuple[float, int]:
        t0 = time.monotonic()
        out = subprocess.run(["ip", "-n", self.ns, "-s", "-j", "link", "show", "dev", self.device],
                             capture_output=True, text=True, timeout=5, check=True).stdout
        t1 = time.monotonic()
        return (t0 + t1) / 2, int(json.loads(out)[0]["stats64"]["rx"]["bytes"])

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.samples.append(self._read())
            next_at += self.period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> "RxSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def rates(self) -> list[tuple[float, float, float]]:
        """(start, end, bit/s) between consecutive samples."""
        return [(t0, t1, (b1 - b0) * 8 / (t1 - t0))
                for (t0, b0), (t1, b1) in zip(self.samples, self.samples[1:])]


class SourceCounter:
    """An nft counter on `device`'s ingress in `ns` for IPv4 packets from `source` (IP bytes, as nft sees them)."""

    TABLE = "vqtcount"

    def __init__(self, ns: str, device: str, source: str) -> None:
        self.ns = ns
        script = (f"table netdev {self.TABLE} {{\n counter seen {{ }}\n"
                  f" chain c {{ type filter hook ingress device \"{device}\" priority 0; policy accept;\n"
                  f"  meta protocol ip ip saddr {source} counter name \"seen\"\n }}\n}}\n")
        done = subprocess.run(in_netns(["nft", "-f", "-"], ns), input=script, capture_output=True, text=True,
                              timeout=10)
        assert done.returncode == 0, done.stderr

    def read(self) -> tuple[int, int]:
        """(packets, IP bytes)."""
        data = json.loads(sh(self.ns, "nft", "-j", "list", "counter", "netdev", self.TABLE, "seen").stdout)
        counter = next(item["counter"] for item in data["nftables"] if "counter" in item)
        return int(counter["packets"]), int(counter["bytes"])

    def remove(self) -> None:
        sh(self.ns, "nft", "delete", "table", "netdev", self.TABLE, check=False)


# -- the tap writer ------------------------------------------------------------------------------

def start_writer(host_ns: str, device: str, dst_mac: str, src_mac: str, src_ip: str, dst_ip: str, payload: int,
                 seconds: float) -> subprocess.Popen[str]:
    argv = [sys.executable, str(WRITER), "--device", device, "--dst-mac", dst_mac, "--src-mac", src_mac,
            "--src-ip", src_ip, "--dst-ip", dst_ip, "--payload", str(payload), "--seconds", f"{seconds:g}"]
    return subprocess.Popen(in_netns(argv, host_ns), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def writer_started(proc: subprocess.Popen[str]) -> None:
    """Wait for the writer to attach to the tap (it prints `started`, or exits on failure)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "started":
        kill(proc)
        raise AssertionError(f"tap writer did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")


def writer_result(proc: subprocess.Popen[str], seconds: float) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=seconds + 15)
    finally:
        kill(proc)
    assert proc.returncode == 0, f"tap writer failed ({proc.returncode}): {err.strip()}"
    return json.loads([line for line in out.splitlines() if line.strip()][-1])


# -- TCP's own counters ----------------------------------------------------------------------------

def tcp_counters(ns: str) -> dict[str, int]:
    """The namespace's TCP MIB counters (`nstat -asz`: absolute values, the history file left alone).
    Each lab namespace has its own, so a test that alone sends TCP there reads its own flows."""
    shown = json.loads(sh(ns, "nstat", "-asz", "--json").stdout)
    return {name: int(value) for name, value in shown.get("kernel", shown).items()}


def counter_deltas(before: dict[str, int], after: dict[str, int], names: Sequence[str]) -> dict[str, int]:
    return {name: after.get(name, 0) - before.get(name, 0) for name in names}


class LeafRate:
    """The frame rate an HTB class of `device` sent, from `start` s to `end` s after `begin()`: its byte
    counter (frames with their headers, retransmissions too, as the limit counts them) read every 0.25 s,
    the least-squares slope. Goodput / 0.956 is not the limiter's rate when the flow retransmits (BBR
    through a short leaf at 1 Mbit/s: 60-90 frames in 8 s, up to a tenth of the rate)."""

    def __init__(self, ns: str, device: str, classid: str, start: float, end: float) -> None:
        self.ns, self.device, self.classid, self.start, self.end = ns, device, classid, start, end
        self.samples: list[tuple[float, int]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def begin(self) -> "LeafRate":
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def _run(self) -> None:
        at = self.start
        while at <= self.end:
            time.sleep(max(0.0, self.t0 + at - time.monotonic()))
            before = time.monotonic()
            shown = sh(self.ns, "tc", "-s", "class", "show", "dev", self.device, "classid", self.classid).stdout
            words = shown.split()
            sent = int(words[words.index("Sent") + 1]) if "Sent" in words else None
            if sent is not None:
                self.samples.append(((before + time.monotonic()) / 2, sent))
            at += 0.25

    def bps(self) -> float:
        self.thread.join(timeout=self.end + 10)
        assert len(self.samples) >= 3, f"the class {self.classid} of {self.device} was read {len(self.samples)} times"
        mt = statistics.fmean(t for t, _ in self.samples)
        mb = statistics.fmean(b for _, b in self.samples)
        return 8 * sum((t - mt) * (b - mb) for t, b in self.samples) / sum((t - mt) ** 2 for t, _ in self.samples)
