#!/usr/bin/env python3
"""Guaranteed minimums on the uplink through vmqos's own plan (issue 16), with a baseline in the same run.

Usage (as root, from the repository root, under the kernel lock):

    flock /tmp/vmqos-kernel.lock .venv/bin/python bench/uplink_floor_bench.py [--reps 3] [--seconds 5]

A lab `vqb<hex>` of 3 instances; a host file with `uplink: {device: wan0, capacity: 100mbit}` and
guarantees 50 / 30 / 0 Mbit/s for vm1 / vm2 / vm3 (both directions), applied with `apply_host` as
`vmqos apply` does. The baseline is the same uplink without guarantees (the capacity shaped, every
port in the default class). Each case runs one cubic TCP flow per sending instance (vm3, without a
guarantee, four) for `--seconds` at once and reads each receiver's L2 frame rate from 1.5 s on.
Prints one line per case and run, then the medians as a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory

from vmqos.core.formats.hostfile import read_host
from vmqos.lab import Lab, lab_down, lab_up
from vmqos.services.ports import apply_host
from vmqos.store import Store

MBIT = 1_000_000
GUARANTEE = {1: 50, 2: 30, 3: 0}
V6_NET, V6_WAN = "fd00:247::", "fd00:247:1::"
PER_FRAME = {4: 1448 / 1514, 6: 1428 / 1514}
CASES = [  # (name, senders, towards, family)
    ("all sending", [1, 2, 3], True, 4), ("all sending", [1, 2, 3], False, 4),
    ("vm1 idle", [2, 3], True, 4), ("vm1 idle", [2, 3], False, 4),
    ("vm2 idle", [1, 3], True, 4), ("vm2 idle", [1, 3], False, 4),
    ("vm1 against vm3, IPv6", [1, 3], True, 6), ("vm1 against vm3, IPv6", [1, 3], False, 6),
]


def sh(ns: str, cmd: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", cmd], check=True, capture_output=True, timeout=30)


def host_file(lab: Lab, guarantees: bool) -> str:
    ports = "".join(f"  vm{i}:\n    ports: [{{device: {lab.instance(i).port}"
                    + (f", policy: g{i}" if guarantees and g else "")
                    + f", addresses: [{lab.instance(i).address}, '{V6_NET}{10 + i}']}}]\n"
                    for i, g in GUARANTEE.items())
    policies = "".join(f"  g{i}: {{ingress: {{min: {g}mbit}}, egress: {{min: {g}mbit}}}}\n"
                       for i, g in GUARANTEE.items() if g)
    return f"version: 1\nuplink: {{device: wan0, capacity: 100mbit}}\npolicies:\n{policies}instances:\n{ports}"


def add_ipv6(lab: Lab) -> None:
    sh(lab.host_ns, f"sysctl -qw net.ipv6.conf.all.forwarding=1; ip -6 addr add {V6_NET}1/64 dev br-int nodad; "
                    f"ip -6 addr add {V6_WAN}1/64 dev wan0 nodad")
    for i in GUARANTEE:
        sh(lab.instance(i).netns, f"ip -6 addr add {V6_NET}{10 + i}/64 dev eth0 nodad; "
                                  f"ip -6 route add default via {V6_NET}1")
    sh(lab.wan_ns, f"ip -6 addr add {V6_WAN}2/64 dev eth0 nodad; ip -6 route add default via {V6_WAN}1")


def flows(lab: Lab, senders: list[int], towards: bool, family: int, seconds: int) -> dict[int, float]:
    with ExitStack() as stack:
        servers = {}
        for i in senders:
            ns = lab.instance(i).netns if towards else lab.wan_ns
            srv = subprocess.Popen(["ip", "netns", "exec", ns, "iperf3", "-s", "-1", "-J", "-i", "0.5", "-p",
                                    str(5300 + i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            stack.callback(lambda p=srv: p.poll() is None and p.kill())
            servers[i] = srv
        time.sleep(0.4)
        clients = []
        for i in senders:
            vm = lab.instance(i)
            target = (vm.address if family == 4 else f"{V6_NET}{10 + i}") if towards else \
                (lab.wan_address if family == 4 else f"{V6_WAN}2")
            ns = lab.wan_ns if towards else vm.netns
            cli = subprocess.Popen(["ip", "netns", "exec", ns, "iperf3", "-c", target, "-p", str(5300 + i), "-t",
                                    str(seconds), "-J", "-C", "cubic", "-P", "4" if i == 3 else "1"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            stack.callback(lambda p=cli: p.poll() is None and p.kill())
            clients.append(cli)
        for cli in clients:
            cli.communicate(timeout=seconds + 30)
        rates = {}
        for i, srv in servers.items():
            got = json.loads(srv.communicate(timeout=30)[0])
            late = [x["sum"] for x in got["intervals"] if x["sum"]["start"] >= 1.49]
            rates[i] = sum(x["bytes"] for x in late) * 8 / sum(x["seconds"] for x in late) / PER_FRAME[family]
        return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    name = f"vqb{uuid.uuid4().hex[:4]}"
    lab = Lab(name)
    results: dict[tuple[str, str, bool, int], list[dict[int, float]]] = {}
    with TemporaryDirectory(prefix="vq-uplink-bench-") as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'vq.db'}")
        try:
            status = lab_up(name, 3)
            assert not status.problems, status.problems
            add_ipv6(lab)
            for rep in range(args.reps):
                for mode in ("guarantees", "baseline"):
                    report = apply_host(store, lab.host_ns, read_host(host_file(lab, mode == "guarantees")))
                    assert report.ok, [r.error for r in report.results if r.error]
                    for case, senders, towards, family in CASES:
                        if mode == "baseline" and case not in ("all sending", "vm1 against vm3, IPv6"):
                            continue
                        rates = flows(lab, senders, towards, family, args.seconds)
                        results.setdefault((mode, case, towards, family), []).append(rates)
                        shown = ", ".join(f"vm{i} {r / MBIT:.1f}" for i, r in rates.items())
                        print(f"run {rep + 1} {mode}: {case}, {'towards' if towards else 'from'} the instances: "
                              f"{shown}; sum {sum(rates.values()) / MBIT:.1f}", flush=True)
            apply_host(store, lab.host_ns, read_host("version: 1\n"), prune=True)
        finally:
            store.close()
            lab_down(name)
    print("\n| plan | case | direction | vm1 (50) | vm2 (30) | vm3 (0, 4 flows) | sum |")
    print("|---|---|---|---|---|---|---|")
    for (mode, case, towards, _family), runs in results.items():
        cells = []
        for i in GUARANTEE:
            got = [r[i] for r in runs if i in r]
            cells.append(f"{statistics.median(got) / MBIT:.1f}" if got else "–")
        total = statistics.median(sum(r.values()) for r in runs) / MBIT
        print(f"| {mode} | {case} | {'towards' if towards else 'from'} the instances | {' | '.join(cells)} | "
              f"{total:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
