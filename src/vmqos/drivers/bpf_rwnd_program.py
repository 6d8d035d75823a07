"""The receive-window clamp's bytecode (see `bpf_rwnd` for what it does and why), assembled with
bpf_police's encoder: one program per hook of the port, sharing the flow and config maps."""

from __future__ import annotations

from vmqos.drivers.bpf_police import NSEC, Assembler

_R0, _R1, _R2, _R3, _R4, _R5, _R6, _R7, _R8, _R9, _R10 = range(11)

# eBPF opcodes, include/uapi/linux/bpf.h
_MOV_X, _MOV_K, _ADD_K, _ADD_X, _SUB_X, _MUL_X, _MUL_K, _DIV_K = 0xBF, 0xB7, 0x07, 0x0F, 0x1F, 0x2F, 0x27, 0x37
_AND_K, _LSH_K, _RSH_K, _RSH_X, _BE = 0x57, 0x67, 0x77, 0x7F, 0xDC
_LDX_B, _LDX_H, _LDX_W, _LDX_DW = 0x71, 0x69, 0x61, 0x79
_STX_H, _STX_W, _STX_DW, _ST_W, _ST_DW, _XADD_DW = 0x6B, 0x63, 0x7B, 0x62, 0x7A, 0xDB
_JA, _JEQ_K, _JNE_K, _JGT_K, _JGE_K, _JGE_X, _JGT_X, _JLT_K, _JLT_X, _JLE_X, _JSET_K = (
    0x05, 0x15, 0x55, 0x25, 0x35, 0x3D, 0x2D, 0xA5, 0xAD, 0xBD, 0x45)
_MOD_X = 0x9F
_CALL, _EXIT = 0x85, 0x95
_LOOKUP, _UPDATE, _KTIME, _STORE_BYTES, _L4_CSUM, _LOAD_BYTES = 1, 2, 5, 9, 11, 26
_MAP_TYPE_LRU_HASH = 9
TC_ACT_UNSPEC = -1

# config map: an array of two slots, u64 fields. Slot TOWARDS (0): the program on the port's egress
# (packets towards the instance), whose windows govern what the instance sends; slot FROM (1): the
# program on the port's ingress, whose windows govern what the instance receives.
TOWARDS, FROM = 0, 1
RATE, TARGET, KMIN, CLAMPED, SYNS, TIMED = 0, 8, 16, 24, 32, 40
CONFIG_SIZE = 48
# flow map: key = src[16] dst[16] sport dport (network order) pad[4]; value = shift, mss, t_syn, rtt (u64)
KEY_SIZE, FLOW_SIZE, FLOWS = 40, 32, 65536
SHIFT, MSS, T_SYN, RTT = 0, 8, 16, 24
OPTION_STEPS = 12  # TCP options walked in a SYN (Linux sends 5: MSS, SACK_PERM, TS, NOP, WS)
MAX_RTT_NS = 10 * NSEC
NO_SCALE = 0xFF  # a SYN without the window scale option
TIMESTAMPS_OPTION = 12  # bytes of a full segment's TCP options when timestamps are on (Linux's default)
SMALL_PARTIAL = 256  # a last segment shorter than this would go through the sparse class (IP length < 256)

# stack layout (offsets from r10)
_KEY, _RKEY, _SCRATCH, _HDR, _VALUE, _CFGKEY = -40, -80, -88, -128, -160, -168


def program(flow_fd: int, config_fd: int, slot: int) -> bytes:
    asm = Assembler()
    at, emit, jump = asm.at, asm.emit, asm.jump

    def load_bytes(offset_reg: int | None, offset: int, to: int, length: int) -> None:
        """bpf_skb_load_bytes(skb, offset_reg + offset, fp + to, length); to "pass" if it fails."""
        if offset_reg is None:
            emit(_MOV_K, _R2, imm=offset)
        else:
            emit(_MOV_X, _R2, offset_reg)
            if offset:
                emit(_ADD_K, _R2, imm=offset)
        emit(_MOV_X, _R1, _R6)
        emit(_MOV_X, _R3, _R10)
        emit(_ADD_K, _R3, imm=to)
        emit(_MOV_K, _R4, imm=length)
        emit(_CALL, imm=_LOAD_BYTES)
        jump(_JNE_K, _R0, 0, 0, "pass")

    def map_fd(fd: int) -> None:
        emit(0x18, _R1, 1, 0, fd)  # ld_imm64 r1 = map (BPF_PSEUDO_MAP_FD)
        emit(0, 0, 0, 0, 0)

    def lookup(fd: int, key: int) -> None:
        map_fd(fd)
        emit(_MOV_X, _R2, _R10)
        emit(_ADD_K, _R2, imm=key)
        emit(_CALL, imm=_LOOKUP)

    def copy(src: int, dst: int, op_ld: int, op_st: int) -> None:
        emit(op_ld, _R1, _R10, src)
        emit(op_st, _R10, _R1, dst)

    emit(_MOV_X, _R6, _R1)
    for off in range(_RKEY, 0, 8):
        emit(_ST_DW, _R10, 0, off, 0)
    load_bytes(None, 12, _SCRATCH, 2)  # ethertype
    emit(_LDX_H, _R1, _R10, _SCRATCH)
    jump(_JEQ_K, _R1, 0, 0x0008, "v4")
    jump(_JEQ_K, _R1, 0, 0xDD86, "v6")
    jump(_JA, 0, 0, 0, "pass")

    at("v4")
    load_bytes(None, 14, _HDR, 20)
    emit(_LDX_B, _R1, _R10, _HDR + 9)
    jump(_JNE_K, _R1, 0, 6, "pass")  # not TCP
    emit(_LDX_H, _R1, _R10, _HDR + 6)
    emit(_AND_K, _R1, imm=0xFF1F)  # fragment offset (network order read little-endian)
    jump(_JNE_K, _R1, 0, 0, "pass")
    copy(_HDR + 12, _KEY, _LDX_W, _STX_W)
    copy(_HDR + 16, _KEY + 16, _LDX_W, _STX_W)
    emit(_LDX_B, _R7, _R10, _HDR)
    emit(_AND_K, _R7, imm=0x0F)
    emit(_LSH_K, _R7, imm=2)
    jump(_JLT_K, _R7, 0, 20, "pass")
    emit(_ADD_K, _R7, imm=14)  # r7 = the TCP header's offset
    jump(_JA, 0, 0, 0, "tcp")

    at("v6")
    load_bytes(None, 14, _HDR, 40)
    emit(_LDX_B, _R1, _R10, _HDR + 6)
    jump(_JNE_K, _R1, 0, 6, "pass")  # not TCP, or an extension header first: left alone
    for i in range(4):
        copy(_HDR + 8 + 8 * i, _KEY + 8 * i, _LDX_DW, _STX_DW)
    emit(_MOV_K, _R7, imm=54)

    at("tcp")
    load_bytes(_R7, 0, _HDR, 20)
    copy(_HDR, _KEY + 32, _LDX_W, _STX_W)  # sport, dport
    copy(_KEY + 16, _RKEY, _LDX_DW, _STX_DW)
    copy(_KEY + 24, _RKEY + 8, _LDX_DW, _STX_DW)
    copy(_KEY, _RKEY + 16, _LDX_DW, _STX_DW)
    copy(_KEY + 8, _RKEY + 24, _LDX_DW, _STX_DW)
    copy(_KEY + 34, _RKEY + 32, _LDX_H, _STX_H)
    copy(_KEY + 32, _RKEY + 34, _LDX_H, _STX_H)
    emit(_LDX_B, _R8, _R10, _HDR + 13)  # flags
    jump(_JSET_K, _R8, 0, 0x04, "pass")  # RST
    jump(_JSET_K, _R8, 0, 0x02, "syn")

    # -- any other segment: time the handshake once, then clamp
    lookup(flow_fd, _KEY)
    jump(_JEQ_K, _R0, 0, 0, "pass")  # a flow whose handshake was not seen
    emit(_MOV_X, _R9, _R0)
    emit(_LDX_DW, _R1, _R9, RTT)
    jump(_JNE_K, _R1, 0, 0, "clamp")
    emit(_LDX_DW, _R8, _R9, T_SYN)
    jump(_JEQ_K, _R8, 0, 0, "pass")  # the server's side before the client's ACK: not timed yet
    emit(_CALL, imm=_KTIME)
    emit(_SUB_X, _R0, _R8)
    emit(_MOV_X, _R8, _R0)
    emit(_ADD_K, _R8, imm=1)  # never 0 (0 is "not timed")
    emit(0x18, _R1, 0, 0, MAX_RTT_NS & 0xFFFFFFFF)
    emit(0, 0, 0, 0, MAX_RTT_NS >> 32)
    jump(_JLE_X, _R8, _R1, 0, "rtt_ok")
    emit(_MOV_X, _R8, _R1)
    at("rtt_ok")
    emit(_STX_DW, _R9, _R8, RTT)
    lookup(flow_fd, _RKEY)
    jump(_JEQ_K, _R0, 0, 0, "timed")
    emit(_STX_DW, _R0, _R8, RTT)
    at("timed")
    emit(_ST_W, _R10, 0, _CFGKEY, slot)  # the counter lives in this hook's slot
    lookup(config_fd, _CFGKEY)
    jump(_JEQ_K, _R0, 0, 0, "clamp")
    emit(_MOV_K, _R1, imm=1)
    emit(_XADD_DW, _R0, _R1, TIMED)

    at("clamp")  # r9 = this direction's flow entry
    emit(_ST_W, _R10, 0, _CFGKEY, slot)
    lookup(config_fd, _CFGKEY)
    jump(_JEQ_K, _R0, 0, 0, "pass")
    emit(_MOV_X, _R8, _R0)  # r8 = config
    emit(_LDX_DW, _R2, _R8, RATE)
    jump(_JEQ_K, _R2, 0, 0, "pass")  # this direction's windows govern an unshaped direction
    emit(_LDX_DW, _R3, _R9, RTT)
    emit(_MUL_X, _R3, _R2)
    emit(_DIV_K, _R3, imm=NSEC)  # r3 = rate x rtt: the path's BDP, bytes
    emit(_LDX_DW, _R5, _R8, TARGET)
    emit(_MUL_X, _R5, _R2)
    emit(_DIV_K, _R5, imm=NSEC)  # r5 = rate x target: the queue allowed
    emit(_LDX_DW, _R4, _R9, MSS)
    emit(_LDX_DW, _R1, _R8, KMIN)
    emit(_MUL_X, _R4, _R1)
    jump(_JGE_X, _R5, _R4, 0, "have_q")
    emit(_MOV_X, _R5, _R4)  # but never less than kmin segments: a receiver ACKs every second one
    at("have_q")
    emit(_ADD_X, _R3, _R5)  # W = BDP + max(kmin x MSS, rate x target)
    emit(_LDX_DW, _R4, _R9, SHIFT)
    emit(_AND_K, _R4, imm=15)
    emit(_MOV_K, _R1, imm=1)
    emit(0x6F, _R1, _R4)  # r1 = 1 << shift (LSH_X)
    emit(_ADD_X, _R3, _R1)
    emit(_ADD_K, _R3, imm=-1)
    emit(_RSH_X, _R3, _R4)  # r3 = the window field, rounded up
    # A window whose bytes beyond the last whole segment are a few dozen makes the sender split off a
    # tiny segment (Nagle lets one through), which the sparse class sends ahead of the full ones: the
    # receiver sees it out of order (measured at 1 Mbit/s, window scale 10: 2 segments + 176 bytes, 4
    # reorderings and retransmits a run, the flow's RTT 32 ms instead of 24). Then the window is cut to
    # whole segments and rounded down to the scale instead: none or a large last segment.
    emit(_MOV_X, _R0, _R3)
    emit(0x6F, _R0, _R4)  # r0 = the window in bytes (LSH_X)
    emit(_LDX_DW, _R2, _R9, MSS)
    emit(_ADD_K, _R2, imm=-TIMESTAMPS_OPTION)  # r2 = a full segment's payload (Linux sends timestamps)
    jump(_JLT_K, _R2, 0, SMALL_PARTIAL, "window_set")
    emit(_MOV_X, _R5, _R0)
    emit(_MOD_X, _R5, _R2)  # r5 = what the window holds beyond its whole segments
    jump(_JEQ_K, _R5, 0, 0, "window_set")
    jump(_JGE_K, _R5, 0, SMALL_PARTIAL, "window_set")
    emit(_SUB_X, _R0, _R5)
    emit(_RSH_X, _R0, _R4)  # r0 = whole segments, rounded down to the scale (a field)
    emit(_MOV_X, _R5, _R0)
    emit(0x6F, _R5, _R4)
    jump(_JLT_X, _R5, _R2, 0, "window_set")  # never below one segment
    emit(_MOV_X, _R3, _R0)
    at("window_set")
    jump(_JGT_K, _R3, 0, 0xFFFF, "pass")
    emit(_LDX_H, _R5, _R10, _HDR + 14)  # the window as it is (raw, network order)
    emit(_MOV_X, _R4, _R5)
    emit(_BE, _R4, imm=16)
    jump(_JLE_X, _R4, _R3, 0, "pass")  # never raise a window
    emit(_BE, _R3, imm=16)
    emit(_STX_H, _R10, _R3, _SCRATCH)
    emit(_MOV_X, _R1, _R6)
    emit(_MOV_X, _R2, _R7)
    emit(_ADD_K, _R2, imm=16)
    emit(_MOV_X, _R4, _R3)
    emit(_MOV_X, _R3, _R5)
    emit(_MOV_K, _R5, imm=2)
    emit(_CALL, imm=_L4_CSUM)  # (skb, csum offset, from, to, size 2)
    jump(_JNE_K, _R0, 0, 0, "pass")
    emit(_MOV_X, _R1, _R6)
    emit(_MOV_X, _R2, _R7)
    emit(_ADD_K, _R2, imm=14)
    emit(_MOV_X, _R3, _R10)
    emit(_ADD_K, _R3, imm=_SCRATCH)
    emit(_MOV_K, _R4, imm=2)
    emit(_MOV_K, _R5, imm=0)
    emit(_CALL, imm=_STORE_BYTES)
    emit(_MOV_K, _R1, imm=1)
    emit(_XADD_DW, _R8, _R1, CLAMPED)
    jump(_JA, 0, 0, 0, "pass")

    # -- SYN / SYN-ACK: this direction's window scale and MSS, and the SYN's time
    at("syn")
    emit(_ST_DW, _R10, 0, _VALUE + SHIFT, NO_SCALE)
    emit(_ST_DW, _R10, 0, _VALUE + MSS, 536)
    emit(_ST_DW, _R10, 0, _VALUE + T_SYN, 0)
    emit(_ST_DW, _R10, 0, _VALUE + RTT, 0)
    jump(_JSET_K, _R8, 0, 0x10, "options")  # SYN-ACK: no time
    emit(_CALL, imm=_KTIME)
    emit(_STX_DW, _R10, _R0, _VALUE + T_SYN)
    at("options")
    emit(_LDX_B, _R9, _R10, _HDR + 12)
    emit(_RSH_K, _R9, imm=4)
    emit(_LSH_K, _R9, imm=2)
    emit(_ADD_X, _R9, _R7)  # r9 = the options' end
    emit(_MOV_X, _R8, _R7)
    emit(_ADD_K, _R8, imm=20)  # r8 = the option being read
    for step in range(OPTION_STEPS):
        nxt = f"opt{step + 1}"
        emit(_MOV_X, _R1, _R8)
        emit(_ADD_K, _R1, imm=1)
        jump(_JGE_X, _R1, _R9, 0, "record")
        load_bytes(_R8, 0, _SCRATCH, 2)  # kind, length
        emit(_LDX_B, _R1, _R10, _SCRATCH)
        jump(_JEQ_K, _R1, 0, 0, "record")  # end of options
        jump(_JNE_K, _R1, 0, 1, f"not_nop{step}")
        emit(_ADD_K, _R8, imm=1)
        jump(_JA, 0, 0, 0, nxt)
        at(f"not_nop{step}")
        jump(_JNE_K, _R1, 0, 2, f"not_mss{step}")
        load_bytes(_R8, 2, _SCRATCH + 4, 2)
        emit(_LDX_H, _R1, _R10, _SCRATCH + 4)
        emit(_BE, _R1, imm=16)
        emit(_STX_DW, _R10, _R1, _VALUE + MSS)
        at(f"not_mss{step}")
        emit(_LDX_B, _R1, _R10, _SCRATCH)
        jump(_JNE_K, _R1, 0, 3, f"not_ws{step}")
        load_bytes(_R8, 2, _SCRATCH + 4, 1)
        emit(_LDX_B, _R1, _R10, _SCRATCH + 4)
        jump(_JLT_K, _R1, 0, 15, f"ws_ok{step}")
        emit(_MOV_K, _R1, imm=14)  # RFC 7323: a shift over 14 is taken as 14
        at(f"ws_ok{step}")
        emit(_STX_DW, _R10, _R1, _VALUE + SHIFT)
        at(f"not_ws{step}")
        emit(_LDX_B, _R1, _R10, _SCRATCH + 1)
        jump(_JLT_K, _R1, 0, 2, "record")  # a broken length: stop reading
        emit(_ADD_X, _R8, _R1)
        at(nxt)
    at("record")
    # RFC 7323: windows are scaled only if both SYNs carried the option. A SYN-ACK without it turns the
    # client's recorded shift off too (a server answers with the option only if the client sent it).
    emit(_LDX_DW, _R1, _R10, _VALUE + SHIFT)
    jump(_JNE_K, _R1, 0, NO_SCALE, "store")
    emit(_ST_DW, _R10, 0, _VALUE + SHIFT, 0)
    emit(_LDX_B, _R1, _R10, _HDR + 13)
    jump(_JSET_K, _R1, 0, 0x10, "unscaled_reply")
    jump(_JA, 0, 0, 0, "store")
    at("unscaled_reply")
    lookup(flow_fd, _RKEY)
    jump(_JEQ_K, _R0, 0, 0, "store")
    emit(_ST_DW, _R0, 0, SHIFT, 0)
    at("store")
    map_fd(flow_fd)
    emit(_MOV_X, _R2, _R10)
    emit(_ADD_K, _R2, imm=_KEY)
    emit(_MOV_X, _R3, _R10)
    emit(_ADD_K, _R3, imm=_VALUE)
    emit(_MOV_K, _R4, imm=0)  # BPF_ANY
    emit(_CALL, imm=_UPDATE)
    emit(_ST_W, _R10, 0, _CFGKEY, slot)
    lookup(config_fd, _CFGKEY)
    jump(_JEQ_K, _R0, 0, 0, "pass")
    emit(_MOV_K, _R1, imm=1)
    emit(_XADD_DW, _R0, _R1, SYNS)

    at("pass")
    emit(_MOV_K, _R0, imm=TC_ACT_UNSPEC)
    emit(_EXIT)
    return asm.link()
