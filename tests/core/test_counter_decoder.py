"""The compiled counter decoder against the Python one, on netlink messages built here (no kernel).

And the monitor's schedule: a pass longer than its interval lets ticks go instead of piling up.
"""

from __future__ import annotations

import struct
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmqos.drivers import counter_arrays as ca
from vmqos.drivers import counters as C
from vmqos.monitor.daemon import next_tick

needs_helper = pytest.mark.skipif(not ca.available(), reason="the compiled decoder is not built (make)")
SEQ = 7
u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)


def _msg(mtype: int, body: bytes, seq: int = SEQ) -> bytes:
    data = C._NLMSGHDR.pack(16 + len(body), mtype, 2, seq, 0) + body
    return data + b"\0" * (-len(data) % 4)


def _qdisc(ifindex: int, parent: int, kind: str, nbytes: int, packets: int, queue: tuple[int, ...],
           pkt64: int | None) -> bytes:
    stats = C._nla(1, struct.pack("=QI", nbytes, packets & 0xFFFFFFFF)) + C._nla(3, struct.pack("=5I", *queue))
    if pkt64 is not None:
        stats += C._nla(8, struct.pack("=Q", pkt64))
    return _msg(C.RTM_NEWQDISC, C._TCMSG.pack(0, ifindex, 0x10000, parent, 1) + C._nla(1, kind.encode() + b"\0")
                + C._nla(2, b"\0" * 12) + C._nla(7 | 0x8000, stats))


def _done() -> bytes:
    return _msg(C.NLMSG_DONE, b"\0\0\0\0")


@needs_helper
@given(st.lists(st.tuples(st.integers(1, 40), st.sampled_from([C.TC_H_ROOT, C.TC_H_INGRESS, 0x10001]),
                          st.sampled_from(["htb", "tbf", "ingress", "pfifo_fast", "a-kind-of-15chr"]), u64, u32,
                          st.tuples(u32, u32, u32, u32, u32), st.none() | u64), max_size=30))
def test_qdisc_roots_decode_as_the_python_reader_does(qdiscs):
    chunk = b"".join(_qdisc(*q) for q in qdiscs) + _msg(C.RTM_NEWQDISC, b"\0" * 20, seq=SEQ + 1) + _done()
    wanted = {i: i - 1 for i in range(1, 41, 2)}  # odd ifindexes only
    layout = ca.Layout(wanted, {}, {})
    out = array("Q", bytes(8 * ca.QDISC_FIELDS * layout.sizes()[0]))
    status, messages, _ = ca._helper.qdisc_roots(memoryview(chunk), SEQ, layout.qdisc_table, out)  # type: ignore[union-attr]
    assert (status, messages) == (1, len(qdiscs))
    expected = {}
    for q in qdiscs:  # the last root of a device wins, as in a dump (there is one)
        off = 0
        data = _qdisc(*q)
        got = C._qdisc(data, off, len(data), True, set(wanted))
        if got is not None and got.parent == C.TC_H_ROOT:
            expected[got.ifindex] = got
    for ifindex, slot in wanted.items():
        row = out[slot * ca.QDISC_FIELDS:(slot + 1) * ca.QDISC_FIELDS]
        if ifindex not in expected:
            assert row[0] == 0
            continue
        q = expected[ifindex]
        s = q.stats
        assert list(row) == [1, q.handle, q.parent, *ca.kind_words(q.kind), s.bytes, s.packets, s.drops, s.overlimits,
                             s.backlog_bytes, s.qlen]


@needs_helper
@given(st.lists(st.tuples(st.integers(1, 30), st.tuples(*[u64] * 8)), max_size=20))
def test_link_stats_decode_as_the_python_reader_does(links):
    chunk = b"".join(_msg(C.RTM_NEWSTATS, struct.pack("=BBHII", 0, 0, 0, i, 1) + C._nla(1, struct.pack("=8Q", *v)))
                     for i, v in links) + _done()
    layout = ca.Layout({}, {i: i for i in range(1, 31)}, {})
    out = array("Q", bytes(8 * ca.LINK_FIELDS * layout.sizes()[1]))
    status, messages, checksum = ca._helper.link_stats(memoryview(chunk), SEQ, layout.link_table, out, 5)  # type: ignore[union-attr]
    assert (status, messages, checksum) == (1, len(links), 5 + sum(i for i, _ in links))
    expected = {}
    for i, v in links:
        data = _msg(C.RTM_NEWSTATS, struct.pack("=BBHII", 0, 0, 0, i, 1) + C._nla(1, struct.pack("=8Q", *v)))
        expected[i] = C._link(data, 0, len(data))[1]
    for i in range(1, 31):
        row = list(out[i * ca.LINK_FIELDS:(i + 1) * ca.LINK_FIELDS])
        want = expected.get(i)
        assert row == ([1, want.rx_packets, want.tx_packets, want.rx_bytes, want.tx_bytes, want.rx_dropped,
                        want.tx_dropped] if want else [0] * ca.LINK_FIELDS)


@needs_helper
@given(st.lists(st.tuples(st.sampled_from(["vmqos", "foreign"]), st.sampled_from(["a_offered", "a_syn", "b_x", "zz"]),
                          u64, u64), max_size=20))
def test_nft_counters_decode_as_the_python_reader_does(objs):
    def body(table: str, name: str, packets: int, nbytes: int) -> bytes:
        data = C._nla(1, struct.pack(">Q", nbytes)) + C._nla(2, struct.pack(">Q", packets))
        return (C._NFGEN.pack(5, 0, 0) + C._nla(1, table.encode() + b"\0") + C._nla(2, name.encode() + b"\0")
                + C._nla(3, C._BE32.pack(1)) + C._nla(4 | 0x8000, data))

    newobj = (C.NFNL_SUBSYS_NFTABLES << 8) | C.NFT_MSG_NEWOBJ
    chunk = b"".join(_msg(newobj, body(*o)) for o in objs) + _done()
    layout = ca.Layout({}, {}, {"a_offered": 0, "a_syn": 1})
    out = array("Q", bytes(8 * ca.NFT_FIELDS * 2))
    unknown: list[tuple[bytes, int, int]] = []
    status, messages, _ = ca._helper.nft_counters(memoryview(chunk), SEQ, b"vmqos", layout.counter_table,  # type: ignore[union-attr]
                                                  unknown, out)
    assert (status, messages) == (1, len(objs))
    expected = {}
    for o in objs:
        data = _msg(newobj, body(*o))
        got = C._nft_counter(data, 0, len(data), b"vmqos")
        if got is not None:
            expected[got[0]] = got[1]
    for name, slot in layout.counters.items():
        row = list(out[slot * 3:slot * 3 + 3])
        assert row == ([1, expected[name].packets, expected[name].bytes] if name in expected else [0, 0, 0])
    assert {n.decode(): (p, b) for n, p, b in unknown} == {n: (v.packets, v.bytes) for n, v in expected.items()
                                                            if n not in layout.counters}


@needs_helper
def test_an_error_and_a_truncated_message_are_told_apart():
    error = _msg(C.NLMSG_ERROR, struct.pack("=i", -2) + b"\0" * 16)
    out = array("Q", bytes(8 * ca.QDISC_FIELDS))
    assert ca._helper.qdisc_roots(memoryview(error), SEQ, array("i", [0]), out)[0] == -2  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="truncated"):
        ca._helper.qdisc_roots(_done()[:-4], SEQ, array("i", [0]), out)  # type: ignore[union-attr]


def test_a_pass_longer_than_its_interval_lets_ticks_go_instead_of_piling_up():
    assert next_tick(10.0, 10.3, 1.0) == (11.0, 0)  # on time: the next tick
    assert next_tick(10.0, 11.5, 1.0) == (12.0, 1)  # 1.5 s pass: tick 11 is let go, the next pass at 12
    assert next_tick(10.0, 13.2, 1.0) == (14.0, 3)
    at, skipped = next_tick(0.0, 2.0, 1.0)  # ended exactly on a tick: that one is let go too (it is now)
    assert at > 2.0 and skipped == 2


@needs_helper
def test_the_answers_to_gets_skip_a_missing_object_and_end_at_the_last_acknowledgement():
    """nft_answers: answers of the batch's sequence range are decoded, a counter that is gone
    (ENOENT) is counted and skipped, another sequence number is ignored, and only the last
    request's acknowledgement ends the batch; any other error ends it with that error."""
    def counter(name: str, packets: int, nbytes: int, seq: int) -> bytes:
        data = C._nla(1, struct.pack(">Q", nbytes)) + C._nla(2, struct.pack(">Q", packets))
        return _msg((C.NFNL_SUBSYS_NFTABLES << 8) | C.NFT_MSG_NEWOBJ,
                    C._NFGEN.pack(5, 0, 0) + C._nla(1, b"vmqos\0") + C._nla(2, name.encode() + b"\0")
                    + C._nla(3, C._BE32.pack(1)) + C._nla(4 | 0x8000, data), seq)

    def error(code: int, seq: int) -> bytes:
        return _msg(C.NLMSG_ERROR, struct.pack("=i", code) + b"\0" * 16, seq)

    layout = ca.Layout({}, {}, {"a_syn": 0, "b_syn": 1, "c_syn": 2})
    out = array("Q", bytes(8 * ca.NFT_FIELDS * 3))

    def answers(chunk: bytes) -> tuple[int, int, int]:
        return ca._helper.nft_answers(memoryview(chunk), 100, 102, b"vmqos", layout.counter_table, [], out)  # type: ignore[union-attr,no-any-return]

    first = counter("a_syn", 5, 500, 100) + error(-2, 101) + counter("c_syn", 9, 900, 99)  # 99: not of this batch
    assert answers(first) == (0, 1, 1)  # no acknowledgement of the last request yet: more to come
    assert answers(counter("c_syn", 7, 700, 102) + error(0, 102)) == (1, 1, 0)
    assert list(out) == [1, 5, 500, 0, 0, 0, 1, 7, 700]
    assert answers(error(-1, 101))[0] == -1  # EPERM: not a missing counter
    assert answers(error(-2, 102)) == (1, 0, 1)  # the last one missing still ends the batch
