#!/usr/bin/env python3
"""Probe: the AQM on a port with traffic classes (issue 16), each class's ECN flow's own RTT and the split.

Usage (as root, from the worktree, under the kernel lock on the shared machine):

    flock /tmp/vmqos-kernel.lock .venv/bin/python bench/class_aqm_probe.py --reps 3 --out /tmp/class-aqm.jsonl

A throw-away lab with one instance; vm1's port limited to --mbit (20) with seed 004's classes: web
(tcp 80) 50 %, mail (tcp 25) 30 %, the rest 20 %, in one direction; cubic flows with ECN negotiated
(net.ipv4.tcp_ecn=1 in both namespaces), one per busy class, 5 s at once. Cases:

  one    only web busy: it borrows everything (its flow drains at the port's rate)
  two    web and mail busy (the rest's 20 % lent to them 50:30)
  three  web, mail and the rest busy: 50/30/20

Variants:
  none   the plan without the AQM on the classed tree (its bpf filter removed after apply): main's behaviour
  port   the plan: one virtual queue at the port's rate, before the class filters (queues.CLASSED_AQM_PRIO)

One JSON row per run: per flow its settled L2 frame rate (from 1.5 s), its share of the limit, its own added
RTT (iperf3's mean_rtt minus the idle RTT), retransmits; the AQM's CE marks from its map.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from apply_bench import exit_on_sigterm  # noqa: E402
from dataplane_bench import _idle_rtt, sh  # noqa: E402

from vmqos.core.desired.ports import PortChange  # noqa: E402
from vmqos.core.model.host import EgressMode, Policy  # noqa: E402
from vmqos.core.model.network import (  # noqa: E402
    BandwidthLimit,
    DirectionQos,
    NetworkQos,
    TrafficClass,
    TrafficMatch,
)
from vmqos.core.plan.names import ifb_name  # noqa: E402
from vmqos.core.plan.queues import CLASSED_AQM_PRIO  # noqa: E402
from vmqos.drivers import bpf_aqm, bpf_police  # noqa: E402
from vmqos.lab import Lab, lab_down, lab_up  # noqa: E402
from vmqos.services.ports import clear_port, set_port  # noqa: E402
from vmqos.store import Store  # noqa: E402

MBIT = 1_000_000
GOODPUT_PER_FRAME = 0.956  # TCP goodput / L2 frame rate over IPv4 at MTU 1500 (kernel-lab-facts)
SETTLED_S = 1.5
CLASSES = (TrafficClass("web", 50, TrafficMatch("tcp", (80,))), TrafficClass("mail", 30, TrafficMatch("tcp", (25,))),
           TrafficClass("rest", 20))
CASES = {"one": (80,), "two": (80, 25), "three": (80, 25, 5201)}


def _aqm_map(host_ns: str, dev: str) -> int | None:
    """The fd of the map of vmqos's AQM on `dev`'s HTB root at CLASSED_AQM_PRIO, or None."""
    out = sh(host_ns, f"tc -j filter show dev {dev} parent 1: prio {CLASSED_AQM_PRIO}", check=False).stdout
    for f in json.loads(out or "[]"):
        prog = (f.get("options") or {}).get("prog") or {}
        if prog.get("id"):
            return bpf_police.map_of(int(prog["id"]), bpf_aqm.PROGRAM_NAME)
    return None


def _flows(sender: str, receiver: str, address: str, ports: tuple[int, ...], seconds: float) -> dict[int, dict]:
    servers = {p: subprocess.Popen(["ip", "netns", "exec", receiver, "iperf3", "-s", "-1", "-J", "-i", "0.5",
                                    "-p", str(p)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for p in ports}
    clients: dict[int, subprocess.Popen[str]] = {}
    try:
        time.sleep(0.4)
        clients = {p: subprocess.Popen(["ip", "netns", "exec", sender, "iperf3", "-c", address, "-p", str(p), "-t",
                                        f"{seconds:g}", "-J", "-C", "cubic"], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True) for p in ports}
        sent = {p: json.loads(c.communicate(timeout=seconds + 30)[0]) for p, c in clients.items()}
        got = {p: json.loads(s.communicate(timeout=30)[0]) for p, s in servers.items()}
    finally:
        for proc in [*clients.values(), *servers.values()]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {p: {"sent": sent[p], "got": got[p]} for p in ports}


def measure(lab: Lab, store: Store, idle: float, mbit: float, direction: str, case: str, variant: str,
            seconds: float) -> dict:
    vm = lab.instance(1)
    limit = int(mbit * MBIT)
    for ns in (lab.wan_ns, vm.netns):
        sh(ns, "sysctl -qw net.ipv4.tcp_ecn=1")
    side = DirectionQos(bandwidth=BandwidthLimit(limit), classes=CLASSES)
    qos = NetworkQos(ingress=side) if direction == "to" else NetworkQos(egress=side)
    report = set_port(store, lab.host_ns, vm.port, PortChange(
        policy=Policy(f"caqm-{uuid.uuid4().hex[:6]}", qos), egress_mode=EgressMode.SHAPE))
    assert report is not None and report.ok, report
    dev = vm.port if direction == "to" else ifb_name(vm.port)
    map_fd = None
    try:
        if variant == "none":
            sh(lab.host_ns, f"tc filter del dev {dev} parent 1: prio {CLASSED_AQM_PRIO}")
        else:
            map_fd = _aqm_map(lab.host_ns, dev)
            assert map_fd is not None, f"no AQM on {dev} at prio {CLASSED_AQM_PRIO}"
        marks0 = bpf_aqm.read_state(map_fd).marks if map_fd is not None else 0
        if direction == "to":
            runs = _flows(lab.wan_ns, vm.netns, vm.address, CASES[case], seconds)
        else:
            runs = _flows(vm.netns, lab.wan_ns, lab.wan_address, CASES[case], seconds)
        marks = bpf_aqm.read_state(map_fd).marks - marks0 if map_fd is not None else 0
    finally:
        if map_fd is not None:
            os.close(map_fd)
        clear_port(store, lab.host_ns, vm.port)
    flows = {}
    for port, run in runs.items():
        late = [i["sum"] for i in run["got"]["intervals"] if i["sum"]["start"] >= SETTLED_S - 0.01]
        rate = sum(i["bytes"] for i in late) * 8 / sum(i["seconds"] for i in late) / GOODPUT_PER_FRAME
        stream = run["sent"]["end"]["streams"][0]["sender"]
        flows[str(port)] = {"mbit": round(rate / MBIT, 3), "share_pct": round(100 * rate / limit, 2),
                            "own_rtt_ms": round(stream["mean_rtt"] / 1000 - idle, 2),
                            "retransmits": run["sent"]["end"]["sum_sent"].get("retransmits")}
    return {"variant": variant, "direction": direction, "case": case, "mbit": mbit, "flows": flows,
            "ce_marks": marks, "idle_ms": idle, "when": time.strftime("%H:%M:%S", time.gmtime()),
            "load": os.getloadavg()[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mbit", type=float, default=20)
    parser.add_argument("--directions", nargs="+", default=["to", "from"])
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--variants", nargs="+", default=["none", "port"])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    exit_on_sigterm(143)
    name = f"vqca{uuid.uuid4().hex[:4]}"
    lab = Lab(name)
    store = Store(f"sqlite:///file:{name}?mode=memory&cache=shared&uri=true")
    out = args.out.open("a") if args.out else None
    try:
        status = lab_up(name, 1)
        assert not status.problems, status.problems
        idle = _idle_rtt(lab)
        for _rep in range(args.reps):
            for direction in args.directions:
                for case in args.cases:
                    for variant in args.variants:
                        row = measure(lab, store, idle, args.mbit, direction, case, variant, args.seconds)
                        line = json.dumps(row)
                        print(line, flush=True)
                        if out:
                            out.write(line + "\n")
                            out.flush()
    finally:
        store.close()
        lab_down(name)
        shutil.rmtree(f"file:{name}?mode=memory&cache=shared&uri=true.locks", ignore_errors=True)
        shutil.rmtree(f"file:{name}.locks", ignore_errors=True)  # where the store's writer puts them
        if out:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
