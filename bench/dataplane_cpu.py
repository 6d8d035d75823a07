#!/usr/bin/env python3
"""CPU per Gbit/s delivered: one steady TCP flow through each limiter, and through none (issue 16).

Usage (as root, from the worktree, under both locks on the shared machine):

    flock /tmp/vmqos-bench.lock flock /tmp/vmqos-kernel.lock .venv/bin/python bench/dataplane_cpu.py \
        --reps 3 --mbit 1000 --out /tmp/dp-cpu.jsonl
    .venv/bin/python bench/dataplane_cpu.py --table /tmp/dp-cpu.jsonl     # the medians as a Markdown table

The lab and the limiters are bench/dataplane_bench.py's (vm1's port; `none` is the same path with no
limiter). Each run: a quiet window of --seconds with no traffic (the machine's own load: other sessions
on a shared machine), then one cubic TCP flow for --seconds + 1.5 s; from 1.5 s on, the same window
length is measured. Two figures, per Gbit delivered in the measured window (the receiver's goodput):

  machine    CPU seconds of the whole machine (/proc/stat: user+system+irq+softirq) in the flow's window
             minus those of the quiet window: what the flow added, wherever it ran (the HTB watchdog's
             softirq runs in whatever context its timer interrupts). `sys_softirq` is the system and
             softirq part of it (the data path; user is mostly iperf3's copy loop).
  ends       CPU seconds of the two iperf3 processes (their getrusage, as iperf3 reports it): the sender's
             and receiver's paths, the veth and limiter work done inline in their softirqs included
             (tick accounting without IRQ_TIME_ACCOUNTING charges softirq ticks to the task it interrupts).

`machine` carries the other sessions' noise (their load changes between the two windows); `ends` does
not, but misses the work done outside the two processes. Read them together; medians of --reps.
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
from dataplane_bench import MBIT, Limiters  # noqa: E402

from vmqos.lab import Lab, lab_down, lab_up  # noqa: E402
from vmqos.store import Store  # noqa: E402

SETTLE_S = 1.5
SYSTEMS = ("none", "vmqos-shape", "vmqos-police", "tbf-seed", "libvirt", "cni")


def _stat() -> dict[str, float]:
    """Whole-machine CPU seconds by kind (/proc/stat's first line)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return {"user": (v[0] + v[1]) / tick, "system": v[2] / tick, "irq": v[5] / tick, "softirq": v[6] / tick}


def _delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b[k] - a[k] for k in a}


def one_run(lab: Lab, direction: str, cc: str, seconds: float) -> dict[str, Any]:
    vm = lab.instance(1)
    if direction == "to":
        sender, receiver, address = lab.wan_ns, vm.netns, vm.address
    else:
        sender, receiver, address = vm.netns, lab.wan_ns, lab.wan_address
    quiet0 = _stat()
    time.sleep(seconds)
    quiet = _delta(quiet0, _stat())
    server = subprocess.Popen(["ip", "netns", "exec", receiver, "iperf3", "-s", "-1", "-J", "-i", "0.5"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        client = subprocess.Popen(["ip", "netns", "exec", sender, "iperf3", "-c", address, "-t",
                                   f"{seconds + SETTLE_S + 0.3:g}", "-J", "-C", cc],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(SETTLE_S)
        busy0 = _stat()
        time.sleep(seconds)
        busy = _delta(busy0, _stat())
        out, _ = client.communicate(timeout=seconds + 30)
        srv, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    sent, got = json.loads(out), json.loads(srv)
    window = [i["sum"] for i in got["intervals"] if SETTLE_S - 0.01 <= i["sum"]["start"] < SETTLE_S + seconds]
    gbit = sum(i["bytes"] for i in window) * 8 / 1e9
    span = sum(i["seconds"] for i in window)
    added = {k: busy[k] - quiet[k] for k in busy}
    cpu = sent["end"].get("cpu_utilization_percent", {})
    whole_s = seconds + SETTLE_S + 0.3
    ends_s = (cpu.get("host_total", 0) + cpu.get("remote_total", 0)) / 100 * whole_s
    whole_gbit = sum(i["sum"]["bytes"] for i in got["intervals"]) * 8 / 1e9
    return {
        "gbps": round(gbit / span, 3) if span else None,
        "machine_s_per_gbit": round(sum(added.values()) / gbit, 3) if gbit else None,
        "sys_softirq_s_per_gbit": round((added["system"] + added["softirq"]) / gbit, 3) if gbit else None,
        "ends_s_per_gbit": round(ends_s / whole_gbit, 3) if whole_gbit else None,
        "quiet_busy_s": round(sum(quiet.values()), 2), "flow_busy_s": round(sum(busy.values()), 2),
        "added": {k: round(v, 2) for k, v in added.items()},
        "retransmits": sent["end"]["sum_sent"].get("retransmits"),
    }


def sweep(args: argparse.Namespace) -> None:
    name = f"vqcp{uuid.uuid4().hex[:4]}"
    lab = Lab(name)
    store = Store(f"sqlite:///file:{name}?mode=memory&cache=shared&uri=true")
    out = args.out.open("a") if args.out else None
    try:
        status = lab_up(name, 1)
        assert not status.problems, status.problems
        limiters = Limiters(lab, store)
        for rep in range(args.reps):
            for direction in args.directions:
                for system in args.systems:
                    undo = None if system == "none" else limiters.put(system, direction, int(args.mbit * MBIT))
                    if undo is None and system != "none":
                        continue
                    try:
                        row = one_run(lab, direction, args.cc, args.seconds)
                    finally:
                        if undo is not None:
                            undo()
                    row.update(system=system, direction=direction, cc=args.cc, mbit=args.mbit, rep=rep,
                               load=os.getloadavg()[0], when=time.strftime("%H:%M:%S", time.gmtime()))
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


def table(paths: list[Path]) -> str:
    rows = [json.loads(line) for p in paths for line in p.read_text().splitlines() if line.startswith("{")]
    keys = sorted({(r["direction"], r["system"]) for r in rows}, key=lambda k: (k[0] != "to", SYSTEMS.index(k[1])))
    lines = ["| direction | limiter | delivered Gbit/s | machine CPU s per Gbit (sys+softirq) | the two ends' "
             "CPU s per Gbit | runs |", "|---|---|---|---|---|---|"]
    for direction, system in keys:
        mine = [r for r in rows if (r["direction"], r["system"]) == (direction, system)]

        def med(key: str) -> float:
            return statistics.median(r[key] for r in mine if r[key] is not None)
        lines.append(f"| {'to' if direction == 'to' else 'from'} the instance | {system} | {med('gbps'):.3f} | "
                     f"{med('machine_s_per_gbit'):.3f} ({med('sys_softirq_s_per_gbit'):.3f}) | "
                     f"{med('ends_s_per_gbit'):.3f} | {len(mine)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mbit", type=float, default=1000, help="the limiters' rate (none: unlimited)")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--directions", nargs="+", default=["to", "from"])
    parser.add_argument("--cc", default="cubic")
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, nargs="+")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return 0
    exit_on_sigterm(143)
    sweep(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
