#!/usr/bin/env python3
"""One TCP flow through a limit, vmqos against its peers on the same veth pairs (issue 16).

Usage (as root, from the repository root, under the kernel lock on a shared machine):

    flock /tmp/vmqos-kernel.lock .venv/bin/python bench/dataplane_bench.py --reps 3 --out /tmp/dp.json
    .venv/bin/python bench/dataplane_bench.py --table /tmp/dp.json      # the Markdown tables again
    .venv/bin/python bench/dataplane_bench.py --plot /tmp/dp.json --plot-dir docs/img

A throw-away lab `vqb<hex>` with one instance. Each run puts one limiter on vm1's port in the lab's
host namespace, sends one TCP flow for --seconds (iperf3, BBR or cubic) and removes the limiter:

  to    towards the instance: wan -> vm1, limited on the tap's egress (its root qdisc)
  from  sent by the instance: vm1 -> wan, limited at the tap's ingress (an IFB or a policer)

Limiters, all at the same frame rate (average = peak, the limiter's own default burst):
  vmqos-shape   `set_port` with a vmqos policy: HTB tree, segmenting TBF leaves under ~52 Mbit/s,
                the sparse class; IFB + the same tree from the instance
  vmqos-clamp   vmqos-shape on a port with the window clamp on (`PortChange(window_clamp=True)`): the
                ACKs' windows lowered to rate x (handshake RTT + 3 ms), at least 2-3 segments
  vmqos-police  from the instance only: the eBPF token bucket (burst + 1 s) and nft's drop
  tbf-seed      `tbf rate R burst 1540 latency 50ms` (seed 004's burst; seed 002 writes the same
                TBF with a peak), on the tap; from the instance behind a u32 redirect to an IFB
  libvirt       the commands of libvirt's virnetdevbandwidth.c for <bandwidth><inbound average=..>
                (`htb default 1`, class 1:1 with libvirt's quantum, sfq leaf, fw filter); this
                kernel refuses sfq and fw, so the HTB root and class stay with the default
                1000-packet FIFO. Outbound is a u32 `police` action, which this kernel lacks: not run.
  cni           /usr/lib/cni/bandwidth (containernetworking-plugins) through the CNI protocol (ADD
                with a prevResult naming tap-vm1 and vm1's eth0), burst as the kubelet passes it
                (2^32 - 1 bits); DEL afterwards

Measured, at the receiver (iperf3 -i 0.1) and the kernel:
  steady     frame rate from 2 s to the end against the limit, in %: for vmqos shape, read from its port's
             bulk leaf (HTB's byte counter from 2 s to 0.3 s before the end); else goodput / 0.956
  first_s    frames delivered in the first second against one second of the rate, in %;
             `allowed` is the limiter's burst on top of that (vmqos's 10 ms, TBF's 1540 bytes, CNI's 512 MiB)
  ping       median RTT of pings (wan -> vm1, 10/s from 1.5 s on) minus the idle median, in ms
  own_rtt    the flow's own smoothed RTT (iperf3's mean_rtt at the sender) minus the idle median, ms
  cpu        CPU seconds of the whole machine (/proc/stat) per Gbit delivered: indicative only on a
             shared machine
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

Undo = Callable[[], object]

from vmqos.core.desired.ports import PortChange
from vmqos.core.model.host import EgressMode, Policy
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.core.plan.names import ifb_name
from vmqos.lab import Lab, lab_down, lab_up
from vmqos.services.ports import clear_port, set_port

from apply_bench import exit_on_sigterm  # a forked child must not run this process's cleanup
from vmqos.store import Store

MBIT = 1_000_000
GOODPUT_PER_FRAME = 1448 / 1514
RATES = (1, 3, 10, 100, 1000)
SYSTEMS = ("vmqos-shape", "vmqos-clamp", "vmqos-police", "tbf-seed", "libvirt", "cni")
CNI = Path("/usr/lib/cni/bandwidth")
KUBELET_BURST_BITS = 2**32 - 1
IFB = "vqbifb0"


def sh(ns: str | None, cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["sh", "-c", cmd] if ns is None else ["ip", "netns", "exec", ns, "sh", "-c", cmd]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"{cmd} in {ns}: {done.stderr.strip()}")
    return done


class Limiters:
    """Put one system's limit on vm1's port in one direction, and take it off again."""

    def __init__(self, lab: Lab, store: Store) -> None:
        self.lab, self.store = lab, store
        self.vm = lab.instance(1)
        self.refused: dict[str, str] = {}

    def put(self, system: str, direction: str, rate: int) -> Undo:
        return getattr(self, system.replace("-", "_"))(direction, rate)

    # vmqos
    def _vmqos(self, direction: str, rate: int, mode: EgressMode, clamp: bool = False) -> Undo:
        side = DirectionQos(bandwidth=BandwidthLimit(rate))
        qos = NetworkQos(ingress=side) if direction == "to" else NetworkQos(egress=side)
        report = set_port(self.store, self.lab.host_ns, self.vm.port,
                          PortChange(policy=Policy(f"bench-{uuid.uuid4().hex[:6]}", qos), egress_mode=mode,
                                     window_clamp=clamp))
        assert report is not None and report.ok, report
        return lambda: clear_port(self.store, self.lab.host_ns, self.vm.port)

    def vmqos_shape(self, direction: str, rate: int) -> Undo:
        return self._vmqos(direction, rate, EgressMode.SHAPE)

    def vmqos_clamp(self, direction: str, rate: int) -> Undo:
        return self._vmqos(direction, rate, EgressMode.SHAPE, clamp=True)

    def vmqos_police(self, direction: str, rate: int) -> Undo | None:
        return self._vmqos(direction, rate, EgressMode.POLICE) if direction == "from" else None

    # plain TBF
    def _redirect(self) -> None:
        h, port = self.lab.host_ns, self.vm.port
        sh(h, f"ip link add {IFB} type ifb && ip link set {IFB} up && tc qdisc add dev {port} handle ffff: ingress && "
              f"tc filter add dev {port} parent ffff: protocol all prio 1 u32 match u32 0 0 "
              f"action mirred egress redirect dev {IFB}")

    def _unredirect(self) -> None:
        sh(self.lab.host_ns, f"tc qdisc del dev {self.vm.port} ingress; ip link del {IFB}", check=False)

    def tbf_seed(self, direction: str, rate: int) -> Undo:
        h, port = self.lab.host_ns, self.vm.port
        tbf = f"tbf rate {rate}bit burst 1540 latency 50ms"
        if direction == "to":
            sh(h, f"tc qdisc add dev {port} root {tbf}")
            return lambda: sh(h, f"tc qdisc del dev {port} root", check=False)
        self._redirect()
        sh(h, f"tc qdisc add dev {IFB} root {tbf}")
        return self._unredirect

    # libvirt <bandwidth>, as virnetdevbandwidth.c writes it
    def libvirt(self, direction: str, rate: int) -> Undo | None:
        if direction == "from":
            self.refused["libvirt from"] = "u32 ... police rate: this kernel has no police action"
            return None
        h, port = self.lab.host_ns, self.vm.port
        average_kbps = rate // 8000  # libvirt's kilobytes per second
        quantum = max(average_kbps * 1024 // 8 // 1500, 1)
        sh(h, f"tc qdisc add dev {port} root handle 1: htb default 1")
        sh(h, f"tc class add dev {port} parent 1: classid 1:1 htb rate {average_kbps}kbps quantum {quantum}")
        for cmd in (f"tc qdisc add dev {port} parent 1:1 handle 2: sfq perturb 10",
                    f"tc filter add dev {port} parent 1:0 protocol all prio 1 handle 1 fw flowid 1"):
            done = sh(h, cmd, check=False)
            if done.returncode:
                self.refused[cmd.split(" dev ")[0] + " " + cmd.split()[-3]] = done.stderr.strip()
        return lambda: sh(h, f"tc qdisc del dev {port} root", check=False)

    # the Kubernetes CNI bandwidth plugin
    def _cni(self, command: str, conf: dict[str, Any]) -> None:
        env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": "vqbench", "CNI_IFNAME": "eth0",
               "CNI_NETNS": f"/run/netns/{self.vm.netns}", "CNI_PATH": str(CNI.parent)}
        done = subprocess.run(["ip", "netns", "exec", self.lab.host_ns, str(CNI)], input=json.dumps(conf),
                              capture_output=True, text=True, env=env, timeout=30)
        if done.returncode:
            raise RuntimeError(f"cni bandwidth {command}: {done.stdout} {done.stderr}")

    def cni(self, direction: str, rate: int) -> Undo:
        key = "ingress" if direction == "to" else "egress"  # the pod's point of view, as vmqos's
        conf = {"cniVersion": "1.0.0", "name": "vqbench", "type": "bandwidth",
                f"{key}Rate": rate, f"{key}Burst": KUBELET_BURST_BITS,
                "prevResult": {"cniVersion": "1.0.0", "interfaces": [
                    {"name": self.vm.port}, {"name": "eth0", "sandbox": f"/run/netns/{self.vm.netns}"}]}}
        self._cni("ADD", conf)

        def undo() -> None:
            self._cni("DEL", conf)  # removes its IFB only: the veth's qdiscs go with the pod's veth
            sh(self.lab.host_ns, f"tc qdisc del dev {self.vm.port} root; tc qdisc del dev {self.vm.port} ingress",
               check=False)
        return undo


def _cpu_busy() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _idle_rtt(lab: Lab) -> float:
    out = sh(lab.wan_ns, f"ping -n -q -i 0.05 -c 10 {lab.instance(1).address}").stdout
    return float(out.rsplit("=", 1)[1].split("/")[1])


def one_run(lab: Lab, direction: str, rate: int, cc: str, seconds: float, idle_ms: float,
            leaf: "LeafRate | None" = None) -> dict[str, Any]:
    vm = lab.instance(1)
    if direction == "to":
        sender, receiver, address = lab.wan_ns, vm.netns, vm.address
    else:
        sender, receiver, address = vm.netns, lab.wan_ns, lab.wan_address
    server = subprocess.Popen(["ip", "netns", "exec", receiver, "iperf3", "-s", "-1", "-J", "-i", "0.1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        cpu0 = _cpu_busy()
        client = subprocess.Popen(["ip", "netns", "exec", sender, "iperf3", "-c", address, "-t", f"{seconds:g}", "-J",
                                   "-C", cc], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if leaf is not None:
            leaf.start()
        time.sleep(1.5)
        pings = sh(lab.wan_ns, f"ping -n -i 0.1 -W 2 -c {int((seconds - 2) * 10)} {vm.address}", check=False).stdout
        out, _ = client.communicate(timeout=seconds + 30)
        cpu = _cpu_busy() - cpu0
        srv, _ = server.communicate(timeout=30)
    finally:
        for proc in (server,):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    sent, got = json.loads(out), json.loads(srv)
    intervals = [i["sum"] for i in got["intervals"]]
    first = sum(i["bytes"] for i in intervals if i["end"] <= 1.0 + 1e-3) / GOODPUT_PER_FRAME
    steady = [i for i in intervals if i["start"] >= 2.0 - 1e-3]
    steady_bps = sum(i["bytes"] for i in steady) * 8 / sum(i["seconds"] for i in steady) / GOODPUT_PER_FRAME
    rtts = [float(line.split("time=")[1].split()[0]) for line in pings.splitlines() if "time=" in line]
    stream = sent["end"]["streams"][0]["sender"]
    delivered_gbit = sum(i["bytes"] for i in intervals) * 8 / 1e9
    leaf_bps = leaf.bps() if leaf is not None else None
    if leaf_bps is not None:
        steady_bps = leaf_bps
    return {
        "steady_pct": round(100 * (steady_bps - rate) / rate, 2),
        "steady_from": "leaf counter" if leaf_bps is not None else "goodput / 0.956",
        "first_s_pct": round(100 * (first * 8 - rate) / rate, 1),
        "ping_ms": round(statistics.median(rtts) - idle_ms, 2) if rtts else None,
        "ping_answered": f"{len(rtts)}/{int((seconds - 2) * 10)}",
        "own_rtt_ms": round(stream.get("mean_rtt", 0) / 1000 - idle_ms, 2),
        "retransmits": sent["end"]["sum_sent"].get("retransmits"),
        "cpu_s_per_gbit": round(cpu / delivered_gbit, 2) if delivered_gbit else None,
    }


def _leaf_bytes(lab: Lab, system: str, direction: str) -> int | None:
    """Bytes the vmqos port's bulk leaf (1:10) has sent, as HTB counts them (every frame with its headers,
    retransmissions too); None for the peers."""
    if not system.startswith("vmqos-") or system == "vmqos-police":
        return None
    port = lab.instance(1).port
    dev = port if direction == "to" else ifb_name(port)
    shown = sh(lab.host_ns, f"tc -s class show dev {dev} classid 1:10").stdout  # this tc prints no JSON of classes
    found = re.search(r"Sent (\d+) bytes", shown)
    return int(found.group(1)) if found else None


class LeafRate:
    """The frame rate a vmqos port's bulk leaf sent from 2 s after the flow's start to 0.3 s before its
    end, read every 0.25 s from HTB's own byte counter (frames with their headers, as the limit counts them). Goodput
    / 0.956 assumes full 1448-byte segments, and a window that ends in a partial segment (the window
    clamp at 1 Mbit/s: one full segment and 600 bytes) sends more headers per byte."""

    def __init__(self, lab: Lab, system: str, direction: str, seconds: float) -> None:
        self.read = lambda: _leaf_bytes(lab, system, direction)
        self.seconds, self.samples = seconds, []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "LeafRate":
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def _run(self) -> None:
        at = 2.0
        while at <= self.seconds - 0.3:
            time.sleep(max(0.0, self.t0 + at - time.monotonic()))
            before = time.monotonic()
            got = self.read()
            if got is None:
                return
            self.samples.append(((before + time.monotonic()) / 2, got))  # the read's midpoint (a `tc` run: ~5 ms)
            at += 0.25

    def bps(self) -> float | None:
        """The least-squares slope of bytes over time: one read's timing (a process start) moves a two-point
        figure by ~0.4 % at 1 Mbit/s, a frame is 0.45 % of 2.7 s of it."""
        self.thread.join(timeout=self.seconds + 5)
        if len(self.samples) < 3:
            return None
        ts, bs = zip(*self.samples)
        mt, mb = statistics.fmean(ts), statistics.fmean(bs)
        return 8 * sum((t - mt) * (b - mb) for t, b in self.samples) / sum((t - mt) ** 2 for t in ts)


def _measured(lab: Lab, limiters: Limiters, system: str, direction: str, rate: int, cc: str, seconds: float,
              idle_ms: float) -> dict[str, Any] | None:
    """One run; if the lab's namespaces went away under it (seen on the shared machine), the lab is
    brought up again and the run made once more."""
    for attempt in (1, 2):
        try:
            undo = limiters.put(system, direction, rate)
            if undo is None:
                return None
            try:
                return one_run(lab, direction, rate, cc, seconds, idle_ms,
                               LeafRate(lab, system, direction, seconds) if system in ("vmqos-shape", "vmqos-clamp")
                               else None)
            finally:
                undo()
        except Exception as exc:
            if os.path.exists(f"/run/netns/{lab.host_ns}") and attempt == 1 and "writer lock" not in str(exc):
                raise
            print(f"# {system} {direction} {rate} {cc}: {exc}", file=sys.stderr, flush=True)
            if attempt == 2:
                return None  # one run lost; the sweep goes on
            status = lab_up(lab.name, 1)
            assert not status.problems, status.problems
    return None


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    # not `vqb…`: on the shared machine namespaces of that prefix went away under a running bench
    name = f"vqdp{uuid.uuid4().hex[:4]}"
    lab = Lab(name)
    results: list[dict[str, Any]] = []
    # In memory: on the shared machine the bench's directories (in /tmp, /var/tmp and ~/.cache alike)
    # went away under it, and the store's lock files with them.
    store = Store(f"sqlite:///file:{name}?mode=memory&cache=shared&uri=true")
    try:
        status = lab_up(name, 1)
        assert not status.problems, status.problems
        limiters = Limiters(lab, store)
        if args.ecn:  # the flows negotiate ECN (the default, 2, only accepts it): what vmqos's AQM marks
            for ns in (lab.wan_ns, lab.instance(1).netns):
                sh(ns, "sysctl -qw net.ipv4.tcp_ecn=1")
        idle_ms = _idle_rtt(lab)
        for rep in range(args.reps):
            for rate_mbit in args.rates:
                for direction in args.directions:
                    for cc in args.ccs:
                        for system in args.systems:
                            rate = int(rate_mbit * MBIT)
                            row = _measured(lab, limiters, system, direction, rate, cc, args.seconds, idle_ms)
                            if row is None:
                                continue
                            row.update(system=system, direction=direction, cc=cc, mbit=rate_mbit, rep=rep)
                            results.append(row)
                            print(json.dumps(row), flush=True)
    finally:
        store.close()
        lab_down(name)
        # the store's writer takes its lock files beside the database's *name*, here `file:NAME.locks`
        # in the working directory
        shutil.rmtree(f"file:{name}?mode=memory&cache=shared&uri=true.locks", ignore_errors=True)
        shutil.rmtree(f"file:{name}.locks", ignore_errors=True)
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": _machine(), "idle_rtt_ms": idle_ms,
            "ecn": args.ecn, "load": open("/proc/loadavg").read().split()[:3],
            "seconds": args.seconds, "reps": args.reps, "refused": limiters.refused, "runs": results}


def _machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{model}, {os.cpu_count()} vCPU, kernel {os.uname().release}"


METRICS = (("steady_pct", "steady error %"), ("first_s_pct", "first second over the rate %"),
           ("ping_ms", "added RTT, ping ms"), ("own_rtt_ms", "added RTT, the flow's own ms"))
# `cpu_s_per_gbit` is kept in each row but not tabled: /proc/stat counts the whole shared machine, and
# other helpers' work made it meaningless (0.06 to 2,000 s per Gbit for the same limiter).


def merged(paths: list[Path]) -> dict[str, Any]:
    """Several results as one: whole documents, or the lines a run printed (rows survive a crash)."""
    doc: dict[str, Any] = {"date": "", "machine": _machine(), "idle_rtt_ms": 0.0, "seconds": 0, "reps": 0,
                           "refused": {}, "runs": []}
    for path in paths:
        text = path.read_text()
        if text.lstrip().startswith("{\n") or text.lstrip().startswith('{"date"'):
            part = json.loads(text)
            doc.update({k: v for k, v in part.items() if k != "runs"})
            doc["runs"] += part["runs"]
        else:
            doc["runs"] += [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    doc["reps"] = max((sum(1 for r in doc["runs"] if (r["system"], r["direction"], r["cc"], r["mbit"]) == key)
                       for key in {(r["system"], r["direction"], r["cc"], r["mbit"]) for r in doc["runs"]}), default=0)
    return doc


def medians(doc: dict[str, Any]) -> dict[tuple[str, str, str, float], dict[str, Any]]:
    groups: dict[tuple[str, str, str, float], list[dict[str, Any]]] = {}
    for row in doc["runs"]:
        groups.setdefault((row["system"], row["direction"], row["cc"], row["mbit"]), []).append(row)
    out = {}
    for key, rows in groups.items():
        med: dict[str, Any] = {}
        for metric, _ in METRICS:
            values = [r[metric] for r in rows if r[metric] is not None]
            med[metric] = statistics.median(values) if values else None
        med["n"] = len(rows)
        out[key] = med
    return out


def table(doc: dict[str, Any]) -> str:
    med = medians(doc)
    systems = [s for s in SYSTEMS if any(k[0] == s for k in med)]
    lines = [f"{doc['date']}, {doc['machine']}; {doc['seconds']} s per run, median of {doc['reps']} runs; "
             f"idle RTT {doc['idle_rtt_ms']:.3f} ms", ""]
    for direction in ("to", "from"):
        for cc in ("cubic", "bbr"):
            rates = sorted({k[3] for k in med if k[1] == direction and k[2] == cc})
            if not rates:
                continue
            lines += [f"**{direction} the instance, {cc}** — steady error % / first second over the rate % / "
                      "added RTT ping ms / the flow's own added RTT ms", "",
                      "| limit | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
            for rate in rates:
                cells = []
                for system in systems:
                    m = med.get((system, direction, cc, rate))
                    if m is None:
                        cells.append("–")
                        continue
                    cells.append(" / ".join("–" if m[k] is None else f"{m[k]:+.2f}" if k == "steady_pct"
                                            else f"{m[k]:.1f}" for k, _ in METRICS))
                lines.append(f"| {rate:g} Mbit/s | " + " | ".join(cells) + " |")
            lines.append("")
    if doc.get("refused"):
        lines.append("Refused by this kernel: " + "; ".join(f"`{k}`: {v}" for k, v in doc["refused"].items()))
    return "\n".join(lines)


def shape_table(doc: dict[str, Any], system: str = "vmqos-shape") -> str:
    """One vmqos system alone, one row a rate: what the README shows."""
    med = medians(doc)
    cols = [(d, cc) for d in ("to", "from") for cc in ("cubic", "bbr")]
    lines = ["| limit | " + " | ".join(f"{d} the instance, {cc}" for d, cc in cols) + " |", "|---|" + "---|" * len(cols)]
    for rate in sorted({k[3] for k in med if k[0] == system}):
        cells = []
        for d, cc in cols:
            m = med.get((system, d, cc, rate))
            cells.append("–" if m is None else f"{m['steady_pct']:+.2f} % / {m['first_s_pct']:+.1f} % / "
                         f"{max(m['ping_ms'] or 0, 0):.1f} ms / {max(m['own_rtt_ms'], 0):.1f} ms")
        lines.append(f"| {rate:g} Mbit/s | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(doc: dict[str, Any], where: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = medians(doc)
    where.mkdir(parents=True, exist_ok=True)
    made = []
    for metric, title in METRICS:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        for ax, direction in zip(axes, ("to", "from")):
            for system, color in zip(SYSTEMS, ("tab:blue", "tab:cyan", "tab:orange", "tab:green", "tab:red",
                                                 "tab:purple")):
                for cc, style in (("cubic", "-"), ("bbr", "--")):
                    pts = sorted((k[3], v[metric]) for k, v in med.items()
                                 if k[:3] == (system, direction, cc) and v[metric] is not None)
                    if pts:
                        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color, marker="o",
                                label=f"{system} {cc}")
            ax.legend(fontsize=6)
            ax.set_xscale("log")
            ax.set_title(f"{title}, {direction} the instance")
            ax.set_xlabel("limit, Mbit/s")
            if metric in ("ping_ms", "own_rtt_ms", "first_s_pct"):
                ax.set_yscale("symlog", linthresh=1)
        path = where / f"dataplane_{metric}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        made.append(path)
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--directions", nargs="+", default=["to", "from"], choices=["to", "from"])
    parser.add_argument("--ccs", nargs="+", default=["cubic", "bbr"], choices=["cubic", "bbr"])
    parser.add_argument("--ecn", action="store_true", help="net.ipv4.tcp_ecn=1 in the lab's wan and vm1: the flow "
                        "negotiates ECN (vmqos shape's AQM marks CE)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, nargs="+", help="print the tables of saved results (a JSON document "
                        "each, or the printed lines of runs: one JSON object a line), merged")
    parser.add_argument("--plot", type=Path, nargs="+", help="plot saved results, merged")
    parser.add_argument("--shape-only", nargs="?", const="vmqos-shape", choices=["vmqos-shape", "vmqos-clamp"],
                        help="with --table: one vmqos system alone (vmqos-shape unless named), for the README")
    parser.add_argument("--plot-dir", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    if args.table or args.plot:
        doc = merged(args.table or args.plot)
        if args.plot:
            for path in plot(doc, args.plot_dir):
                print(path)
        elif args.shape_only:
            print(shape_table(doc, args.shape_only))
        else:
            print(table(doc))
        return 0
    exit_on_sigterm(143)  # the finally that removes the lab runs in this process only, not in pyroute2's children
    if os.geteuid() != 0:
        print("needs root (a lab of network namespaces)", file=sys.stderr)
        return 2
    doc = sweep(args)
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1))
    print(table(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
