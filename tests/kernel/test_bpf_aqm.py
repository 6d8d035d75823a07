"""The AQM program (drivers/bpf_aqm) in the kernel: its decisions through BPF_PROG_TEST_RUN, and the
filter on a real HTB root, changed in place. No traffic; a few hundred ms in all."""

from __future__ import annotations

import ctypes
import struct
import time

import pytest

from tests.kernel.conftest import sh
from vmqos.core.plan.queues import KernelProfile, aqm
from vmqos.drivers import bpf_aqm
from vmqos.drivers.bpf_police import _NR_BPF, _libc
from vmqos.drivers.tc_netlink import TcNetlink

pytestmark = pytest.mark.kernel

_PROG_TEST_RUN = 10
FRAME = 1514


def _packet(tos: int) -> bytes:
    """An Ethernet frame with an IPv4 header (ECN bits in `tos`), full size."""
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, tos, FRAME - 14, 0, 0, 64, 6, 0, bytes(4), bytes(4))
    return bytes(12) + b"\x08\x00" + ip + bytes(FRAME - 14 - 20)


def _run(prog_fd: int, packet: bytes) -> tuple[int, int]:
    """(the program's verdict, the TOS byte it left) for one packet."""
    data = ctypes.create_string_buffer(packet, len(packet))
    out = ctypes.create_string_buffer(len(packet) + 256)
    attr = ctypes.create_string_buffer(struct.pack("<IIIIQQII", prog_fd, 0, len(packet), len(out),
                                                   ctypes.addressof(data), ctypes.addressof(out), 1, 0), 128)
    assert _libc.syscall(_NR_BPF, _PROG_TEST_RUN, attr, ctypes.c_uint(128)) == 0, ctypes.get_errno()
    return struct.unpack_from("<i", attr.raw, 4)[0], out.raw[15]


@pytest.fixture
def loaded(request):
    from tests.kernel.conftest import _missing, require
    require("kernel", _missing())
    ecn, drop = request.param
    # 1 Mbit/s: a frame is 12 ms; target 12 ms, interval 48 ms, as the planner sets them
    prog_fd, map_fd = bpf_aqm.load(bpf_aqm.AqmConfig(125_000, 3028, 12_112_000, 48_448_000, ecn=ecn, drop=drop))
    yield prog_fd, map_fd
    for fd in (prog_fd, map_fd):
        import os
        os.close(fd)


def _flood(prog_fd: int, tos: int, count: int = 40) -> list[tuple[int, int]]:
    """Frames 2 ms apart (6 Mbit/s into a 1 Mbit/s queue): the virtual sojourn grows 10 ms a frame."""
    out = []
    for _ in range(count):
        out.append(_run(prog_fd, _packet(tos)))
        time.sleep(0.002)
    return out


@pytest.mark.parametrize("loaded", [(True, False)], indirect=True)
def test_mark_only_marks_ect_packets_once_the_sojourn_stays_high_and_never_drops(loaded):
    prog_fd, map_fd = loaded
    ect = _flood(prog_fd, tos=0x02)
    assert all(verdict == -1 for verdict, _ in ect), "mark-only must pass every packet on (TC_ACT_UNSPEC)"
    marked = [i for i, (_, tos) in enumerate(ect) if tos & 3 == 3]
    assert marked and marked[0] >= 2, f"marked from packet {marked[:1]}: not before the sojourn passed the target"
    assert len(marked) < len(ect), "CoDel spaces its signals"
    not_ect = _flood(prog_fd, tos=0x00)
    assert all(verdict == -1 and tos == 0 for verdict, tos in not_ect), "a packet without ECN passes untouched"
    state = bpf_aqm.read_state(map_fd)
    assert state.drops == 0 and state.marks == len(marked)


@pytest.mark.parametrize("loaded", [(False, True)], indirect=True)
def test_drop_mode_drops_what_it_signals(loaded):
    prog_fd, map_fd = loaded
    verdicts = [verdict for verdict, _ in _flood(prog_fd, tos=0x02)]
    assert set(verdicts) == {-1, 2} and verdicts[0] == -1
    assert bpf_aqm.read_state(map_fd).drops == verdicts.count(2)


@pytest.mark.parametrize("loaded", [(True, False)], indirect=True)
def test_a_rate_change_keeps_the_backlog_in_bytes(loaded):
    prog_fd, map_fd = loaded
    _flood(prog_fd, tos=0, count=20)  # ~20 frames in 40 ms: ~17 frames of backlog at 1 Mbit/s
    before = bpf_aqm.read_state(map_fd)
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    backlog = (before.tat - now) * 125_000 // 1_000_000_000
    assert backlog > 10 * FRAME
    bpf_aqm.write(map_fd, bpf_aqm.AqmConfig(1_250_000, 5000, 2_000_000, 10_000_000, ecn=True, drop=False))
    after = bpf_aqm.read_state(map_fd)
    carried = (after.tat - time.clock_gettime_ns(time.CLOCK_MONOTONIC)) * 1_250_000 // 1_000_000_000
    assert backlog * 0.9 < carried <= backlog  # the same bytes, draining ten times faster
    assert after.config == bpf_aqm.AqmConfig(1_250_000, 5000, 2_000_000, 10_000_000, ecn=True, drop=False)


def test_the_planned_aqm_is_attached_read_back_and_changed_in_place(netns):
    made = sh(netns, "ip link add vqa0 type veth peer name vqa1 && ip link set vqa0 up && "
                     "tc qdisc add dev vqa0 root handle 1: htb")
    assert made.returncode == 0, made.stderr
    profile = KernelProfile()
    first = aqm("vqa0", 3_000_000, 3028, 1500, profile)
    with TcNetlink(netns) as tc:
        tc.replace(first)
        (seen,) = [o for o in (tc.read(["vqa0"])["vqa0"].objects or []) if isinstance(o, type(first))]
        assert first.matches(seen)
        prog_ids = sh(netns, "tc filter show dev vqa0 parent 1:").stdout
        assert "vmqos_aqm" in prog_ids and "direct-action" in prog_ids
        second = aqm("vqa0", 100_000_000, 125_000, 1500, profile)
        tc.replace(second)
        (seen,) = [o for o in (tc.read(["vqa0"])["vqa0"].objects or []) if isinstance(o, type(first))]
        assert second.matches(seen) and not first.matches(seen)
        # in place: the same program (its id) holds the new configuration
        assert sh(netns, "tc filter show dev vqa0 parent 1:").stdout.split(" id ")[1].split()[0] == \
            prog_ids.split(" id ")[1].split()[0]


_SEND_TCP_80 = """
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0x02, 1500, 0, 0x4000, 64, 6, 0, bytes([10, 9, 0, 1]), bytes([10, 9, 0, 2]))
tcp = struct.pack(">HHIIBBHHH", 40000, 80, 1, 0, 0x50, 0x10, 65535, 0, 0)
frame = bytes.fromhex("020000000002020000000001") + b"\\x08\\x00" + ip + tcp + bytes(1500 - 40)
for _ in range(int(sys.argv[2])):
    try:
        s.send(frame)
    except OSError:  # ENOBUFS: the leaf queue dropped it (the qdisc said NET_XMIT_DROP)
        pass
    time.sleep(0.0005)
"""


def _sent_packets(ns: str, dev: str) -> dict[str, int]:
    """classid -> packets its HTB class sent (tc -s class show: iproute2 6.1 prints classes as text)."""
    out, found, current = sh(ns, f"tc -s class show dev {dev}").stdout, {}, None
    for line in out.splitlines():
        if line.startswith("class htb "):
            current = line.split()[2]
        elif "Sent " in line and current:
            found[current] = int(line.split(" pkt")[0].split()[-1])
    return found


def test_on_a_classed_port_the_aqm_sees_a_class_packet_before_its_class_filter_classifies_it(netns):
    """The classed tree's AQM (prio CLASSED_AQM_PRIO, between the sparse and the class filters) charges
    and marks full-size ECT packets to tcp port 80, which the web class's u32 filter then still takes
    (the program passes them on). Applied as the planner renders it, read back equal, and a rate change
    is a replace of the same program's map (no new program)."""
    import sys

    from tests.kernel.test_plan_applies import _apply
    from vmqos.core.desired.effective import QosSource, combine
    from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos, TrafficClass, TrafficMatch
    from vmqos.core.plan.diff import diff
    from vmqos.core.plan.objects import Aqm, U32Filter
    from vmqos.core.plan.planner import plan_port
    from vmqos.core.plan.queues import CLASSED_AQM_PRIO
    from vmqos.drivers.bpf_police import map_of

    made = sh(netns, "ip link add vqa0 type veth peer name vqa1 && ip link set vqa0 up && ip link set vqa1 up")
    assert made.returncode == 0, made.stderr
    classes = (TrafficClass("web", 50, TrafficMatch("tcp", (80,))), TrafficClass("rest", 50))

    def plan(rate: int):
        qos = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(rate), classes=classes))
        return plan_port("vqa0", combine([QosSource("t", qos)]))

    first = plan(10_000_000)
    _apply(netns, diff(first.objects, []))
    tc_planned = [o for o in first.objects if isinstance(o, (Aqm, U32Filter))]
    with TcNetlink(netns) as tc:
        seen = [o for o in tc.read(["vqa0"])["vqa0"].objects or [] if isinstance(o, (Aqm, U32Filter))]
    assert not diff(tc_planned, seen), diff(tc_planned, seen)  # read back as planned: nothing to do
    (aqm_seen,) = [o for o in seen if isinstance(o, Aqm)]
    assert aqm_seen.prio == CLASSED_AQM_PRIO

    shown = sh(netns, f"tc filter show dev vqa0 parent 1: prio {CLASSED_AQM_PRIO}").stdout
    prog = int(shown.split(" id ")[1].split()[0])
    before = _sent_packets(netns, "vqa0")
    # 60 frames 0.5 ms apart: ~24 Mbit/s into a 10 Mbit/s port, so the virtual queue stays above the target
    sent = sh(netns, f"{sys.executable} -c '{_SEND_TCP_80}' vqa0 60")
    assert sent.returncode == 0, sent.stderr
    time.sleep(0.3)  # what HTB queued drains (60 frames are 73 ms at 10 Mbit/s)
    after = _sent_packets(netns, "vqa0")
    fd = map_of(prog, bpf_aqm.PROGRAM_NAME)
    try:
        state = bpf_aqm.read_state(fd)
    finally:
        import os
        os.close(fd)
    assert after.get("1:11", 0) - before.get("1:11", 0) >= 20, (before, after)  # the web class took them
    assert after.get("1:10", 0) - before.get("1:10", 0) < 5, (before, after)  # not the default leaf
    assert state.marks > 0 and state.tat > 0, state  # the AQM saw them first, and marked some

    second = plan(20_000_000)
    with TcNetlink(netns) as tc:
        observed = tc.read(["vqa0"])["vqa0"].objects or []
        ops = [op for op in diff(second.objects, observed) if isinstance(op.obj, Aqm)]
        assert [op.action for op in ops] == ["replace"], ops
        tc.replace(ops[0].obj)
        (now,) = [o for o in tc.read(["vqa0"])["vqa0"].objects or [] if isinstance(o, Aqm)]
    assert now.rate_bytes == 2_500_000 and now.prio == CLASSED_AQM_PRIO
    again = sh(netns, f"tc filter show dev vqa0 parent 1: prio {CLASSED_AQM_PRIO}").stdout
    assert int(again.split(" id ")[1].split()[0]) == prog  # the same program, its map rewritten
