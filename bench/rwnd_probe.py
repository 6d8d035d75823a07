#!/usr/bin/env python3
"""Probe: a receive-window clamp on a port's ACKs, one TCP flow without ECN (issue 16).

Usage (as root, from the worktree, under both locks on the shared machine):

    flock /tmp/vmqos-bench.lock flock /tmp/vmqos-kernel.lock .venv/bin/python bench/rwnd_probe.py \
        --rates 1 3 10 100 --ccs cubic bbr --directions to from --variants none clamp --reps 3 --out /tmp/rwnd.jsonl
    .venv/bin/python bench/rwnd_probe.py --table /tmp/rwnd.jsonl      # medians as a Markdown table

A throw-away lab `vqrw<hex>` with one instance; vmqos shape on vm1's port (set_port, main's plan: the
segmenting TBF or bfifo leaf, the sparse class, the mark-only AQM, which passes a flow without ECN);
tcp_ecn=0 in both namespaces. For `clamp`, `vmqos.drivers.bpf_rwnd`'s two programs on a clsact of the
tap (egress: the windows of what goes towards the instance; ingress: of what comes from it), the shaped
direction's rate in the slot of the other direction's hook; its window is
rate x handshake RTT + max(--kmin x MSS, rate x --target-ms).

Measured per run (iperf3 -i 0.5 at both ends): steady error % (frames from 2 s on against the limit),
the first second %, the flow's own added RTT — tcp_info's srtt at the sender (iperf3's per-interval
`rtt`, which is what `ss -ti` prints), median of the intervals from 2 s on, minus the idle ping RTT —
and its mean over the whole run (iperf3's mean_rtt), retransmits, and the clamp's counters and the
flow's handshake RTT as the program measured it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from apply_bench import exit_on_sigterm  # noqa: E402
from dataplane_bench import GOODPUT_PER_FRAME, MBIT, _idle_rtt, sh  # noqa: E402
from pyroute2 import NetNS  # noqa: E402
from pyroute2.protocols import ETH_P_ALL  # noqa: E402

from vmqos.core.desired.ports import PortChange  # noqa: E402
from vmqos.core.model.host import EgressMode, Policy  # noqa: E402
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos  # noqa: E402
from vmqos.drivers import bpf_rwnd  # noqa: E402
from vmqos.lab import Lab, lab_down, lab_up  # noqa: E402
from vmqos.services.ports import clear_port, set_port  # noqa: E402
from vmqos.store import Store  # noqa: E402

CLSACT_EGRESS, CLSACT_INGRESS = 0xFFFFFFF3, 0xFFFFFFF2


def attach(host_ns: str, dev: str, loaded: bpf_rwnd.Loaded) -> None:
    sh(host_ns, f"tc qdisc add dev {dev} clsact")
    with NetNS(host_ns) as ipr:
        idx = ipr.link_lookup(ifname=dev)[0]
        for parent, fd in ((CLSACT_EGRESS, loaded.towards_fd), (CLSACT_INGRESS, loaded.from_fd)):
            ipr.tc("add-filter", "bpf", idx, 1, parent=parent, prio=1, protocol=ETH_P_ALL, fd=fd,
                   name=bpf_rwnd.PROGRAM_NAME, direct_action=True)


def one_flow(lab: Lab, direction: str, rate: int, cc: str, seconds: float, idle_ms: float,
             parallel: int = 1) -> dict[str, Any]:
    vm = lab.instance(1)
    if direction == "to":
        sender, receiver, address = lab.wan_ns, vm.netns, vm.address
    else:
        sender, receiver, address = vm.netns, lab.wan_ns, lab.wan_address
    server = subprocess.Popen(["ip", "netns", "exec", receiver, "iperf3", "-s", "-1", "-J", "-i", "0.5"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        client = subprocess.run(["ip", "netns", "exec", sender, "iperf3", "-c", address, "-t", f"{seconds:g}", "-J",
                                 "-i", "0.5", "-C", cc, "-P", str(parallel)], capture_output=True, text=True, timeout=seconds + 30)
        srv, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    sent, got = json.loads(client.stdout), json.loads(srv)
    intervals = [i["sum"] for i in got["intervals"]]
    first = sum(i["bytes"] for i in intervals if i["end"] <= 1.0 + 1e-3) / GOODPUT_PER_FRAME
    steady = [i for i in intervals if i["start"] >= 2.0 - 1e-3]
    steady_bps = sum(i["bytes"] for i in steady) * 8 / sum(i["seconds"] for i in steady) / GOODPUT_PER_FRAME
    rtts = [s["rtt"] / 1000 for i in sent["intervals"] for s in i["streams"] if s["start"] >= 2.0 - 1e-3]
    means = [s["sender"].get("mean_rtt", 0) / 1000 for s in sent["end"]["streams"]]
    return {
        "steady_pct": round(100 * (steady_bps - rate) / rate, 2),
        "first_s_pct": round(100 * (first * 8 - rate) / rate, 1),
        "own_rtt_ms": round(statistics.median(rtts) - idle_ms, 2) if rtts else None,
        "own_rtt_mean_ms": round(statistics.median(means) - idle_ms, 2),
        "retransmits": sent["end"]["sum_sent"].get("retransmits"),
    }


def measure(lab: Lab, store: Store, idle: float, args: argparse.Namespace, mbit: float, direction: str, cc: str,
            variant: str) -> dict[str, Any]:
    vm = lab.instance(1)
    rate = int(mbit * MBIT)
    side = DirectionQos(bandwidth=BandwidthLimit(rate))
    qos = NetworkQos(ingress=side) if direction == "to" else NetworkQos(egress=side)
    report = set_port(store, lab.host_ns, vm.port, PortChange(
        policy=Policy(f"rw-{uuid.uuid4().hex[:6]}", qos), egress_mode=EgressMode.SHAPE))
    assert report is not None and report.ok, report
    loaded = None
    row: dict[str, Any] = {}
    try:
        if variant == "clamp":
            target = int(args.target_ms * 1e6)
            shaped = bpf_rwnd.ClampConfig(rate // 8, target, args.kmin)
            idle_cfg = bpf_rwnd.ClampConfig(0, target, args.kmin)
            # the windows that travel towards the instance govern what it sends ("from"), and back
            loaded = bpf_rwnd.load(towards=shaped if direction == "from" else idle_cfg,
                                   from_=shaped if direction == "to" else idle_cfg)
            attach(lab.host_ns, vm.port, loaded)
        row = one_flow(lab, direction, rate, cc, args.seconds, idle, args.parallel)
        if loaded is not None:
            slot = bpf_rwnd.TOWARDS if direction == "from" else bpf_rwnd.FROM
            row["clamped"] = bpf_rwnd.counters(loaded.config_fd, slot).clamped
            flows = [f for f in bpf_rwnd.flows(loaded.flows_fd) if 5201 in (f.sport, f.dport)]
            row["handshake_rtt_ms"] = sorted({round(f.rtt_ns / 1e6, 3) for f in flows})
            row["wscale"] = sorted({f.shift for f in flows})
    finally:
        if loaded is not None:
            sh(lab.host_ns, f"tc qdisc del dev {vm.port} clsact", check=False)
            loaded.close()
        clear_port(store, lab.host_ns, vm.port)
    row.update(variant=variant, direction=direction, cc=cc, mbit=mbit, parallel=args.parallel, kmin=args.kmin if loaded else None,
               target_ms=args.target_ms if loaded else None, when=time.strftime("%H:%M:%S", time.gmtime()),
               load=open("/proc/loadavg").read().split()[0])
    return row


def table(paths: list[Path]) -> str:
    rows = [json.loads(line) for p in paths for line in p.read_text().splitlines() if line.startswith("{")]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["mbit"], r["direction"], r["cc"], r["variant"], r.get("kmin"), r.get("target_ms"),
                           r.get("parallel", 1)),
                          []).append(r)
    lines = ["| limit | direction, cc | variant | steady % | first s % | own added RTT ms (steady median / run mean) "
             "| retransmits | n |", "|---|---|---|---|---|---|---|---|"]
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[6], k[3], k[4] or 0, k[5] or 0)):
        g = groups[key]

        def med(metric: str, g: list[dict[str, Any]] = g) -> float:
            return statistics.median(r[metric] for r in g if r.get(metric) is not None)

        variant = key[3] if key[3] == "none" else f"clamp k{key[4]} +{key[5]:g} ms"
        variant += f", {key[6]} flows" if key[6] > 1 else ""
        lines.append(f"| {key[0]:g} Mbit/s | {key[1]}, {key[2]} | {variant} | {med('steady_pct'):+.2f} | "
                     f"{med('first_s_pct'):+.1f} | {med('own_rtt_ms'):.1f} / {med('own_rtt_mean_ms'):.1f} | "
                     f"{med('retransmits'):g} | {len(g)} |")
    return "\n".join(lines)


def paired(paths: list[Path]) -> str:
    """One row per (limit, direction, cc): main's shape against shape + clamp, medians (the docs' table)."""
    rows = [json.loads(line) for p in paths for line in p.read_text().splitlines() if line.startswith("{")]
    cells: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        cells.setdefault((r["mbit"], r["direction"], r["cc"], r.get("delay_ms", 0.0)), {}).setdefault(r["variant"], []).append(r)
    out = []
    for (mbit, direction, cc, delay), by in sorted(cells.items(),
                                                   key=lambda kv: (kv[0][3], kv[0][0], kv[0][1] == "from", kv[0][2])):
        parts = []
        for variant in ("none", "clamp"):
            g = by.get(variant, [])
            if not g:
                parts.append("–")
                continue
            m = {k: statistics.median(r[k] for r in g) for k in ("steady_pct", "first_s_pct", "own_rtt_ms", "retransmits")}
            parts.append(f"{m['steady_pct']:+.2f} % / {m['first_s_pct']:+.1f} % / {m['own_rtt_ms']:.1f} ms / "
                         f"{m['retransmits']:g}")
        path = f" (path +{delay:g} ms)" if delay else ""
        out.append(f"| {mbit:g} Mbit/s{path} | {direction}, {cc} | " + " | ".join(parts) + " |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[1, 3, 10, 100])
    parser.add_argument("--ccs", nargs="+", default=["cubic", "bbr"])
    parser.add_argument("--directions", nargs="+", default=["to", "from"])
    parser.add_argument("--variants", nargs="+", default=["none", "clamp"], choices=["none", "clamp"])
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--target-ms", type=float, default=4.0)
    parser.add_argument("--kmin", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=1, help="TCP flows at once (iperf3 -P); RTTs are the median "
                        "over the flows")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay the path by this much (bench/rwnd_delay.py "
                        "in the wan namespace: this kernel has no netem)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, nargs="+", help="print saved runs' medians as a Markdown table")
    parser.add_argument("--paired", action="store_true", help="with --table: one row per cell, without | with clamp")
    args = parser.parse_args()
    if args.table:
        print(paired(args.table) if args.paired else table(args.table))
        return 0
    exit_on_sigterm(143)  # the finally that removes the lab runs in this process only, not in pyroute2's children
    name = f"vqrw{uuid.uuid4().hex[:4]}"
    lab = Lab(name)
    store = Store(f"sqlite:///file:{name}?mode=memory&cache=shared&uri=true")
    out = args.out.open("a") if args.out else None
    delay_line = None
    try:
        status = lab_up(name, 1)
        assert not status.problems, status.problems
        for ns in (lab.wan_ns, lab.instance(1).netns):
            sh(ns, "sysctl -qw net.ipv4.tcp_ecn=0")
        if args.delay_ms:
            delay_line = subprocess.Popen(["ip", "netns", "exec", lab.wan_ns, sys.executable,
                                           str(Path(__file__).with_name("rwnd_delay.py")), "--delay-ms",
                                           f"{args.delay_ms:g}"], stdout=subprocess.PIPE, text=True)
            assert delay_line.stdout is not None and delay_line.stdout.readline().strip() == "ready"
        idle = _idle_rtt(lab)
        print(f"# idle RTT {idle:.3f} ms, load {open('/proc/loadavg').read().split()[:3]}", flush=True)
        for _rep in range(args.reps):
            for mbit in args.rates:
                for direction in args.directions:
                    for cc in args.ccs:
                        for variant in args.variants:
                            row = None
                            for _attempt in range(2):
                                try:
                                    row = measure(lab, store, idle, args, mbit, direction, cc, variant)
                                    break
                                except Exception as exc:  # the shared machine's namespaces vanished under runs
                                    print(f"# {variant} {direction} {mbit} {cc}: {exc!r}", file=sys.stderr, flush=True)
                                    lab_up(name, 1)
                            if row is None:
                                continue
                            row.update(delay_ms=args.delay_ms, idle_ms=idle)
                            line = json.dumps(row)
                            print(line, flush=True)
                            if out:
                                out.write(line + "\n")
                                out.flush()
    finally:
        if delay_line is not None:
            delay_line.terminate()
            delay_line.wait(timeout=10)
        store.close()
        lab_down(name)
        shutil.rmtree(f"file:{name}?mode=memory&cache=shared&uri=true.locks", ignore_errors=True)
        shutil.rmtree(f"file:{name}.locks", ignore_errors=True)
        if out:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
