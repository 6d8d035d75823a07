#!/usr/bin/env python3
"""The window of a new tap: from its creation to the moment vmqos agent has put its limits on it.

Usage (as root, from the repository root, under the kernel lock on a shared machine):

    flock /tmp/vmqos-kernel.lock .venv/bin/python bench/tap_window_bench.py --runs 200 --others 0
    flock /tmp/vmqos-kernel.lock .venv/bin/python bench/tap_window_bench.py --runs 100 --others 100

A throw-away namespace `vqbench<hex>` and an in-process `Agent` (real kernel, the real link
watcher; no libvirt, no monitor, no retry and no resync, so that only the link event places the
tap) with a static feed that wants `vqwin0` (2 Mbit/s towards the instance, 3 Mbit/s from it) and
`--others` veth ports already placed. Each run, a helper process inside the namespace plays QEMU:
it opens /dev/net/tun and creates the tap with TUNSETIFF (the tap exists when the ioctl returns,
and goes when the helper closes the descriptor: a VM's stop), and prints CLOCK_MONOTONIC just
before the ioctl (the kernel announces the link during the ioctl, so the agent may hear of it
before the ioctl has returned). The agent's side is timed with the same clock:

  detect  creation -> the link watcher hands the device to the enforcer (netlink event, decoding)
  apply   -> the enforcer's targeted pass for that device returns (store, plan, read-back, `ip`,
             `tc`, `nft` writes: the HTB tree on the tap, the IFB and its tree, the nft chains
             exist before it returns)
  total   creation -> limits in place: the window in which the tap has no limit

After every run the device is read back once (not timed) to check it really holds its plan.
Prints a Markdown table (median, p95, max, in ms) and a JSON document. The target (issue 15): 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

from vmqos.agent.daemon import Agent, AgentSettings
from vmqos.core.fleet.desired import DesiredPage, DesiredPort, policy_of
from vmqos.core.fleet.inventory import HostInventory
from vmqos.core.fleet.report import AgentReport
from vmqos.services.ports import check_host
from vmqos.store import Store

DEVICE = "vqwin0"
POLICY = {"ingress": {"rate": 2_000_000}, "egress": {"rate": 3_000_000}}

CREATOR = r"""
import fcntl, os, struct, sys, time
TUNSETIFF, IFF_TAP, IFF_NO_PI = 0x400454CA, 0x0002, 0x1000
fd = None
for line in sys.stdin:
    cmd, name = line.split()
    if cmd == "create":
        fd = os.open("/dev/net/tun", os.O_RDWR)
        before = time.monotonic()
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
        print(before, flush=True)
    else:
        os.close(fd)
        print(time.monotonic(), flush=True)
"""


class StaticFeed:
    """Wants the bench's ports at revision 1; never changes; takes every report."""

    def __init__(self, devices: list[str]) -> None:
        self.page = DesiredPage(1, tuple(DesiredPort(d, 1, policy_of(d, POLICY)) for d in devices), full=True)
        self.stop = threading.Event()

    def register(self, inventory: HostInventory) -> object:
        return None

    def desired(self) -> DesiredPage:
        return self.page

    def changes(self, since: int, wait: float) -> DesiredPage:
        self.stop.wait(wait)
        return DesiredPage(1, (), full=False)

    def report(self, report: AgentReport) -> None:
        pass


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def bench(args: argparse.Namespace) -> dict[str, Any]:
    ns = f"vqbench{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    tmp = tempfile.mkdtemp(prefix="vq-tapwin-")
    others = [f"vqo{i:03d}" for i in range(args.others)]
    try:
        for name in others:
            subprocess.run(["ip", "-n", ns, "link", "add", name, "type", "veth", "peer", "name", "vqp" + name[3:]],
                           check=True)
        feed = StaticFeed([DEVICE, *others])
        settings = AgentSettings("http://bench", "bench", ns, resync_s=86400, retry_s=86400, report_s=3600,
                                 use_libvirt=False, monitor=None)
        with Store(f"sqlite:///{tmp}/agent.db") as store:
            agent = Agent(settings, feed, store)
            handed: dict[str, float] = {}
            placed = threading.Event()
            done_at: list[float] = []
            wake_devices, sync = agent.wake.devices, agent.enforcer.sync

            def timed_wake(devices: Any) -> None:
                handed.setdefault("at", time.monotonic())
                wake_devices(devices)

            def timed_sync(**kw: Any) -> Any:
                result = sync(**kw)
                if DEVICE in result.placed:
                    done_at.append(time.monotonic())
                    placed.set()
                return result

            agent.wake.devices = timed_wake  # type: ignore[method-assign]
            agent.enforcer.sync = timed_sync  # type: ignore[method-assign]
            agent.start()
            deadline = time.monotonic() + 60
            while agent.follower.revision is None and time.monotonic() < deadline:
                time.sleep(0.05)
            creator = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", CREATOR],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert creator.stdin is not None and creator.stdout is not None
            rows: list[dict[str, float]] = []
            try:
                for run in range(args.runs):
                    handed.clear()
                    placed.clear()
                    done_at.clear()
                    creator.stdin.write(f"create {DEVICE}\n")
                    creator.stdin.flush()
                    created = float(creator.stdout.readline())
                    if not placed.wait(10):
                        raise SystemExit(f"run {run}: {DEVICE} was not placed within 10 s")
                    rows.append({"detect": handed["at"] - created, "apply": done_at[0] - handed["at"],
                                 "total": done_at[0] - created})
                    if run % max(1, args.runs // 5) == 0:  # read back, not timed
                        drift = [d for d in check_host(store, ns) if d.port == DEVICE]
                        assert drift and drift[0].ok, drift
                    creator.stdin.write(f"delete {DEVICE}\n")
                    creator.stdin.flush()
                    creator.stdout.readline()
                    deadline = time.monotonic() + 10
                    while DEVICE not in agent.absent and time.monotonic() < deadline:
                        time.sleep(0.005)
                    time.sleep(args.pause)
            finally:
                creator.stdin.close()
                creator.wait(10)
                feed.stop.set()
                agent.stop()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["rm", "-rf", tmp], check=False)
    out: dict[str, Any] = {"runs": args.runs, "others": args.others}
    for key in ("detect", "apply", "total"):
        values = [r[key] * 1000 for r in rows]
        out[key] = {"median_ms": round(statistics.median(values), 1), "p95_ms": round(pct(values, 95), 1),
                    "max_ms": round(max(values), 1)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--others", type=int, default=0, help="other ports the agent already holds")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between a delete and the next create")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: network namespaces")
    result = bench(args)
    print(f"| ports held | runs | detect median / p95 / max | apply median / p95 / max | "
          f"total median / p95 / max |")
    print("|---:|---:|---|---|---|")
    cells = " | ".join(f"{result[k]['median_ms']} / {result[k]['p95_ms']} / {result[k]['max_ms']} ms"
                       for k in ("detect", "apply", "total"))
    print(f"| {args.others} | {args.runs} | {cells} |")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
