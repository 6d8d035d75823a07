"""The receive-window clamp (drivers/bpf_rwnd) in the kernel: its decisions on crafted TCP segments through
BPF_PROG_TEST_RUN (handshake seen, RTT timed, window lowered with a valid checksum, IPv4 and IPv6, unseen
flows and small windows left alone). No traffic; well under a second."""

from __future__ import annotations

import ctypes
import ipaddress
import struct
import time

import pytest

from vmqos.drivers import bpf_rwnd
from vmqos.drivers.bpf_police import _NR_BPF, _libc

pytestmark = pytest.mark.kernel

_PROG_TEST_RUN = 10
RATE = 125_000  # 1 Mbit/s, L2 bytes/s
TARGET_NS = 5_000_000


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _segment(src: str, dst: str, sport: int, dport: int, flags: int, window: int, options: bytes = b"") -> bytes:
    """An Ethernet frame holding one TCP segment with a correct checksum, IPv4 or IPv6 by the addresses."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    options += b"\0" * (-len(options) % 4)
    tcp = struct.pack(">HHIIBBHHH", sport, dport, 1000, 2000, (5 + len(options) // 4) << 4, flags, window, 0, 0)
    tcp += options
    pseudo = s.packed + d.packed + (struct.pack(">BBH", 0, 6, len(tcp)) if s.version == 4
                                    else struct.pack(">I3xB", len(tcp), 6))
    tcp = tcp[:16] + struct.pack(">H", 0xFFFF - _csum(pseudo + tcp)) + tcp[18:]
    if s.version == 4:
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, s.packed, d.packed)
        return bytes(12) + b"\x08\x00" + ip + tcp
    ip = struct.pack(">IHBB16s16s", 6 << 28, len(tcp), 6, 64, s.packed, d.packed)
    return bytes(12) + b"\x86\xdd" + ip + tcp


def _window_and_checksum_ok(frame: bytes) -> tuple[int, bool]:
    v4 = frame[12:14] == b"\x08\x00"
    ip_len = 20 if v4 else 40
    src, dst = (frame[26:30], frame[30:34]) if v4 else (frame[22:38], frame[38:54])
    tcp = frame[14 + ip_len:]
    pseudo = src + dst + (struct.pack(">BBH", 0, 6, len(tcp)) if v4 else struct.pack(">I3xB", len(tcp), 6))
    return struct.unpack_from(">H", tcp, 14)[0], _csum(pseudo + tcp) == 0xFFFF


def _run(prog_fd: int, frame: bytes) -> bytes:
    data = ctypes.create_string_buffer(frame, len(frame))
    out = ctypes.create_string_buffer(len(frame) + 256)
    attr = ctypes.create_string_buffer(struct.pack("<IIIIQQII", prog_fd, 0, len(frame), len(out),
                                                   ctypes.addressof(data), ctypes.addressof(out), 1, 0), 128)
    assert _libc.syscall(_NR_BPF, _PROG_TEST_RUN, attr, ctypes.c_uint(128)) == 0, ctypes.get_errno()
    verdict, = struct.unpack_from("<i", attr.raw, 4)
    assert verdict == bpf_rwnd.TC_ACT_UNSPEC, f"the clamp never drops or classifies, got {verdict}"
    return out.raw[:len(frame)]


@pytest.fixture
def loaded():
    from tests.kernel.conftest import _missing, require
    require("kernel", _missing())
    # slot TOWARDS clamps at 1 Mbit/s; the test runs everything through that slot's program
    progs = bpf_rwnd.load(bpf_rwnd.ClampConfig(RATE, TARGET_NS, kmin=2), bpf_rwnd.ClampConfig(0, TARGET_NS))
    yield progs
    progs.close()


SYN_OPTIONS = struct.pack(">BBH", 2, 4, 1460) + b"\x01" + struct.pack(">BBB", 3, 3, 7)  # MSS 1460, NOP, WS 7


@pytest.mark.parametrize("client,server", [("10.1.0.1", "10.1.0.2"), ("fd00::1", "fd00::2")])
def test_a_seen_handshake_is_timed_and_the_receivers_window_is_lowered_with_a_valid_checksum(loaded, client, server):
    prog = loaded.towards_fd
    _run(prog, _segment(client, server, 40000, 5201, 0x02, 64240, SYN_OPTIONS))  # SYN
    _run(prog, _segment(server, client, 5201, 40000, 0x12, 65160, SYN_OPTIONS))  # SYN-ACK
    time.sleep(0.02)
    _run(prog, _segment(client, server, 40000, 5201, 0x10, 502))  # the client's ACK: times the handshake
    seen = {(f.src, f.sport): f for f in bpf_rwnd.flows(loaded.flows_fd)}
    rtt_ms = seen[(server, 5201)].rtt_ns / 1e6
    assert 20 <= rtt_ms < 500, f"the handshake took {rtt_ms} ms from SYN to ACK"
    assert seen[(client, 40000)].rtt_ns == seen[(server, 5201)].rtt_ns
    assert (seen[(server, 5201)].shift, seen[(server, 5201)].mss) == (7, 1460)
    out = _run(prog, _segment(server, client, 5201, 40000, 0x10, 0xFFFF))  # 8 MiB advertised
    window, ok = _window_and_checksum_ok(out)
    # the BDP of the timed path plus the queue allowed (at least two segments)
    expected = RATE * seen[(server, 5201)].rtt_ns // 10**9 + max(2 * 1460, RATE * TARGET_NS // 10**9)
    assert window == bpf_rwnd.window_field(RATE, seen[(server, 5201)].rtt_ns, TARGET_NS, 2, 1460, 7), \
        f"window {window} << 7, expected {expected} bytes rounded up (or down to whole segments)"
    assert abs(window * 128 - expected) < 1448 + 128
    assert ok, "the TCP checksum must hold after the rewrite"
    small = _run(prog, _segment(server, client, 5201, 40000, 0x10, 3))
    assert _window_and_checksum_ok(small) == (3, True), "a window below the clamp is never raised"
    # the client's timing ACK (502 << 7 bytes) was lowered too: one program sees both ways in this test
    assert bpf_rwnd.counters(loaded.config_fd, bpf_rwnd.TOWARDS) == bpf_rwnd.ClampCounters(clamped=2, syns=2, timed=1)


def test_a_flow_whose_handshake_was_not_seen_is_left_alone(loaded):
    frame = _segment("10.1.0.3", "10.1.0.4", 1234, 80, 0x10, 0xFFFF)
    assert _run(loaded.towards_fd, frame) == frame
    assert bpf_rwnd.counters(loaded.config_fd, bpf_rwnd.TOWARDS).clamped == 0


def test_an_unshaped_slot_clamps_nothing(loaded):
    prog = loaded.from_fd  # its slot's rate is 0
    _run(prog, _segment("10.1.0.1", "10.1.0.2", 40001, 5201, 0x02, 64240, SYN_OPTIONS))
    _run(prog, _segment("10.1.0.2", "10.1.0.1", 5201, 40001, 0x12, 65160, SYN_OPTIONS))
    _run(prog, _segment("10.1.0.1", "10.1.0.2", 40001, 5201, 0x10, 502))
    frame = _segment("10.1.0.2", "10.1.0.1", 5201, 40001, 0x10, 0xFFFF)
    assert _run(prog, frame) == frame


def test_a_reply_without_window_scaling_turns_the_clients_shift_off(loaded):
    """RFC 7323: the client's WS 7 does not apply when the server's SYN-ACK carries no WS option, so the
    client's window field is bytes; clamping it as if scaled would shrink it 128-fold."""
    prog = loaded.towards_fd
    _run(prog, _segment("10.1.0.5", "10.1.0.6", 40002, 80, 0x02, 64240, SYN_OPTIONS))
    _run(prog, _segment("10.1.0.6", "10.1.0.5", 80, 40002, 0x12, 65160, struct.pack(">BBH", 2, 4, 1460)))
    _run(prog, _segment("10.1.0.5", "10.1.0.6", 40002, 80, 0x10, 64240))
    shifts = {(f.src, f.sport): f.shift for f in bpf_rwnd.flows(loaded.flows_fd)}
    assert shifts == {("10.1.0.5", 40002): 0, ("10.1.0.6", 80): 0}
    out = _run(prog, _segment("10.1.0.6", "10.1.0.5", 80, 40002, 0x10, 60000))
    rtt = next(f.rtt_ns for f in bpf_rwnd.flows(loaded.flows_fd) if f.sport == 80)
    expected = bpf_rwnd.window_field(RATE, rtt, TARGET_NS, 2, 1460, 0)
    assert _window_and_checksum_ok(out) == (expected, True), "unscaled: BDP + two segments, in bytes"
    # two segments of 1460 hold 24 bytes (and the BDP) beyond two full 1448-byte ones: cut to whole segments
    assert RATE * rtt // 10**9 > 200 or expected == 2 * 1448


@pytest.mark.parametrize("shift,field", [(10, 2), (7, 22)])
def test_a_window_that_would_split_off_a_tiny_segment_is_cut_to_whole_segments(loaded, shift, field):
    """1 Mbit/s, two segments of MSS 1460 at a 0.1 ms path: 2920 bytes rounded up to the scale is 3072
    (WS 10) or 2944 (WS 7), two full 1448-byte segments and 176 or 48 bytes, which the sender splits off
    and the sparse class sends ahead. Rounded down from whole segments instead: 2048 (one full segment
    and 600 bytes) or 2816 (one and 1368)."""
    prog = loaded.towards_fd
    options = struct.pack(">BBH", 2, 4, 1460) + b"\x01" + struct.pack(">BBB", 3, 3, shift)
    _run(prog, _segment("10.1.0.7", "10.1.0.8", 40003, 5201, 0x02, 64240, options))
    _run(prog, _segment("10.1.0.8", "10.1.0.7", 5201, 40003, 0x12, 65160, options))
    _run(prog, _segment("10.1.0.7", "10.1.0.8", 40003, 5201, 0x10, 502))
    rtt = next(f.rtt_ns for f in bpf_rwnd.flows(loaded.flows_fd) if f.sport == 5201)
    out = _run(prog, _segment("10.1.0.8", "10.1.0.7", 5201, 40003, 0x10, 0xFFFF))
    assert RATE * rtt // 10**9 < 24, "the test's handshake must be quick (BDP of a few bytes)"
    assert _window_and_checksum_ok(out) == (field, True)
    assert bpf_rwnd.window_field(RATE, rtt, TARGET_NS, 2, 1460, shift) == field
