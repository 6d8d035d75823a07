"""Play a VM on a real tap: write Ethernet/IPv4/UDP frames to /dev/net/tun as fast as possible.

Run inside the namespace that holds the tap (`ip netns exec LAB-host python3 tap_writer.py ...`).
Prints `started` once the tap is attached (its carrier is then up), and at the end one JSON line:
{"frames": N, "seconds": S, "frame_bytes": B}. Standard library only.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import socket
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def frame(dst_mac: str, src_mac: str, src_ip: str, dst_ip: str, payload_len: int, sport: int = 40000,
          dport: int = 9) -> bytes:
    payload = bytes(i & 0xFF for i in range(payload_len))
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    udp_len = 8 + payload_len
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_UDP, udp_len)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    udp_sum = checksum(pseudo + udp) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, udp_len, udp_sum) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0x1234, 0x4000, 64, socket.IPPROTO_UDP, 0, src, dst)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return mac(dst_mac) + mac(src_mac) + struct.pack("!H", 0x0800) + header + udp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", required=True)
    parser.add_argument("--dst-mac", required=True)
    parser.add_argument("--src-mac", required=True)
    parser.add_argument("--src-ip", required=True)
    parser.add_argument("--dst-ip", required=True)
    parser.add_argument("--payload", type=int, default=22, help="UDP payload bytes (22: a 64-byte frame)")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    data = frame(args.dst_mac, args.src_mac, args.src_ip, args.dst_ip, args.payload)
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", args.device.encode(), IFF_TAP | IFF_NO_PI))
        print("started", flush=True)
        write = os.write
        frames = 0
        start = time.monotonic()
        end = start + args.seconds
        now = start
        while now < end:
            for _ in range(256):
                write(fd, data)
            frames += 256
            now = time.monotonic()
        elapsed = now - start
    finally:
        os.close(fd)
    print(json.dumps({"frames": frames, "seconds": elapsed, "frame_bytes": len(data)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
