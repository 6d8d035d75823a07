"""A receive-window clamp: a bpf classifier that lowers the window of the ACKs a port forwards (issue 16).

Why: the queue a flow keeps at the port's shaper is bounded by what its sender has in flight, and a
sender never has more in flight than the receiver's advertised window. The host cannot change the
sender's congestion control (BBR ignores CE marks, and drops cost it its rate: docs/benchmarks.md §11),
but it forwards the receiver's ACKs, so it can lower their window to about rate x (path RTT + target).

What the program does, for every IPv4/IPv6 TCP segment on the hook it is attached to (both directions
of the port, the tap's clsact ingress and egress; it never drops or classifies: TC_ACT_UNSPEC):
- on a SYN or SYN-ACK it records, per flow direction (LRU hash keyed by the 4-tuple as the segment
  travels), the window scale and MSS its sender announced (they apply to the windows that sender will
  advertise; a SYN-ACK without the scale option turns scaling off for both), and for a SYN without ACK
  the time it passed;
- on the first non-SYN segment of a direction that recorded a SYN time (the client's third ACK, which
  travels the same way as its SYN) it takes `now - SYN time` as the flow's path RTT through the host
  (whichever side is far, the handshake passes the host once each way: SYN out, SYN-ACK back, ACK out),
  and writes it to both directions' entries;
- on any later segment of a flow with a known RTT it computes W = rate x RTT + max(kmin x MSS, rate x
  target) — the path's BDP plus the queue allowed, never less than kmin segments (a receiver ACKs every
  second segment) — with the rate of the direction the window governs (the other one: the config slot
  given when loaded), rounds it *up* to the window scale (a window cut below a whole segment stalls the sender), and if the
  segment's window is larger rewrites it (bpf_skb_store_bytes) and fixes the TCP checksum
  (bpf_l4_csum_replace: a no-op on CHECKSUM_PARTIAL skbs, which is right, their checksum is not yet
  computed). The window is only ever lowered. A flow whose handshake it did not see is left alone.

The bytecode is in bpf_rwnd_program (bpf_police's encoder: no compiler on our hosts). A probe
(bench/rwnd_probe.py): the planner does not use it — one window per flow cannot bound several flows'
queue (docs/benchmarks.md §11, "A receive-window clamp").
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import struct
from dataclasses import dataclass

from vmqos.core.errors import KernelError
from vmqos.drivers.bpf_police import _MAP_CREATE, _MAP_LOOKUP, _MAP_TYPE_ARRAY, _MAP_UPDATE, _address, _bpf, _name, load_program
from vmqos.drivers.bpf_rwnd_program import (
    _MAP_TYPE_LRU_HASH, CLAMPED, CONFIG_SIZE, FLOW_SIZE, FLOWS, FROM, KEY_SIZE, TC_ACT_UNSPEC, TOWARDS, program,
)

PROGRAM_NAME = "vmqos_rwnd"
_GET_NEXT_KEY = 4
__all__ = ["FROM", "PROGRAM_NAME", "TC_ACT_UNSPEC", "TOWARDS", "ClampConfig", "ClampCounters", "Flow", "Loaded",
           "configure", "counters", "flows", "load"]


# -- maps, loading, reading back ------------------------------------------------------------------

@dataclass(frozen=True)
class ClampConfig:
    """One hook's clamp: the rate of the direction its windows govern (L2 bytes/s, 0 = leave alone),
    the queue allowed beyond the path RTT (ns), and the least window in segments of the flow's MSS."""

    rate_bytes: int
    target_ns: int
    kmin: int = 2

    def packed(self) -> bytes:
        return struct.pack("<QQQQQQ", self.rate_bytes, self.target_ns, self.kmin, 0, 0, 0)


@dataclass(frozen=True)
class ClampCounters:
    clamped: int  # segments whose window was lowered
    syns: int  # SYN / SYN-ACK segments recorded
    timed: int  # handshakes timed


@dataclass(frozen=True)
class Flow:
    """One direction of a flow the program saw the handshake of (addresses as the segment travels)."""

    src: str
    dst: str
    sport: int
    dport: int
    shift: int
    mss: int
    rtt_ns: int


@dataclass(frozen=True)
class Loaded:
    """The two programs (the port's egress: slot TOWARDS, its ingress: slot FROM) and their maps."""

    towards_fd: int
    from_fd: int
    flows_fd: int
    config_fd: int

    def close(self) -> None:
        for fd in (self.towards_fd, self.from_fd, self.flows_fd, self.config_fd):
            os.close(fd)


def _update(fd: int, key: bytes, value: bytes) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    _bpf(_MAP_UPDATE, struct.pack("<IIQQQ", fd, 0, _address(k), _address(v), 0))


def _lookup(fd: int, key: bytes, size: int) -> bytes:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(size)
    _bpf(_MAP_LOOKUP, struct.pack("<IIQQQ", fd, 0, _address(k), _address(v), 0))
    return v.raw


def configure(config_fd: int, slot: int, config: ClampConfig) -> None:
    """A slot's rate, target and floor, its counters kept (the program reads the map on every segment)."""
    key = struct.pack("<I", slot)
    raw = bytearray(_lookup(config_fd, key, CONFIG_SIZE))
    raw[0:24] = config.packed()[0:24]
    _update(config_fd, key, bytes(raw))


def counters(config_fd: int, slot: int) -> ClampCounters:
    raw = _lookup(config_fd, struct.pack("<I", slot), CONFIG_SIZE)
    clamped, syns, timed = struct.unpack_from("<QQQ", raw, CLAMPED)
    return ClampCounters(clamped, syns, timed)


def flows(flows_fd: int) -> list[Flow]:
    """Every flow direction in the map (BPF_MAP_GET_NEXT_KEY walk)."""
    out = []
    key = ctypes.create_string_buffer(KEY_SIZE)
    nxt = ctypes.create_string_buffer(KEY_SIZE)
    first = True
    while True:
        attr = struct.pack("<IIQQ", flows_fd, 0, 0 if first else _address(key), _address(nxt))
        try:
            _bpf(_GET_NEXT_KEY, attr)
        except OSError:
            break
        first = False
        ctypes.memmove(key, nxt, KEY_SIZE)
        raw = key.raw
        try:
            value = _lookup(flows_fd, raw, FLOW_SIZE)
        except OSError:
            continue
        shift, mss, _t_syn, rtt = struct.unpack("<QQQQ", value)
        v4 = raw[4:16] == bytes(12) and raw[20:32] == bytes(12)
        src = ipaddress.ip_address(raw[0:4] if v4 else raw[0:16])
        dst = ipaddress.ip_address(raw[16:20] if v4 else raw[16:32])
        sport, dport = struct.unpack(">HH", raw[32:36])
        out.append(Flow(str(src), str(dst), sport, dport, shift, mss, rtt))
    return out


def load(towards: ClampConfig, from_: ClampConfig) -> Loaded:
    """The maps (flows, config) and the two programs that share them; the caller closes them (a filter that
    holds a program keeps it and its maps alive)."""
    fds: list[int] = []
    try:
        flows_fd = _bpf(_MAP_CREATE, struct.pack("<IIIIIII", _MAP_TYPE_LRU_HASH, KEY_SIZE, FLOW_SIZE, FLOWS, 0, 0, 0)
                        + _name("vmqos_rwnd_flows"))
        fds.append(flows_fd)
        config_fd = _bpf(_MAP_CREATE, struct.pack("<IIIIIII", _MAP_TYPE_ARRAY, 4, CONFIG_SIZE, 2, 0, 0, 0)
                         + _name("vmqos_rwnd_cfg"))
        fds.append(config_fd)
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        raise KernelError(f"creating the window clamp's maps failed: {exc.strerror}; it needs CONFIG_BPF_SYSCALL "
                          "and root") from None
    try:
        configure(config_fd, TOWARDS, towards)
        configure(config_fd, FROM, from_)
        towards_fd = load_program(program(flows_fd, config_fd, TOWARDS), PROGRAM_NAME, "the window clamp")
        fds.append(towards_fd)
        from_fd = load_program(program(flows_fd, config_fd, FROM), PROGRAM_NAME, "the window clamp")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return Loaded(towards_fd, from_fd, flows_fd, config_fd)
