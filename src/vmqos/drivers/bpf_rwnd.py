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
  given when loaded), rounds it *up* to the window scale (a window cut below a whole segment stalls the sender) — or,
  where that would leave a last segment under SMALL_PARTIAL bytes (the sender splits it off, the sparse
  class sends it ahead of the full ones: reordering, and the RTT of 1 Mbit/s at 32 ms instead of 17),
  cuts it to whole segments and rounds *down* (`window_field`) — and if the segment's window is larger
  rewrites it (bpf_skb_store_bytes) and fixes the TCP checksum
  (bpf_l4_csum_replace: a no-op on CHECKSUM_PARTIAL skbs, which is right, their checksum is not yet
  computed). The window is only ever lowered. A flow whose handshake it did not see is left alone.

The bytecode is in bpf_rwnd_program (bpf_police's encoder: no compiler on our hosts). The planner
uses it for a port that opts in (`PortSpec.window_clamp`, `core.plan.queues.window_clamps`): one
`WindowClamp` per hook of the port's clsact, which `put` attaches (the second hook's program shares
the first one's maps) or, when it is there, changes in place by rewriting its config slot, the flows
kept; `observed` reads a hook back from its program's config slot. Opt-in because one window per flow
cannot bound several flows' queue (docs/benchmarks.md §11, "A receive-window clamp"), and because it
rewrites the tenant's TCP headers.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import struct
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.protocols import ETH_P_ALL

from vmqos.core.errors import KernelError
from vmqos.core.plan.handles import handle_int
from vmqos.core.plan.tc_objects import CLSACT_EGRESS, CLSACT_INGRESS, WindowClamp
from vmqos.drivers.bpf_police import (
    _MAP_CREATE, _MAP_GET_FD_BY_ID, _MAP_LOOKUP, _MAP_TYPE_ARRAY, _MAP_UPDATE, _OBJ_GET_INFO_BY_FD, _PROG_GET_FD_BY_ID,
    _address, _bpf, _name, load_program, program_id,
)
from vmqos.drivers.bpf_rwnd_program import (
    _MAP_TYPE_LRU_HASH, CLAMPED, CONFIG_SIZE, FLOW_SIZE, FLOWS, FROM, KEY_SIZE, NSEC, SMALL_PARTIAL, TC_ACT_UNSPEC,
    TIMESTAMPS_OPTION, TOWARDS, program,
)

PROGRAM_NAME = "vmqos_rwnd"
# The planner's two hooks' programs (and their filters) by slot: the name says which slot a program serves.
HOOK_NAMES = {TOWARDS: "vmqos_rwnd_to", FROM: "vmqos_rwnd_from"}
FLOWS_MAP, CONFIG_MAP = "vmqos_rwnd_flow", "vmqos_rwnd_cfg"  # map names: 15 bytes at most
_GET_NEXT_KEY = 4
__all__ = ["FROM", "HOOK_NAMES", "PROGRAM_NAME", "TC_ACT_UNSPEC", "TOWARDS", "ClampConfig", "ClampCounters", "Flow",
           "Loaded", "configure", "counters", "flows", "load", "observed", "prog_id", "put", "window_field"]


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


def window_field(rate_bytes: int, rtt_ns: int, target_ns: int, kmin: int, mss: int, shift: int) -> int:
    """The window field the program allows a flow (it never raises a smaller one), in the program's integer
    steps: W = rate x RTT + max(kmin x MSS, rate x target), rounded up to the window scale; but where that
    leaves fewer than SMALL_PARTIAL bytes beyond the last whole segment (a tiny segment the sender would
    split off, which the sparse class sends ahead of the full ones), whole segments rounded down instead."""
    field = (rate_bytes * rtt_ns // NSEC + max(kmin * mss, rate_bytes * target_ns // NSEC) + (1 << shift) - 1) >> shift
    payload = mss - TIMESTAMPS_OPTION
    if payload >= SMALL_PARTIAL:
        extra = (field << shift) % payload
        if 0 < extra < SMALL_PARTIAL and ((field << shift) - extra) >> shift << shift >= payload:
            field = ((field << shift) - extra) >> shift
    return field


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


def _create_maps() -> tuple[int, int]:
    """(flows_fd, config_fd): new, empty maps (an array's slots start at zero: rate 0 leaves windows alone)."""
    fds: list[int] = []
    try:
        fds.append(_bpf(_MAP_CREATE, struct.pack("<IIIIIII", _MAP_TYPE_LRU_HASH, KEY_SIZE, FLOW_SIZE, FLOWS, 0, 0, 0)
                        + _name(FLOWS_MAP)))
        fds.append(_bpf(_MAP_CREATE, struct.pack("<IIIIIII", _MAP_TYPE_ARRAY, 4, CONFIG_SIZE, 2, 0, 0, 0)
                        + _name(CONFIG_MAP)))
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        raise KernelError(f"creating the window clamp's maps failed: {exc.strerror}; it needs CONFIG_BPF_SYSCALL "
                          "and root") from None
    return fds[0], fds[1]


def load(towards: ClampConfig, from_: ClampConfig) -> Loaded:
    """The maps (flows, config) and the two programs that share them; the caller closes them (a filter that
    holds a program keeps it and its maps alive)."""
    flows_fd, config_fd = _create_maps()
    fds = [flows_fd, config_fd]
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


# -- the planner's clamp on a port's clsact (netlink), as bpf_police's put_program --------------------

def _slot(obj: WindowClamp) -> int:
    return TOWARDS if obj.parent == CLSACT_EGRESS else FROM


def prog_id(msg: Any) -> int | None:
    """The id of one of vmqos's clamp programs in a filter message of kind bpf; None for anyone else's."""
    return next((p for p in (program_id(msg, n) for n in HOOK_NAMES.values()) if p is not None), None)


def _maps_of(prog: int) -> tuple[int, int]:
    """(flows_fd, config_fd) of clamp program `prog`, by their names; the caller closes them."""
    return _program(prog)[1:]


def _program(prog: int) -> tuple[str, int, int]:
    """(name, flows_fd, config_fd) of clamp program `prog`; the caller closes the fds."""
    try:
        prog_fd = _bpf(_PROG_GET_FD_BY_ID, struct.pack("<III", prog, 0, 0))
    except OSError as exc:
        raise KernelError(f"window clamp program {prog} cannot be opened: {exc.strerror}") from None
    found: dict[str, int] = {}
    try:
        ids = ctypes.create_string_buffer(4 * 4)
        info = ctypes.create_string_buffer(struct.pack("<IIQIIQQQIIQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, _address(ids)), 96)
        _bpf(_OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", prog_fd, 96, _address(info)))
        count = min(struct.unpack_from("<I", info.raw, 52)[0], 4)
        name = info.raw[64:80].rstrip(b"\0").decode(errors="replace")
        for map_id in struct.unpack_from(f"<{count}I", ids.raw, 0):
            fd = _bpf(_MAP_GET_FD_BY_ID, struct.pack("<III", map_id, 0, 0))
            map_info = ctypes.create_string_buffer(88)
            try:
                _bpf(_OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", fd, 88, _address(map_info)))
            except OSError:
                os.close(fd)
                raise
            map_name = map_info.raw[24:40].rstrip(b"\0").decode(errors="replace")
            if map_name in found:
                os.close(fd)
            else:
                found[map_name] = fd
    except OSError as exc:
        for fd in found.values():
            os.close(fd)
        raise KernelError(f"the maps of window clamp program {prog} cannot be read: {exc.strerror}") from None
    finally:
        os.close(prog_fd)
    if set(found) != {FLOWS_MAP, CONFIG_MAP}:
        for fd in found.values():
            os.close(fd)
        raise KernelError(f"program {prog} does not hold the window clamp's maps ({sorted(found)})")
    return name, found[FLOWS_MAP], found[CONFIG_MAP]


def observed(dev: str, parent: str, prio: int, protocol: str, program: int) -> WindowClamp:
    """The clamp a hook holds, as its config slot says. The slot a program reads is in its bytecode, and
    its name says which: the other hook's program on this one reads as an empty clamp (a change to make,
    which attaches the right one)."""
    name, flows_fd, config_fd = _program(program)
    os.close(flows_fd)
    slot = TOWARDS if parent == CLSACT_EGRESS else FROM
    try:
        raw = _lookup(config_fd, struct.pack("<I", slot), CONFIG_SIZE)
    finally:
        os.close(config_fd)
    rate, target, kmin = struct.unpack_from("<QQQ", raw, 0) if name == HOOK_NAMES[slot] else (0, 0, 0)
    return WindowClamp(dev, parent, prio, protocol, rate_bytes=rate, target_ns=target, kmin=kmin)


def _hook_program(ipr: Any, idx: int, parent: str, prio: int, name: str) -> int | None:
    for msg in ipr.get_filters(index=idx, parent=handle_int(parent)):
        if msg["info"] >> 16 == prio and msg.get_attr("TCA_KIND") == "bpf":
            found = program_id(msg, name)
            if found is not None:
                return found
    return None


def put(ipr: Any, idx: int, obj: WindowClamp) -> None:
    """Make `obj` what the hook holds: the running program's config slot rewritten in place when it is
    there (the flows and their RTTs kept), else its program attached, sharing the other hook's maps when
    that one is there (the two hooks time a flow's handshake together)."""
    slot, config = _slot(obj), ClampConfig(obj.rate_bytes, obj.target_ns, obj.kmin)
    name = HOOK_NAMES[slot]
    try:
        running = _hook_program(ipr, idx, obj.parent, obj.prio, name)
        other = _hook_program(ipr, idx, CLSACT_INGRESS if slot == TOWARDS else CLSACT_EGRESS, obj.prio,
                              HOOK_NAMES[FROM if slot == TOWARDS else TOWARDS])
    except NetlinkError as exc:
        raise KernelError(f"reading the filters for {obj.describe()}: {os.strerror(exc.code)}", errno=exc.code) from None
    if running is not None:
        flows_fd, config_fd = _maps_of(running)
    elif other is not None:
        flows_fd, config_fd = _maps_of(other)
    else:
        flows_fd, config_fd = _create_maps()
    try:
        try:
            configure(config_fd, slot, config)
        except OSError as exc:
            raise KernelError(f"changing {obj.describe()}: {exc.strerror}") from None
        if running is not None:
            return
        prog_fd = load_program(program(flows_fd, config_fd, slot), name, "the window clamp")
        try:
            ipr.tc("replace-filter", "bpf", idx, 1, parent=handle_int(obj.parent), prio=obj.prio,
                   protocol=ETH_P_ALL, fd=prog_fd, name=name, direct_action=True)
        except NetlinkError as exc:
            raise KernelError(f"attaching {obj.describe()}: {os.strerror(exc.code)}", errno=exc.code) from None
        finally:
            os.close(prog_fd)
    finally:
        os.close(flows_fd)
        os.close(config_fd)  # the filter holds the program, the program its maps
