#!/usr/bin/env python3
"""The window clamp's known failure: a path whose RTT grows after the flow's handshake (issue 16).

Usage (as root, from the repository root, under the kernel lock on a shared machine):

    flock /tmp/vmqos-kernel.lock .venv/bin/python bench/clamp_rtt_growth.py --rates 3 10 --delay-ms 20

A throw-away lab `vqcg<hex>` with one instance; vm1's port shaped towards the instance at each rate, with
and without `window_clamp`. One cubic flow wan -> vm1 for --seconds; bench/rwnd_delay.py in the wan
namespace starts at no delay (the handshake's RTT is the lab's 0.1 ms) and, --grow-at seconds into the
flow, delays every packet from the instances by --delay-ms: vm1's ACKs, so the sender's RTT grows by that
much. The clamp's windows were sized for the handshake's RTT. Printed per run: the frame rate before
the growth (goodput / 0.956 from 1 s to --grow-at) and after it (from --grow-at + 1 s to the end),
against the limit. One JSON object a line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from apply_bench import exit_on_sigterm  # a forked child must not run this process's cleanup
from vmqos.core.desired.ports import PortChange
from vmqos.core.model.host import EgressMode, Policy
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.lab import Lab, lab_down, lab_up
from vmqos.services.ports import clear_port, set_port
from vmqos.store import Store

MBIT = 1_000_000
GOODPUT_PER_FRAME = 1448 / 1514


def one_run(lab: Lab, store: Store, rate: int, clamp: bool, args: argparse.Namespace) -> dict[str, object]:
    vm = lab.instance(1)
    qos = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(rate)))
    report = set_port(store, lab.host_ns, vm.port, PortChange(policy=Policy(f"cg-{uuid.uuid4().hex[:6]}", qos),
                                                             egress_mode=EgressMode.SHAPE, window_clamp=clamp))
    assert report is not None and report.ok, report
    line = subprocess.Popen(["ip", "netns", "exec", lab.wan_ns, sys.executable, str(Path(__file__).with_name(
        "rwnd_delay.py")), "--delay-ms", f"{args.delay_ms:g}", "--on-signal"], stdout=subprocess.PIPE, text=True)
    server = None
    try:
        assert line.stdout is not None and line.stdout.readline().strip() == "ready"
        server = subprocess.Popen(["ip", "netns", "exec", vm.netns, "iperf3", "-s", "-1", "-J", "-i", "0.1"],
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        client = subprocess.Popen(["ip", "netns", "exec", lab.wan_ns, "iperf3", "-c", vm.address, "-t",
                                   f"{args.seconds:g}", "-J", "-C", "cubic"], stdout=subprocess.PIPE, text=True)
        time.sleep(args.grow_at)
        line.send_signal(signal.SIGUSR1)
        client.communicate(timeout=args.seconds + 30)
        got = json.loads(server.communicate(timeout=30)[0])
    finally:
        for proc in (server, line):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        clear_port(store, lab.host_ns, vm.port)
    intervals = [i["sum"] for i in got["intervals"]]

    def frame_rate(start: float, end: float) -> float:
        part = [i for i in intervals if i["start"] >= start - 1e-3 and i["end"] <= end + 1e-3]
        return sum(i["bytes"] for i in part) * 8 / sum(i["seconds"] for i in part) / GOODPUT_PER_FRAME

    before, after = frame_rate(1.0, args.grow_at), frame_rate(args.grow_at + 1.0, args.seconds)
    return {"mbit": rate / MBIT, "clamp": clamp, "delay_ms": args.delay_ms,
            "before_pct": round(100 * (before - rate) / rate, 1), "after_pct": round(100 * (after - rate) / rate, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[3.0, 10.0])
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--grow-at", type=float, default=3.0)
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    exit_on_sigterm(143)
    name = f"vqcg{uuid.uuid4().hex[:4]}"
    lab = Lab(name)
    store = Store(f"sqlite:///file:{name}?mode=memory&cache=shared&uri=true")
    try:
        status = lab_up(name, 1)
        assert not status.problems, status.problems
        for _ in range(args.reps):
            for mbit in args.rates:
                for clamp in (False, True):
                    print(json.dumps(one_run(lab, store, int(mbit * MBIT), clamp, args)), flush=True)
    finally:
        store.close()
        lab_down(name)
        shutil.rmtree(f"file:{name}?mode=memory&cache=shared&uri=true.locks", ignore_errors=True)
        shutil.rmtree(f"file:{name}.locks", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
