"""Police mode's token bucket: a small eBPF program on the port's tc ingress, its state in a BPF map.

Why not nft's `limit`: its byte bucket is `unit x (rate + burst) / rate`, so it always holds one
second of traffic more than the burst asked for, it starts full when it is created, and the kernel
has no way to change a limit object's rate in place (no `update` op; measured on 6.18). Each rate
change or shape -> police switch on a loaded port therefore handed the instance one more second of
traffic (100 ms samples of 470-540 Mbit/s against 50). Here the rate and burst live in a map that
vmqos rewrites in place: the bucket's state (its "theoretical arrival time", GCRA) is kept across
every change, and the bucket is the burst the user asked for (its size is the burst, no more: any
interval of t seconds passes at most burst + rate x t, across changes too).

The program does not drop: it sets `POLICE_MARK` in skb->mark on a packet over the limit, and the
port's nft chain (which runs right after tc's ingress) drops and counts it, so the accounting
(offered, dropped, passed) stays in nft. It charges skb->len less the Ethernet header (cls_bpf
pushes it back at ingress): IP bytes, as nft's limit did. A packet passes when the bucket holds
its cost (or is full, for a packet longer than the whole bucket), as with nft's limit.

Bytecode is assembled here (no compiler on our hosts); loading and map access use the bpf(2)
system call through ctypes. Programs and maps are not bound to a network namespace: the filter
that holds the program is, and the map is found again from it (filter -> program id -> map id).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as errnos
import os
import struct
from collections.abc import Callable

import time
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.tcmsg import sched_bpf
from pyroute2.protocols import ETH_P_ALL

from vmqos.core.errors import KernelError
from vmqos.core.plan.handles import handle_int
from vmqos.core.plan.nft_objects import POLICE_MARK
from vmqos.core.plan.tc_objects import Aqm, Policer

PROGRAM_NAME = "vmqos_police"  # the filter's and the program's name: how vmqos knows its own
NSEC = 1_000_000_000


class _BpfOptions(sched_bpf.options):
    """pyroute2 0.9.7 stops at TCA_BPF_FLAGS: the program's id (TCA_BPF_ID) is what finds its map."""

    nla_map = tuple(sched_bpf.options.nla_map) + (
        ("TCA_BPF_FLAGS_GEN", "uint32"), ("TCA_BPF_TAG", "hex"), ("TCA_BPF_ID", "uint32"))


sched_bpf.options = _BpfOptions

# bpf(2) commands and constants (include/uapi/linux/bpf.h)
_MAP_CREATE, _MAP_LOOKUP, _MAP_UPDATE, _PROG_LOAD = 0, 1, 2, 5
_PROG_GET_FD_BY_ID, _MAP_GET_FD_BY_ID, _OBJ_GET_INFO_BY_FD = 13, 14, 15
_MAP_TYPE_ARRAY, _PROG_TYPE_SCHED_CLS = 2, 3
_NR_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: bytes) -> int:
    buf = ctypes.create_string_buffer(attr, max(len(attr), 128))
    ret = _libc.syscall(_NR_BPF, cmd, buf, ctypes.c_uint(len(buf)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


# -- the program ---------------------------------------------------------------------------------

def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


class Assembler:
    """A program being written: `emit` an instruction, `at` a label, `jump` to a label written later;
    `link` gives the bytes (the police, AQM and receive-window programs)."""

    def __init__(self) -> None:
        self.code: list[bytes | tuple[str, bytes]] = []
        self.labels: dict[str, int] = {}

    def at(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def emit(self, *args: int, **kw: int) -> None:
        self.code.append(_insn(*args, **kw))

    def jump(self, op: int, dst: int, src: int, imm: int, target: str) -> None:
        self.code.append((target, _insn(op, dst, src, 0, imm)))

    def link(self) -> bytes:
        """The program's bytes, each jump (a (label, instruction) pair) given its offset to the label: the
        encoders write jumps before their targets are known, as an assembler's first pass does."""
        out = b""
        for i, item in enumerate(self.code):
            if isinstance(item, tuple):
                target, raw = item
                op, regs, _, imm = struct.unpack("<BBhi", raw)
                item = struct.pack("<BBhi", op, regs, self.labels[target] - i - 1, imm)
            out += item
        return out


_R0, _R1, _R2, _R3, _R4, _R5, _R6, _R7, _R8, _R9, _R10 = range(11)
_MOV_X, _MOV_K, _ADD_K, _ADD_X, _SUB_X, _MUL_K, _DIV_X, _OR_K = 0xBF, 0xB7, 0x07, 0x0F, 0x1F, 0x27, 0x3F, 0x47
_LDX_W, _LDX_DW, _STX_W, _ST_W = 0x61, 0x79, 0x63, 0x62
_JEQ_K, _JEQ_X, _JGE_X, _JGT_X, _JLE_X, _JLT_K, _CALL, _EXIT = 0x15, 0x1D, 0x3D, 0x2D, 0xBD, 0xA5, 0x85, 0x95
_CMPXCHG_DW, _CMPXCHG = 0xDB, 0xF1
_LOOKUP, _KTIME = 1, 5
_SKB_LEN, _SKB_MARK = 0, 8  # offsets in struct __sk_buff
ETH_HLEN = 14
ATTEMPTS = 3  # compare-and-swap tries when two CPUs charge the bucket at once; then the packet is over


def program(map_fd: int) -> bytes:
    """The policer's instructions. Map: key 0 = (rate bytes/s, burst bytes), key 1 = (tat ns, 0).

    A packet of `len` bytes costs len/rate seconds. With tat' = max(tat, now), it conforms when
    tat' - now + min(cost, tau) <= tau (tau: the burst in time); then tat = tat' + cost."""
    asm = Assembler()
    at, emit, jump = asm.at, asm.emit, asm.jump

    def lookup(key: int) -> None:
        emit(_ST_W, _R10, 0, -4, key)
        emit(_MOV_X, _R2, _R10)
        emit(_ADD_K, _R2, imm=-4)
        emit(0x18, _R1, 1, 0, map_fd)  # ld_imm64 r1 = map (BPF_PSEUDO_MAP_FD)
        emit(0, 0, 0, 0, 0)
        emit(_CALL, imm=_LOOKUP)
        jump(_JEQ_K, _R0, 0, 0, "pass")

    emit(_MOV_X, _R6, _R1)
    lookup(0)
    emit(_LDX_DW, _R7, _R0, 0)  # rate
    emit(_LDX_DW, _R8, _R0, 8)  # burst
    jump(_JEQ_K, _R7, 0, 0, "pass")
    lookup(1)
    emit(_MOV_X, _R9, _R0)
    emit(_CALL, imm=_KTIME)
    emit(_MOV_X, _R5, _R0)  # now
    emit(_LDX_W, _R3, _R6, _SKB_LEN)
    jump(_JLT_K, _R3, 0, ETH_HLEN, "pass")
    emit(_ADD_K, _R3, imm=-ETH_HLEN)  # IP bytes
    emit(_MUL_K, _R3, imm=NSEC)
    emit(_DIV_X, _R3, _R7)  # cost, ns
    emit(_MUL_K, _R8, imm=NSEC)
    emit(_DIV_X, _R8, _R7)  # tau, ns
    emit(_LDX_DW, _R0, _R9, 0)  # tat
    for attempt in range(ATTEMPTS):
        emit(_MOV_X, _R4, _R0)
        emit(_JGE_X, _R4, _R5, 1)  # tat >= now: keep it
        emit(_MOV_X, _R4, _R5)  # r4 = max(tat, now)
        emit(_MOV_X, _R2, _R4)
        emit(_SUB_X, _R2, _R5)  # r2 = debt in ns
        emit(_MOV_X, _R1, _R3)
        emit(_JLE_X, _R1, _R8, 1)  # cost <= tau: keep it
        emit(_MOV_X, _R1, _R8)  # r1 = min(cost, tau)
        emit(_ADD_X, _R2, _R1)
        jump(_JGT_X, _R2, _R8, 0, "over")
        emit(_ADD_X, _R4, _R3)  # r4 = new tat
        emit(_MOV_X, _R1, _R0)
        emit(_CMPXCHG_DW, _R9, _R4, 0, _CMPXCHG)
        jump(_JEQ_X, _R0, _R1, 0, "pass")
    at("over")
    emit(_LDX_W, _R1, _R6, _SKB_MARK)
    emit(_OR_K, _R1, imm=POLICE_MARK)
    emit(_STX_W, _R6, _R1, _SKB_MARK)
    at("pass")
    emit(_MOV_K, _R0, imm=0)  # TC_ACT_OK: the verdict is nft's
    emit(_EXIT)
    return asm.link()


# -- loading, finding and changing it ------------------------------------------------------------

def _name(text: str) -> bytes:
    return text.encode()[:15].ljust(16, b"\0")


def _map_create() -> int:
    attr = struct.pack("<IIIIIII", _MAP_TYPE_ARRAY, 4, 16, 2, 0, 0, 0) + _name("vmqos_police")
    return _bpf(_MAP_CREATE, attr)


def _address(buf: ctypes.Array[ctypes.c_char]) -> int:
    return ctypes.addressof(buf)


def _put(map_fd: int, key: int, a: int, b: int) -> None:
    k = ctypes.create_string_buffer(struct.pack("<I", key), 4)
    value = ctypes.create_string_buffer(struct.pack("<QQ", a, b), 16)
    _bpf(_MAP_UPDATE, struct.pack("<IIQQQ", map_fd, 0, _address(k), _address(value), 0))


def _get(map_fd: int, key: int) -> tuple[int, int]:
    k = ctypes.create_string_buffer(struct.pack("<I", key), 4)
    value = ctypes.create_string_buffer(16)
    _bpf(_MAP_LOOKUP, struct.pack("<IIQQQ", map_fd, 0, _address(k), _address(value), 0))
    a, b = struct.unpack("<QQ", value.raw)
    return a, b


def write_config(map_fd: int, rate_bytes: int, bucket_bytes: int) -> None:
    """The bucket's rate (L2 bytes/s) and size (bytes), on a new map."""
    _put(map_fd, 0, rate_bytes, bucket_bytes)


def read_config(map_fd: int) -> tuple[int, int]:
    return _get(map_fd, 0)


def carried_tat(tat: int, now: int, old: tuple[int, int], new: tuple[int, int]) -> int:
    """The bucket's state under a new (rate, bucket), holding the tokens it had in bytes (as one
    bucket whose rate changed, and never more than the new size): the deficit D = (tat - now) x rate
    becomes max(0, D + new bucket - old bucket)."""
    (old_rate, old_bucket), (new_rate, new_bucket) = old, new
    deficit = max(0, tat - now) * old_rate // NSEC
    deficit = max(0, deficit + new_bucket - old_bucket)
    return now + -(-deficit * NSEC // new_rate)


def change(map_fd: int, rate_bytes: int, bucket_bytes: int) -> None:
    """A new rate and size for a running bucket, keeping its tokens (bytes) across the change.

    Two map writes from here race with the program for a few microseconds: what the datapath
    charges between the read of the state and its write is forgotten (a few packets at most)."""
    old = read_config(map_fd)
    if old == (rate_bytes, bucket_bytes):
        return
    tat, _ = _get(map_fd, 1)
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)  # the program's bpf_ktime_get_ns
    _put(map_fd, 0, rate_bytes, bucket_bytes)
    _put(map_fd, 1, carried_tat(tat, now, old, (rate_bytes, bucket_bytes)), 0)


def load_program(insns: bytes, name: str, what: str) -> int:
    """Load a tc classifier program (vmqos's own: police, AQM) named `name`; its fd for the caller to close.
    A refusal is one line with the verifier's last words."""
    license_ = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(65536)
    code = ctypes.create_string_buffer(insns, len(insns))
    attr = struct.pack("<IIQQIIQII", _PROG_TYPE_SCHED_CLS, len(insns) // 8, _address(code), _address(license_),
                       1, len(log), _address(log), 0, 0) + _name(name)
    try:
        return _bpf(_PROG_LOAD, attr)
    except OSError as exc:
        verifier = log.value.decode(errors="replace").strip().splitlines()[-3:]
        raise KernelError(f"loading {what} failed: {exc.strerror} ({' / '.join(verifier)}); it needs "
                          "CONFIG_BPF_SYSCALL and root") from None


def load(rate_bytes: int, bucket_bytes: int, tokens: int) -> tuple[int, int]:
    """A new map holding (rate, bucket size) and a bucket of `tokens` bytes, and the program using it:
    (prog_fd, map_fd), both for the caller to close."""
    try:
        map_fd = _map_create()
    except OSError as exc:
        raise KernelError(f"creating the police bucket's map failed: {exc.strerror}; police mode needs "
                          "CONFIG_BPF_SYSCALL and root") from None
    try:
        write_config(map_fd, rate_bytes, bucket_bytes)
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        _put(map_fd, 1, carried_tat(now, now, (rate_bytes, tokens), (rate_bytes, bucket_bytes)), 0)
        prog_fd = load_program(program(map_fd), PROGRAM_NAME, "the police program")
    except BaseException:
        os.close(map_fd)
        raise
    return prog_fd, map_fd


def map_of(prog_id: int, program_name: str = PROGRAM_NAME) -> int:
    """An fd on the map of vmqos's program `prog_id` (which a filter names), the police program unless
    `program_name` says which other (bpf_aqm's); the caller closes it."""
    try:
        prog_fd = _bpf(_PROG_GET_FD_BY_ID, struct.pack("<III", prog_id, 0, 0))
    except OSError as exc:
        raise KernelError(f"police program {prog_id} cannot be opened: {exc.strerror}") from None
    try:
        ids = ctypes.create_string_buffer(4 * 4)
        head = bytearray(struct.pack("<IIQIIQQQIIQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, _address(ids)))
        info = ctypes.create_string_buffer(bytes(head), 96)
        _bpf(_OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", prog_fd, 96, _address(info)))
        count = struct.unpack_from("<I", info.raw, 52)[0]
        name = info.raw[64:80].rstrip(b"\0").decode(errors="replace")
        if count != 1 or name != program_name:
            raise KernelError(f"program {prog_id} ({name!r}, {count} maps) is not vmqos's {program_name}")
        map_id = struct.unpack_from("<I", ids.raw, 0)[0]
        try:
            return _bpf(_MAP_GET_FD_BY_ID, struct.pack("<III", map_id, 0, 0))
        except OSError as exc:
            raise KernelError(f"the map of police program {prog_id} cannot be opened: {exc.strerror}") from None
    finally:
        os.close(prog_fd)


def is_missing(exc: OSError) -> bool:
    return exc.errno in (errnos.ENOENT, errnos.ESRCH)


# -- on a device (netlink) -----------------------------------------------------------------------

def program_id(msg: Any, name: str) -> int | None:
    """The id of vmqos's program `name` in a filter message of kind bpf; None for anyone else's."""
    opts = msg.get_attr("TCA_OPTIONS")
    if opts is None or opts.get_attr("TCA_BPF_NAME") != name:
        return None
    found = opts.get_attr("TCA_BPF_ID")
    return int(found) if found is not None else None


def prog_id(msg: Any) -> int | None:
    """The id of vmqos's police program in a filter message of kind bpf; None for anyone else's."""
    return program_id(msg, PROGRAM_NAME)


def observed(dev: str, parent: str, prio: int, protocol: str, program: int) -> Policer:
    """The policer a filter holds, with its map's rate and burst (the bucket's size)."""
    fd = map_of(program)
    try:
        rate, bucket = read_config(fd)
    finally:
        os.close(fd)
    return Policer(dev, parent, prio, protocol, rate_bytes=rate, burst_bytes=bucket)


def put_program(ipr: Any, idx: int, obj: Policer | Aqm, name: str, change_map: Callable[[int], None],
                load_new: Callable[[], tuple[int, int]]) -> None:
    """Make `obj` (a filter holding vmqos's program `name`) what the device holds: the running program's map
    changed in place by `change_map(map_fd)` when it is there (its state kept), else the program and map
    `load_new()` makes attached (replacing whatever filter held that priority: the reconciler asked for
    --force if it was foreign)."""
    for msg in ipr.get_filters(index=idx, parent=handle_int(obj.parent)):
        if msg["info"] >> 16 != obj.prio or msg.get_attr("TCA_KIND") != "bpf":
            continue
        program = program_id(msg, name)
        if program is not None:
            fd = map_of(program, name)
            try:
                change_map(fd)
            except OSError as exc:
                raise KernelError(f"changing {obj.describe()}: {exc.strerror}") from None
            finally:
                os.close(fd)
            return
    prog_fd, map_fd = load_new()
    try:
        ipr.tc("replace-filter", "bpf", idx, 1, parent=handle_int(obj.parent), prio=obj.prio, protocol=ETH_P_ALL,
               fd=prog_fd, name=name, direct_action=True)
    except NetlinkError as exc:
        raise KernelError(f"attaching {obj.describe()}: {os.strerror(exc.code)}", errno=exc.code) from None
    finally:
        os.close(prog_fd)
        os.close(map_fd)  # the filter holds the program, the program its map


def put(ipr: Any, idx: int, obj: Policer) -> None:
    """Make `obj` what the device's ingress holds: its bucket kept across a change; a new bucket holds the
    burst asked for."""
    put_program(ipr, idx, obj, PROGRAM_NAME, lambda fd: change(fd, obj.rate_bytes, obj.bucket_bytes),
                lambda: load(obj.rate_bytes, obj.bucket_bytes, obj.burst_bytes))
