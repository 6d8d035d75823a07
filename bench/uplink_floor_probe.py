#!/usr/bin/env python3
"""Guaranteed minimums on a shared uplink, by hand: does this kernel hold them? (issue 16, design probe)

Usage (as root, from the repository root, under the kernel lock):

    flock /tmp/vmqos-kernel.lock .venv/bin/python bench/uplink_floor_probe.py

Not yet vmqos's planner: the tc and nft objects a plan for the host's uplink would hold, written
out, on a lab `vqf<hex>` of 3 instances whose host namespace reaches the wan through `wan0`
(capacity 100 Mbit/s). Guarantees 50 / 30 / 0 Mbit/s for vm1 / vm2 / vm3; each class's ceil is
the capacity; the instance without a guarantee sits in the default class, whose rate is what the
guarantees leave (20 Mbit/s), so surplus is lent by the ratio of the rates, as libvirt's floor does.

  from the instances  HTB on wan0's root. The port identifies the sender: each tap's nft ingress
                      hook sets skb->mark (0x101..), wan0's nft egress hook turns the mark into
                      skb->priority = the class (HTB reads it before any filter). The priority cannot
                      be set at the tap: IPv4 forwarding resets it from the TOS; the mark survives.
  to the instances    wan0's nft ingress hook forwards to an IFB with the same tree, classified by
                      destination address with u32 (IPv4 /32; IPv6 /128 the same way)

Each case runs one TCP flow (cubic) per sending instance for 5 s at once and reads each receiver's
rate from 1.5 s on (frame rate = goodput / 0.956). Prints one line per case and a JSON document.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack

from vmqos.core.plan.planner import KernelProfile, leaf_queue
from vmqos.lab import Lab, lab_down, lab_up

MBIT = 1_000_000
CAPACITY = 100 * MBIT
GUARANTEES = {1: 50 * MBIT, 2: 30 * MBIT, 3: 0}
IFB = "vqfifb0"
SECONDS = 5


def sh(ns: str, cmd: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", cmd], capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise RuntimeError(f"{cmd}: {done.stderr.strip()}")
    return done.stdout


def tree(ns: str, dev: str) -> None:
    rest = CAPACITY - sum(GUARANTEES.values())
    sh(ns, f"tc qdisc add dev {dev} root handle 1: htb default 10")
    sh(ns, f"tc class add dev {dev} parent 1: classid 1:1 htb rate {CAPACITY} ceil {CAPACITY} burst 125000 "
           f"cburst 125000 quantum 60000")
    classes = {0x10: rest, **{0x100 + i: g for i, g in GUARANTEES.items() if g}}
    top = max(classes.values())
    for minor, rate in classes.items():
        quantum = max(int(60000 * rate / top), 1514)  # in the ratio of the rates (planner.shared_quanta)
        sh(ns, f"tc class add dev {dev} parent 1:1 classid 1:{minor:x} htb rate {rate} ceil {CAPACITY} "
               f"burst 15140 cburst 15140 quantum {quantum}")
        q = leaf_queue(dev, f"1:{minor:x}", minor, CAPACITY, 125000, 1500, KernelProfile())
        sh(ns, f"tc qdisc add dev {dev} parent 1:{minor:x} handle {minor:x}: bfifo limit {q.limit_bytes}")


def setup(lab: Lab) -> None:
    h = lab.host_ns
    tree(h, "wan0")
    sh(h, f"ip link add {IFB} type ifb && ip link set {IFB} up")
    tree(h, IFB)
    for i, g in GUARANTEES.items():
        if g:
            sh(h, f"tc filter add dev {IFB} parent 1: protocol ip prio {i} u32 match ip dst "
                  f"{lab.instance(i).address}/32 flowid 1:{0x100 + i:x}")
    marks = "\n".join(f'  chain from_vm{i} {{ type filter hook ingress device "{lab.instance(i).port}" priority -500; '
                      f"policy accept; meta mark set {0x100 + i:#x}; }}" for i in GUARANTEES)
    prios = "\n".join(f"    meta mark {0x100 + i:#x} meta priority set 1:{0x100 + i:x}"
                      for i, g in GUARANTEES.items() if g)
    script = (f"table netdev vqfloor {{\n{marks}\n"
              f'  chain up_out {{ type filter hook egress device "wan0" priority 0; policy accept;\n{prios}\n  }}\n'
              f'  chain up_in {{ type filter hook ingress device "wan0" priority -500; policy accept; '
              f'fwd to "{IFB}"; }}\n}}\n')
    subprocess.run(["ip", "netns", "exec", h, "nft", "-f", "-"], input=script, text=True, check=True)


def flows(lab: Lab, senders: list[int], direction: str) -> dict[int, float]:
    with ExitStack() as stack:
        procs = {}
        for i in senders:
            vm = lab.instance(i)
            port = str(5300 + i)
            recv_ns = vm.netns if direction == "to" else lab.wan_ns
            send_ns, addr = (lab.wan_ns, vm.address) if direction == "to" else (vm.netns, lab.wan_address)
            srv = subprocess.Popen(["ip", "netns", "exec", recv_ns, "iperf3", "-s", "-1", "-J", "-i", "0.5", "-p", port],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            stack.callback(lambda p=srv: p.poll() is None and p.kill())
            procs[i] = (srv, send_ns, addr, port)
        time.sleep(0.4)
        clients = {}
        for i, (srv, send_ns, addr, port) in procs.items():
            cli = subprocess.Popen(["ip", "netns", "exec", send_ns, "iperf3", "-c", addr, "-p", port, "-t",
                                    str(SECONDS), "-J", "-C", "cubic"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            stack.callback(lambda p=cli: p.poll() is None and p.kill())
            clients[i] = cli
        for cli in clients.values():
            cli.communicate(timeout=SECONDS + 30)
        rates = {}
        for i, (srv, *_rest) in procs.items():
            got = json.loads(srv.communicate(timeout=30)[0])
            late = [x["sum"] for x in got["intervals"] if x["sum"]["start"] >= 1.49]
            rates[i] = sum(x["bytes"] for x in late) * 8 / sum(x["seconds"] for x in late) / (1448 / 1514)
        return rates


def main() -> int:
    name = f"vqf{uuid.uuid4().hex[:4]}"
    lab = Lab(name)
    out = []
    try:
        status = lab_up(name, 3)
        assert not status.problems, status.problems
        setup(lab)
        for direction in ("to", "from"):
            for senders in ([1, 2, 3], [2, 3], [1, 3]):
                rates = flows(lab, senders, direction)
                line = ", ".join(f"vm{i} (guarantee {GUARANTEES[i] // MBIT}) {r / MBIT:.1f}" for i, r in rates.items())
                print(f"{direction} the instances, {len(senders)} sending: {line}; "
                      f"sum {sum(rates.values()) / MBIT:.1f} of {CAPACITY // MBIT} Mbit/s", flush=True)
                out.append({"direction": direction, "senders": senders, "rates_bps": {str(k): round(v) for k, v in rates.items()}})
    finally:
        lab_down(name)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
