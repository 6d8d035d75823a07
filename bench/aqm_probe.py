#!/usr/bin/env python3
"""Probe: an eBPF AQM over a virtual queue on vmqos's HTB root, one TCP flow (issue 16).

Usage (as root, from the worktree, under both locks on the shared machine):

    flock /tmp/vmqos-kernel.lock .venv/bin/python bench/aqm_probe.py --rates 1 3 10 100 \
        --ccs cubic bbr --directions to from --variants none drop ecn --out /tmp/aqm.jsonl

A throw-away lab with one instance; vmqos shape on vm1's port (set_port, the plan of main), then,
for the variants other than `none`, the program of `vmqos.drivers.bpf_aqm` attached by hand as a
bpf filter (direct action, prio 100, after the sparse filters) on the HTB root that shapes that
direction (the tap's root towards the instance, its IFB's from it). Its virtual queue drains at
the port's rate with the leaf's cburst as credit; CoDel's target is max(--target-ms, --target-frames
frames at the rate), its interval max(--interval-ms, --interval-frames frames).

  none  vmqos shape as on main (the segmenting TBF or bfifo leaf, no AQM)
  drop  the AQM, drops only (net.ipv4.tcp_ecn=0 in both namespaces)
  ecn   the AQM marks ECT packets, drops the others (tcp_ecn=1 in both namespaces: the flow negotiates ECN)
  mark  the AQM marks ECT packets and never drops (tcp_ecn=1)
  mark-noecn  the same program, the flow without ECN (tcp_ecn=0): what a non-ECN guest sees

One row per run (JSON), measured as bench/dataplane_bench.py does (steady error %, first second %,
ping and the flow's own added RTT, retransmits), plus the AQM's drops and marks from its map.
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
from dataplane_bench import MBIT, _idle_rtt, one_run, sh  # noqa: E402
from pyroute2 import NetNS  # noqa: E402
from pyroute2.protocols import ETH_P_ALL  # noqa: E402

from vmqos.core.desired.ports import PortChange  # noqa: E402
from vmqos.core.model.host import EgressMode, Policy  # noqa: E402
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos  # noqa: E402
from vmqos.core.plan.names import ifb_name  # noqa: E402
from vmqos.core.plan.queues import KernelProfile, min_burst  # noqa: E402
from vmqos.drivers import bpf_aqm  # noqa: E402
from vmqos.lab import Lab, lab_down, lab_up  # noqa: E402
from vmqos.services.ports import clear_port, set_port  # noqa: E402
from vmqos.store import Store  # noqa: E402

AQM_PRIO = 100


def frame_ns(rate_bps: int) -> int:
    return 1514 * 8 * 1_000_000_000 // rate_bps


def attach(host_ns: str, dev: str, config: bpf_aqm.AqmConfig) -> int:
    """The AQM on `dev`'s HTB root; returns the map's fd (the caller reads and closes it)."""
    prog_fd, map_fd = bpf_aqm.load(config)
    try:
        with NetNS(host_ns) as ipr:
            idx = ipr.link_lookup(ifname=dev)[0]
            ipr.tc("add-filter", "bpf", idx, 1, parent=0x10000, prio=AQM_PRIO, protocol=ETH_P_ALL,
                   fd=prog_fd, name=bpf_aqm.PROGRAM_NAME, direct_action=True)
    finally:
        os.close(prog_fd)
    return map_fd


def measure(lab, store, idle: float, args: argparse.Namespace, mbit: float, direction: str, cc: str,
            variant: str) -> dict:
    vm = lab.instance(1)
    rate = int(mbit * MBIT)
    ecn = "1" if variant in ("ecn", "mark") else "0"
    for ns in (lab.wan_ns, vm.netns):
        sh(ns, f"sysctl -qw net.ipv4.tcp_ecn={ecn}")
    side = DirectionQos(bandwidth=BandwidthLimit(rate))
    qos = NetworkQos(ingress=side) if direction == "to" else NetworkQos(egress=side)
    report = set_port(store, lab.host_ns, vm.port, PortChange(
        policy=Policy(f"aqm-{uuid.uuid4().hex[:6]}", qos), egress_mode=EgressMode.SHAPE))
    assert report is not None and report.ok, report
    map_fd = None
    config = None
    try:
        if variant != "none":
            dev = vm.port if direction == "to" else ifb_name(vm.port)
            config = bpf_aqm.AqmConfig(
                rate_bytes=rate // 8, bucket_bytes=min_burst(rate, 1500, KernelProfile()),
                target_ns=int(max(args.target_ms * 1e6, args.target_frames * frame_ns(rate))),
                interval_ns=int(max(args.interval_ms * 1e6, args.interval_frames * frame_ns(rate))),
                ecn=variant in ("ecn", "mark", "mark-noecn"), drop=variant in ("drop", "ecn"))
            map_fd = attach(lab.host_ns, dev, config)
        row = one_run(lab, direction, rate, cc, args.seconds, idle)
        if map_fd is not None:
            state = bpf_aqm.read_state(map_fd)
            row.update(aqm_drops=state.drops, aqm_marks=state.marks)
    finally:
        if map_fd is not None:
            os.close(map_fd)
        clear_port(store, lab.host_ns, vm.port)
    row.update(variant=variant, direction=direction, cc=cc, mbit=mbit,
               target_ms=config.target_ns / 1e6 if config else None,
               interval_ms=config.interval_ns / 1e6 if config else None,
               when=time.strftime("%H:%M:%S", time.gmtime()))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[1, 3, 10, 100])
    parser.add_argument("--ccs", nargs="+", default=["cubic", "bbr"])
    parser.add_argument("--directions", nargs="+", default=["to", "from"])
    parser.add_argument("--variants", nargs="+", default=["none", "drop", "ecn"])
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--target-ms", type=float, default=2.0)
    parser.add_argument("--target-frames", type=float, default=1.0)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--interval-frames", type=float, default=4.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    exit_on_sigterm(143)  # the finally that removes the lab runs in this process only, not in pyroute2's children
    name = f"vqaq{uuid.uuid4().hex[:4]}"
    lab = Lab(name)
    store = Store(f"sqlite:///file:{name}?mode=memory&cache=shared&uri=true")
    out = args.out.open("a") if args.out else None
    try:
        status = lab_up(name, 1)
        assert not status.problems, status.problems
        vm = lab.instance(1)
        idle = _idle_rtt(lab)
        for _rep in range(args.reps):
            for mbit in args.rates:
                for direction in args.directions:
                    for cc in args.ccs:
                        for variant in args.variants:
                            row = None
                            for attempt in range(3):
                                try:
                                    row = measure(lab, store, idle, args, mbit, direction, cc, variant)
                                    break
                                except Exception as exc:  # the shared machine's namespaces vanished under runs
                                    print(f"# {variant} {direction} {mbit} {cc}: {exc!r}", file=sys.stderr, flush=True)
                                    lab_up(name, 1)
                            if row is None:
                                continue
                            line = json.dumps(row)
                            print(line, flush=True)
                            if out:
                                out.write(line + "\n")
                                out.flush()
    finally:
        store.close()
        lab_down(name)
        shutil.rmtree(f"file:{name}?mode=memory&cache=shared&uri=true.locks", ignore_errors=True)
        shutil.rmtree(f"file:{name}.locks", ignore_errors=True)
        if out:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
