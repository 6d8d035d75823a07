"""An AQM at enqueue over a virtual queue: a bpf classifier on a port's HTB root (issue 16).

This kernel has no fq_codel, codel, pie or cake, and a drop-tail leaf short enough for 30 ms at
1 Mbit/s costs BBR 12-90 % of its rate (docs/benchmarks.md §11). The HTB leaf drains at a known
rate (the port's ceil, when it is the bottleneck), so a program that sees every bulk packet the
port enqueues can keep the queue's state itself: a mirror of the HTB's token bucket, GCRA style
as the police program (`tat`, the time the queue would be empty; `tau`, the bucket's credit),
and so the sojourn time a packet enqueued now will see: `max(tat, now - tau) - now`. Over that
virtual sojourn it runs CoDel's control law: when the sojourn has stayed above `target` for an
`interval`, it signals one packet, then the next ones `interval / sqrt(count)` apart, until the
sojourn falls below the target. A signal is a CE mark on an ECN-capable packet (when the map's
ECN flag is on) or, when the drop flag is on, a drop (TC_ACT_SHOT: HTB frees the packet before any class and counts it in
the root qdisc's drops). A packet that passes continues to the next filter (TC_ACT_UNSPEC), so the
program sits behind the sparse and class filters without classifying anything itself.

The cost of a packet is `wire_len` (qdisc_skb_cb's pkt_len: what HTB charges, GSO headers of
every segment included). The classifier runs inside htb_enqueue under the qdisc's lock, so the
state needs no atomics. The map is one array entry that vmqos rewrites in place: a live rate
change keeps `tat` (the backlog carried in bytes, as bpf_police's `carried_tat`).

Bytecode is assembled here with bpf_police's encoder (no compiler on our hosts).
"""

from __future__ import annotations

import ctypes
import math
import os
import struct
import time
from dataclasses import dataclass
from typing import Any

from vmqos.core.errors import KernelError
from vmqos.core.plan.tc_objects import Aqm
from vmqos.drivers.bpf_police import (
    _MAP_CREATE, _MAP_LOOKUP, _MAP_TYPE_ARRAY, _MAP_UPDATE, NSEC, _address, _bpf, _name,
    Assembler, load_program, map_of, program_id, put_program,
)

PROGRAM_NAME = "vmqos_aqm"
_R0, _R1, _R2, _R3, _R4, _R5, _R6, _R7, _R8, _R9, _R10 = range(11)

# eBPF opcodes (ALU64 / JMP / memory), include/uapi/linux/bpf.h
_MOV_X, _MOV_K, _ADD_K, _ADD_X, _SUB_X, _MUL_K, _DIV_X, _AND_K, _LSH_K = 0xBF, 0xB7, 0x07, 0x0F, 0x1F, 0x27, 0x3F, 0x57, 0x67
_LDX_W, _LDX_DW, _STX_DW, _ST_DW = 0x61, 0x79, 0x7B, 0x7A
_JA, _JEQ_K, _JNE_K, _JGE_X, _JGT_X, _JLT_X, _JLE_X, _JSET_K, _JGE_K = 0x05, 0x15, 0x55, 0x3D, 0x2D, 0xAD, 0xBD, 0x45, 0x35
_CALL, _EXIT = 0x85, 0x95
_LOOKUP, _KTIME, _ECN_SET_CE = 1, 5, 97
_SKB_LEN, _SKB_WIRE_LEN = 0, 160  # offsets in struct __sk_buff
TC_ACT_UNSPEC, TC_ACT_SHOT = -1, 2

# the map value: u64 fields at these offsets; config first (vmqos writes it), then state
RATE, TARGET, INTERVAL, TAU, FLAGS = 0, 8, 16, 24, 32
TAT, FIRST_ABOVE, DROP_NEXT, COUNT, DROPPING, DROPS, MARKS = 40, 48, 56, 64, 72, 80, 88
SPACING = 96  # 16 x u64: interval / sqrt(n) for count n = 1..16
STEPS = 16
BUCKET = SPACING + 8 * STEPS  # the bucket in bytes, as vmqos asked (tau is its time at the rate)
VALUE_SIZE = BUCKET + 8
FLAG_ECN = 1  # mark ECT packets CE
FLAG_DROP = 2  # drop what is not marked


def program(map_fd: int) -> bytes:
    asm = Assembler()
    at, emit, jump = asm.at, asm.emit, asm.jump

    emit(_MOV_X, _R6, _R1)  # ctx
    emit(0x62, _R10, 0, -4, 0)  # *(u32 *)(fp - 4) = 0: the key
    emit(_MOV_X, _R2, _R10)
    emit(_ADD_K, _R2, imm=-4)
    emit(0x18, _R1, 1, 0, map_fd)  # ld_imm64 r1 = map (BPF_PSEUDO_MAP_FD)
    emit(0, 0, 0, 0, 0)
    emit(_CALL, imm=_LOOKUP)
    jump(_JEQ_K, _R0, 0, 0, "pass")
    emit(_MOV_X, _R9, _R0)  # the map value
    emit(_LDX_DW, _R7, _R9, RATE)
    jump(_JEQ_K, _R7, 0, 0, "pass")
    emit(_CALL, imm=_KTIME)
    emit(_MOV_X, _R8, _R0)  # now
    emit(_LDX_W, _R3, _R6, _SKB_WIRE_LEN)
    jump(_JNE_K, _R3, 0, 0, "have_len")
    emit(_LDX_W, _R3, _R6, _SKB_LEN)
    at("have_len")
    emit(_MUL_K, _R3, imm=NSEC)
    emit(_DIV_X, _R3, _R7)  # r3 = cost, ns
    emit(_LDX_DW, _R1, _R9, TAU)
    emit(_MOV_X, _R2, _R8)
    emit(_SUB_X, _R2, _R1)  # now - tau: the bucket is full below it
    emit(_LDX_DW, _R4, _R9, TAT)
    jump(_JGE_X, _R4, _R2, 0, "based")
    emit(_MOV_X, _R4, _R2)
    at("based")  # r4 = max(tat, now - tau)
    emit(_MOV_X, _R7, _R4)
    emit(_ADD_X, _R7, _R3)  # r7 = tat if this packet is enqueued
    emit(_MOV_K, _R5, imm=0)
    jump(_JLE_X, _R4, _R8, 0, "sojourn")
    emit(_MOV_X, _R5, _R4)
    emit(_SUB_X, _R5, _R8)
    at("sojourn")  # r5 = the virtual sojourn of this packet, ns
    emit(_LDX_DW, _R1, _R9, TARGET)
    jump(_JGE_X, _R5, _R1, 0, "above")
    emit(_ST_DW, _R9, 0, FIRST_ABOVE, 0)
    emit(_ST_DW, _R9, 0, DROPPING, 0)
    jump(_JA, 0, 0, 0, "enqueue")
    at("above")
    emit(_LDX_DW, _R1, _R9, FIRST_ABOVE)
    jump(_JNE_K, _R1, 0, 0, "have_first")
    emit(_LDX_DW, _R1, _R9, INTERVAL)
    emit(_ADD_X, _R1, _R8)
    emit(_STX_DW, _R9, _R1, FIRST_ABOVE)
    jump(_JA, 0, 0, 0, "enqueue")
    at("have_first")
    jump(_JLT_X, _R8, _R1, 0, "enqueue")  # above the target for less than an interval
    emit(_LDX_DW, _R1, _R9, DROPPING)
    jump(_JNE_K, _R1, 0, 0, "dropping")
    emit(_ST_DW, _R9, 0, DROPPING, 1)
    emit(_ST_DW, _R9, 0, COUNT, 1)
    jump(_JA, 0, 0, 0, "signal")
    at("dropping")
    emit(_LDX_DW, _R1, _R9, DROP_NEXT)
    jump(_JLT_X, _R8, _R1, 0, "enqueue")
    emit(_LDX_DW, _R1, _R9, COUNT)
    jump(_JGE_K, _R1, 0, STEPS, "signal")
    emit(_ADD_K, _R1, imm=1)
    emit(_STX_DW, _R9, _R1, COUNT)
    at("signal")
    emit(_LDX_DW, _R1, _R9, COUNT)
    emit(_ADD_K, _R1, imm=-1)
    emit(_AND_K, _R1, imm=STEPS - 1)
    emit(_LSH_K, _R1, imm=3)
    emit(_MOV_X, _R2, _R9)
    emit(_ADD_X, _R2, _R1)
    emit(_LDX_DW, _R2, _R2, SPACING)
    emit(_ADD_X, _R2, _R8)
    emit(_STX_DW, _R9, _R2, DROP_NEXT)
    emit(_LDX_DW, _R1, _R9, FLAGS)
    jump(_JSET_K, _R1, 0, FLAG_ECN, "try_mark")
    jump(_JA, 0, 0, 0, "maybe_drop")
    at("try_mark")
    emit(_MOV_X, _R1, _R6)
    emit(_CALL, imm=_ECN_SET_CE)
    jump(_JEQ_K, _R0, 0, 0, "maybe_drop")  # not ECN-capable
    emit(_LDX_DW, _R1, _R9, MARKS)
    emit(_ADD_K, _R1, imm=1)
    emit(_STX_DW, _R9, _R1, MARKS)
    jump(_JA, 0, 0, 0, "enqueue")
    at("maybe_drop")
    emit(_LDX_DW, _R1, _R9, FLAGS)
    jump(_JSET_K, _R1, 0, FLAG_DROP, "drop")
    jump(_JA, 0, 0, 0, "enqueue")  # mark-only: a packet that cannot be marked passes
    at("drop")
    emit(_LDX_DW, _R1, _R9, DROPS)
    emit(_ADD_K, _R1, imm=1)
    emit(_STX_DW, _R9, _R1, DROPS)
    emit(_MOV_K, _R0, imm=TC_ACT_SHOT)
    emit(_EXIT)
    at("enqueue")
    emit(_STX_DW, _R9, _R7, TAT)
    at("pass")
    emit(_MOV_K, _R0, imm=TC_ACT_UNSPEC)
    emit(_EXIT)
    return asm.link()


@dataclass(frozen=True)
class AqmConfig:
    """What the program holds: the queue's drain rate (L2 bytes/s), its bucket (bytes of credit, the
    HTB class's cburst), CoDel's target and interval (ns), and whether ECT packets are marked."""

    rate_bytes: int
    bucket_bytes: int
    target_ns: int
    interval_ns: int
    ecn: bool = False
    drop: bool = True

    def packed(self) -> bytes:
        tau = self.bucket_bytes * NSEC // self.rate_bytes
        return struct.pack("<QQQQQ", self.rate_bytes, self.target_ns, self.interval_ns, tau,
                           (FLAG_ECN if self.ecn else 0) | (FLAG_DROP if self.drop else 0))


def spacings(interval_ns: int) -> list[int]:
    return [int(interval_ns / math.sqrt(n)) for n in range(1, STEPS + 1)]


@dataclass(frozen=True)
class AqmState:
    tat: int
    drops: int
    marks: int
    config: AqmConfig


def _value_buf(raw: bytes) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(raw, VALUE_SIZE)


def _put(map_fd: int, raw: bytes) -> None:
    k = ctypes.create_string_buffer(struct.pack("<I", 0), 4)
    v = _value_buf(raw)
    _bpf(_MAP_UPDATE, struct.pack("<IIQQQ", map_fd, 0, _address(k), _address(v), 0))


def _get(map_fd: int) -> bytes:
    k = ctypes.create_string_buffer(struct.pack("<I", 0), 4)
    v = ctypes.create_string_buffer(VALUE_SIZE)
    _bpf(_MAP_LOOKUP, struct.pack("<IIQQQ", map_fd, 0, _address(k), _address(v), 0))
    return v.raw


def read_state(map_fd: int) -> AqmState:
    raw = _get(map_fd)
    rate, target, interval, tau, flags = struct.unpack_from("<QQQQQ", raw, 0)
    tat, = struct.unpack_from("<Q", raw, TAT)
    drops, marks = struct.unpack_from("<QQ", raw, DROPS)
    bucket, = struct.unpack_from("<Q", raw, BUCKET)
    return AqmState(tat, drops, marks, AqmConfig(rate, bucket, target, interval, bool(flags & FLAG_ECN), bool(flags & FLAG_DROP)))


def write(map_fd: int, config: AqmConfig) -> None:
    """A new configuration, the state kept: the backlog (tat - now) carried in bytes to the new rate.

    The read-modify-write races with the datapath for microseconds (a few packets' charge is lost)."""
    raw = bytearray(_get(map_fd))
    old_rate, = struct.unpack_from("<Q", raw, RATE)
    tat, = struct.unpack_from("<Q", raw, TAT)
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)  # the program's bpf_ktime_get_ns
    if old_rate and tat > now:
        backlog = (tat - now) * old_rate // NSEC
        struct.pack_into("<Q", raw, TAT, now + backlog * NSEC // config.rate_bytes)
    raw[0:40] = config.packed()
    struct.pack_into(f"<{STEPS}Q", raw, SPACING, *spacings(config.interval_ns))
    struct.pack_into("<Q", raw, BUCKET, config.bucket_bytes)
    _put(map_fd, bytes(raw))


def load(config: AqmConfig) -> tuple[int, int]:
    """A new map holding `config` and the program using it: (prog_fd, map_fd), both for the caller to close."""
    try:
        map_fd = _bpf(_MAP_CREATE, struct.pack("<IIIIIII", _MAP_TYPE_ARRAY, 4, VALUE_SIZE, 1, 0, 0, 0)
                      + _name(PROGRAM_NAME))
    except OSError as exc:
        raise KernelError(f"creating the AQM's map failed: {exc.strerror}; it needs CONFIG_BPF_SYSCALL and root") from None
    try:
        write(map_fd, config)
        prog_fd = load_program(program(map_fd), PROGRAM_NAME, "the AQM program")
    except BaseException:
        os.close(map_fd)
        raise
    return prog_fd, map_fd


# -- on a device (netlink), as bpf_police ------------------------------------------------------------

def config_of(obj: Aqm) -> AqmConfig:
    """What vmqos plans: marks only (see `core.plan.queues.aqm` for why no drops)."""
    return AqmConfig(obj.rate_bytes, obj.bucket_bytes, obj.target_ns, obj.interval_ns, ecn=True, drop=False)


def prog_id(msg: Any) -> int | None:
    """The id of vmqos's AQM program in a filter message of kind bpf; None for anyone else's."""
    return program_id(msg, PROGRAM_NAME)


def observed(dev: str, parent: str, prio: int, protocol: str, program: int) -> Aqm:
    """The AQM a filter holds, as its map says (a map that does not mark only reads as another AQM)."""
    fd = map_of(program, PROGRAM_NAME)
    try:
        cfg = read_state(fd).config
    finally:
        os.close(fd)
    rate = cfg.rate_bytes if (cfg.ecn, cfg.drop) == (True, False) else 0
    return Aqm(dev, parent, prio, protocol, rate_bytes=rate, bucket_bytes=cfg.bucket_bytes,
               target_ns=cfg.target_ns, interval_ns=cfg.interval_ns)


def put(ipr: Any, idx: int, obj: Aqm) -> None:
    """Make `obj` what the device's HTB root holds: the running program's map rewritten in place when
    vmqos's AQM is there (its virtual backlog kept), else a new program attached."""
    put_program(ipr, idx, obj, PROGRAM_NAME, lambda fd: write(fd, config_of(obj)), lambda: load(config_of(obj)))
