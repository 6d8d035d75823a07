#!/usr/bin/env python3
"""A delay line for the lab's wan namespace, since this kernel has no netem (nor etf, taprio, plug).

Run inside the wan namespace (rwnd_probe.py starts it: `ip netns exec LAB-wan python rwnd_delay.py`):
IPv4 packets that reach the wan's `eth0` from the instances' subnet are redirected at its tc ingress
(u32 + mirred) to a tun device `vqdl0` this process owns, held for --delay-ms, and written back into the
tun, so the wan's stack receives them --delay-ms later (rp_filter off in this namespace: they come in
on vqdl0). One direction delayed is enough to add the delay to every round trip through the port.
With --on-signal the line starts at no delay and takes --delay-ms at SIGUSR1: a path whose RTT grows
after a flow's handshake (bench/clamp_rtt_growth.py). SIGTERM removes the ingress qdisc; the tun goes
with the process.
"""

from __future__ import annotations

import argparse
import collections
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import time

TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
DEV = "vqdl0"


def sh(cmd: str) -> None:
    subprocess.run(["sh", "-c", cmd], check=True, capture_output=True, text=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--dev", default="eth0")
    parser.add_argument("--src", default="10.247.0.0/25", help="the instances' subnet (lab/topology.py)")
    parser.add_argument("--on-signal", action="store_true", help="no delay until SIGUSR1, then --delay-ms")
    args = parser.parse_args()
    delay = [0.0 if args.on_signal else args.delay_ms / 1000]
    signal.signal(signal.SIGUSR1, lambda *_: delay.__setitem__(0, args.delay_ms / 1000))
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", DEV.encode(), IFF_TUN | IFF_NO_PI))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        sh(f"ip link set {DEV} up")
        for conf in ("all", "default", DEV, args.dev):
            sh(f"sysctl -qw net.ipv4.conf.{conf}.rp_filter=0")
        sh(f"tc qdisc add dev {args.dev} ingress")
        sh(f"tc filter add dev {args.dev} parent ffff: protocol ip prio 1 u32 match ip src {args.src} "
           f"action mirred egress redirect dev {DEV}")
        print("ready", flush=True)
        held: collections.deque[tuple[float, bytes]] = collections.deque()
        while not stop:
            now = time.monotonic()
            wait = max(0.0, held[0][0] - now) if held else 0.2
            try:
                readable, _, _ = select.select([fd], [], [], wait)
            except InterruptedError:
                continue
            now = time.monotonic()
            while readable:
                try:
                    held.append((now + delay[0], os.read(fd, 65536)))
                except BlockingIOError:
                    break
            while held and held[0][0] <= now:
                os.write(fd, held.popleft()[1])
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", args.dev, "ingress"], capture_output=True)
        os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
