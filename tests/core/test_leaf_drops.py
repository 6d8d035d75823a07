"""What segmenting TBF leaves hide from their root HTB, and when it is read again, without a kernel.

The kernel side (the defect itself, and offered = delivered + dropped on real traffic) is
tests/kernel/test_tbf_leaf_drops.py; here the formula, the memo that spares idle ports the reads,
and which planned objects are read at which slots."""

from __future__ import annotations

from array import array

from vmqos.core.analysis.flows import unseen_leaf_drops
from vmqos.core.model.host import EgressMode, HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos
from vmqos.core.plan.host import plan_host
from vmqos.core.plan.names import ifb_name
from vmqos.drivers.counter_arrays import QDISC_FIELDS, kind_words
from vmqos.monitor.leaf_drops import LeafMemo, TbfLeaf, add_unseen_from_gets, tbf_leaves, tbf_rows

SLOW, FAST = "vql0", "vql1"


def _plans():
    def qos(bps: int) -> NetworkQos:
        return NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(bps)),
                          egress=DirectionQos(bandwidth=BandwidthLimit(bps)))

    return plan_host(HostState(instances={
        "vm0": InstanceSpec("vm0", ports=(PortSpec(SLOW, limits=qos(2_000_000), egress_mode=EgressMode.SHAPE),)),
        "vm1": InstanceSpec("vm1", ports=(PortSpec(FAST, limits=qos(100_000_000), egress_mode=EgressMode.SHAPE),))}))


def test_what_the_root_misses_is_the_tbfs_drops_less_its_classs():
    assert unseen_leaf_drops([]) == 0
    assert unseen_leaf_drops([(30, 0)]) == 30  # segments dropped while others were taken: HTB heard nothing
    assert unseen_leaf_drops([(40, 1)]) == 39  # an aggregate refused whole: HTB counted one, the TBF 40
    assert unseen_leaf_drops([(5, 5)]) == 0  # whole packets: both counted each
    assert unseen_leaf_drops([(30, 0), (40, 1)]) == 69  # per leaf, summed
    assert unseen_leaf_drops([(3, 4)]) == 0  # the class read after a drop the TBF read missed: never negative


def test_only_planned_tbf_leaves_are_read_at_their_roots_slots():
    plans = _plans()
    leaves = tbf_leaves(plans)
    want = TbfLeaf(SLOW, 0x10010, 0x10100000)
    assert leaves == {SLOW: (want,), ifb_name(SLOW): (TbfLeaf(ifb_name(SLOW), 0x10010, 0x10100000),)}  # 100 Mbit/s: bfifo
    index = {SLOW: 7, ifb_name(SLOW): 8, FAST: 9, ifb_name(FAST): 10}
    rows = tbf_rows([SLOW, FAST], leaves, index)
    assert [(slot, dev, idx) for slot, dev, idx, _ in rows] == [(0, SLOW, 7), (1, ifb_name(SLOW), 8)]
    assert tbf_rows([SLOW], leaves, {SLOW: 7}) == ((0, SLOW, 7, (want,)),)  # the IFB is not there yet


class _Reader:
    """Answers the leaf gets with given (TBF drops, class drops) per leaf, and counts the reads."""

    def __init__(self, tbf_drops: int, class_drops: int) -> None:
        self.drops, self.reads = (tbf_drops, class_drops), 0

    def leaves_by_get(self, leaves, batch=256):
        self.reads += 1
        out = array("Q", bytes(8 * QDISC_FIELDS * 2 * len(leaves)))
        tbf = kind_words("tbf")
        for k in range(len(leaves)):
            t, c = 2 * k * QDISC_FIELDS, (2 * k + 1) * QDISC_FIELDS
            out[t], out[t + 3], out[t + 4], out[t + 7] = 1, tbf[0], tbf[1], self.drops[0]
            out[c], out[c + 7] = 1, self.drops[1]
        return out


def _root(packets: int, drops: int, qlen: int) -> array:
    q = array("Q", bytes(8 * QDISC_FIELDS))
    q[0], q[6], q[7], q[10] = 1, packets, drops, qlen
    return q


def test_a_root_that_did_not_move_keeps_its_leaves_figure_without_reading_them():
    rows = ((0, SLOW, 7, (TbfLeaf(SLOW, 0x10010, 0x10100000),)),)
    memo, reader = LeafMemo(), _Reader(40, 1)
    q = _root(100, 1, 0)
    add_unseen_from_gets(reader, memo, rows, q)  # type: ignore[arg-type]
    assert (q[7], reader.reads) == (1 + 39, 1)  # the root's drops with what it did not count
    q = _root(100, 1, 0)
    add_unseen_from_gets(reader, memo, rows, q)  # type: ignore[arg-type]
    assert (q[7], reader.reads) == (40, 1)  # unchanged root, nothing queued: the memo, no read
    for moved in (_root(101, 1, 0), _root(100, 2, 0), _root(100, 1, 3)):  # sent, dropped, or holds something
        add_unseen_from_gets(reader, memo, rows, moved)  # type: ignore[arg-type]
    assert reader.reads == 4
    memo.clear()  # a device came or went
    add_unseen_from_gets(reader, memo, rows, _root(100, 1, 0))  # type: ignore[arg-type]
    assert reader.reads == 5


def test_a_root_that_is_not_there_is_left_alone():
    memo, reader = LeafMemo(), _Reader(40, 1)
    q = array("Q", bytes(8 * QDISC_FIELDS))
    add_unseen_from_gets(reader, memo, ((0, SLOW, 7, (TbfLeaf(SLOW, 0x10010, 0x10100000),)),), q)  # type: ignore[arg-type]
    assert (list(q), reader.reads) == ([0] * QDISC_FIELDS, 0)


def test_a_tbf_that_restarts_from_zero_under_a_class_that_kept_its_count_loses_nothing():
    """A live change across ~52 Mbit/s grafts a new TBF (drops from 0) under a class that keeps the
    drops of the bfifo it replaced; the absolute difference would hide the new TBF's drops."""
    from vmqos.core.analysis.flows import unseen_leaf_drops_since

    assert unseen_leaf_drops_since((50, 10), (80, 11)) == 29  # 30 segments, one aggregate refused whole
    assert unseen_leaf_drops_since((50, 10), (30, 10)) == 30  # the TBF restarted: its 30 are all new
    memo = LeafMemo()
    assert memo.leaf(SLOW, 0x10010, 50, 10) == 40  # first read: the difference
    assert memo.leaf(SLOW, 0x10010, 0, 10) == 40  # a new TBF: nothing hidden yet, nothing lost
    assert memo.leaf(SLOW, 0x10010, 30, 10) == 70  # its 30 drops, though the class still says 10
    assert unseen_leaf_drops([(30, 10)]) == 20  # (what the absolute difference would have said)
    assert memo.leaf(SLOW, 0x10011, 5, 0) == 5  # another leaf keeps its own count
    memo.clear()
    assert memo.leaf(SLOW, 0x10010, 30, 10) == 20  # a device that came or went: counted afresh


def test_many_roots_only_those_that_moved_are_read_and_each_keeps_its_own_figure():
    """The roots that did not move are found in one go (`LeafMemo.unmoved`, numpy); each still gets its
    own leaves' figure, and a root that moved, or holds packets, has its leaves read again."""
    n = 6
    rows = tuple((i, f"vql{i}", 7 + i, (TbfLeaf(f"vql{i}", 0x10010, 0x10100000),)) for i in range(n))
    memo = LeafMemo()

    def roots(packets: list[int], qlen: list[int]) -> array:
        q = array("Q", bytes(8 * QDISC_FIELDS * n))
        for i in range(n):
            b = i * QDISC_FIELDS
            q[b], q[b + 6], q[b + 7], q[b + 10] = 1, packets[i], 1, qlen[i]
        return q

    first = _Reader(40, 1)
    q = roots([100] * n, [0] * n)
    add_unseen_from_gets(first, memo, rows, q)  # type: ignore[arg-type]
    assert [q[i * QDISC_FIELDS + 7] for i in range(n)] == [1 + 39] * n and first.reads == 1
    second = _Reader(90, 1)  # what the leaves say now: only the roots that moved may take it
    q = roots([100, 101, 100, 100, 100, 100], [0, 0, 0, 2, 0, 0])
    add_unseen_from_gets(second, memo, rows, q)  # type: ignore[arg-type]
    assert [q[i * QDISC_FIELDS + 7] for i in range(n)] == [40, 1 + 39 + 50, 40, 1 + 39 + 50, 40, 40]
    assert second.reads == 1  # one batch of gets, for rows 1 and 3
    third = _Reader(90, 1)
    q = roots([100, 101, 100, 100, 100, 100], [0, 0, 0, 0, 0, 0])  # row 3's queue emptied: read once more
    add_unseen_from_gets(third, memo, rows, q)  # type: ignore[arg-type]
    assert [q[i * QDISC_FIELDS + 7] for i in range(n)] == [40, 90, 40, 90, 40, 40] and third.reads == 1
    q = roots([100, 101, 100, 100, 100, 100], [0] * n)
    fourth = _Reader(90, 1)
    add_unseen_from_gets(fourth, memo, rows, q)  # type: ignore[arg-type]
    assert [q[i * QDISC_FIELDS + 7] for i in range(n)] == [40, 90, 40, 90, 40, 40] and fourth.reads == 0
