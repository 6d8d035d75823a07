#!/usr/bin/env python3
"""What the AQM costs per shaped port at host scale: the time to attach it and the kernel memory it holds.

Usage (as root, from the worktree, under the bench lock on the shared machine):

    flock /tmp/vmqos-bench.lock .venv/bin/python bench/aqm_cost.py --ports 10000

A throw-away namespace `vqac<hex>` with N veth devices, each with an HTB root (made with `ip -batch` and
`tc -batch`, not timed). Then the planner's AQM (`core.plan.queues.aqm`, 100 Mbit/s) is attached to every
device through the driver (`TcNetlink.replace`: a map created and written, the program loaded and
verified, a cls_bpf filter added), as the reconciler does for each shaped direction (a port shaped both
ways has two: its tap's and its IFB's). Measured:

  attach      wall time for the N attachments, and per attachment (median of each 1,000)
  memlock     what the kernel charges the program and its map (their fdinfo `memlock`), for a sample
  meminfo     /proc/meminfo's Slab + Percpu + VmallocUsed + KernelStack before and after the N attachments
              (other sessions' work moves it too: read it beside memlock)
  unchanged   the same N replaced again: vmqos finds its program and rewrites the map in place (a live
              change's path)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from vmqos.core.plan.queues import KernelProfile, aqm  # noqa: E402
from vmqos.drivers import bpf_aqm  # noqa: E402
from vmqos.drivers.bpf_police import _PROG_GET_FD_BY_ID, _bpf, map_of  # noqa: E402
from vmqos.drivers.tc_netlink import TcNetlink  # noqa: E402

RATE = 100_000_000
FIELDS = ("Slab", "Percpu", "VmallocUsed", "KernelStack")


def _meminfo() -> dict[str, int]:
    out = {}
    for line in open("/proc/meminfo"):
        key, value = line.split(":", 1)
        if key in FIELDS:
            out[key] = int(value.split()[0]) * 1024
    return out


def _memlock(fd: int) -> int:
    for line in open(f"/proc/self/fdinfo/{fd}"):
        if line.startswith("memlock:"):
            return int(line.split()[1])
    return 0


def _batch(tool: list[str], ns: str, lines: list[str]) -> None:
    done = subprocess.run(["ip", "netns", "exec", ns, *tool, "-batch", "-"], input="\n".join(lines) + "\n",
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"{tool[0]} -batch: {done.stderr[-500:]}")


def _prog_ids(ns: str, dev: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", ns, "tc", "filter", "show", "dev", dev, "parent", "1:"],
                         capture_output=True, text=True, timeout=30).stdout
    return int(out.split(" id ")[1].split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=20, help="devices whose program and map memlock is read")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    ns = f"vqac{uuid.uuid4().hex[:6]}"
    devs = [f"vqc{i}" for i in range(args.ports)]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        _batch(["ip"], ns, [f"link add {d} type veth peer name vqd{i}" for i, d in enumerate(devs)])
        _batch(["tc"], ns, [f"qdisc add dev {d} root handle 1: htb default 10" for d in devs])
        objs = [aqm(d, RATE, 50_000, 1500, KernelProfile()) for d in devs]
        before = _meminfo()
        per: list[float] = []
        with TcNetlink(ns) as tc:
            start = time.perf_counter()
            for obj in objs:
                t = time.perf_counter()
                tc.replace(obj)
                per.append(time.perf_counter() - t)
            attach_s = time.perf_counter() - start
            after = _meminfo()
            again: list[float] = []
            start = time.perf_counter()
            for obj in objs:
                t = time.perf_counter()
                tc.replace(obj)
                again.append(time.perf_counter() - t)
            again_s = time.perf_counter() - start
        progs, maps = [], []
        for d in devs[:: max(1, len(devs) // args.sample)][: args.sample]:
            pid = _prog_ids(ns, d)
            import struct
            pfd = _bpf(_PROG_GET_FD_BY_ID, struct.pack("<III", pid, 0, 0))
            mfd = map_of(pid, bpf_aqm.PROGRAM_NAME)
            try:
                progs.append(_memlock(pfd))
                maps.append(_memlock(mfd))
            finally:
                os.close(pfd)
                os.close(mfd)
        chunks = [per[i:i + 1000] for i in range(0, len(per), 1000)]
        result = {
            "ports": args.ports, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load": os.getloadavg(),
            "attach_s": round(attach_s, 2), "attach_ms_median": round(statistics.median(per) * 1000, 3),
            "attach_ms_median_per_1000": [round(statistics.median(c) * 1000, 3) for c in chunks],
            "unchanged_s": round(again_s, 2), "unchanged_ms_median": round(statistics.median(again) * 1000, 3),
            "memlock_prog_bytes": statistics.median(progs), "memlock_map_bytes": statistics.median(maps),
            "meminfo_delta_bytes": {k: after[k] - before[k] for k in FIELDS},
            "meminfo_delta_per_attach": round(sum(after[k] - before[k] for k in FIELDS) / args.ports),
        }
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=600)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
