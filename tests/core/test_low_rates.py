"""Low rates without bufferbloat: segmenting TBF leaves under a ceiling of ~52 Mbit/s, a sparse class.

The plan's shape (which queue under which leaf, the sparse class and its filters), the commands it
renders, and live changes across the threshold over the fake kernel: replace-only, in sync after.
"""

from __future__ import annotations

import pytest

from tests.core.test_reconcile_fake import PORTS, _limiters_always_there, in_sync, reconciler, settle, state
from vmqos.core.desired.effective import QosSource, combine
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos, TrafficClass, TrafficMatch
from vmqos.core.plan.diff import Operation, diff
from vmqos.core.plan.objects import HtbClass, Qdisc, U32Filter
from vmqos.core.plan.planner import KernelProfile, plan_port, segments
from vmqos.core.plan.render import tc_commands
from vmqos.drivers.fake import FakeKernel

MBIT = 1_000_000
PROFILE = KernelProfile()


def _plan(rate: int, peak: int | None = None, classes: tuple[TrafficClass, ...] = ()):
    qos = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(rate, peak), classes=classes))
    return plan_port("tap0", combine([QosSource("t", qos)]), accounting=False)


def _leaf_queues(plan) -> dict[str, Qdisc]:
    return {o.parent: o for o in plan.objects if isinstance(o, Qdisc) and o.parent.startswith("1:")}


@pytest.mark.parametrize("mbit", [1, 3, 10, 50])
def test_a_leaf_under_52_mbit_queues_in_a_tbf_that_segments(mbit):
    rate = mbit * MBIT
    queue = _leaf_queues(_plan(rate))["1:10"]
    assert queue.qdisc_kind == "tbf" and segments(rate, PROFILE)
    # never the limiter: ten times the class's ceiling, a bucket of at least the port's burst
    assert queue.rate_bps == 10 * rate and queue.burst_bytes is not None and queue.burst_bytes >= 2 * 1514
    # 8 frames or 20 ms at the ceiling, whichever is more: a fraction of the 128 KiB a bfifo needs
    assert queue.limit_bytes == max(8 * 1514, rate * 20 // 8000) < 128 * 1024
    assert tc_commands(Operation("create", queue)) == [
        f"tc qdisc replace dev tap0 parent 1:10 handle 1010: tbf rate {10 * mbit}mbit "
        f"burst {queue.burst_bytes}b limit {queue.limit_bytes}"]


@pytest.mark.parametrize("mbit, burst", [(1, 2_000), (5, 50_000), (10, 1_000_000), (50, 400_000)])
def test_a_segmenting_leafs_bucket_is_at_most_its_queue(mbit, burst):
    """An aggregate no longer than the TBF's bucket is queued whole, and dropped whole if longer than the
    queue: the bucket must fit in the queue, whatever burst the operator asked for (the class keeps it)."""
    qos = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(mbit * MBIT, burst_bytes=burst)))
    plan = plan_port("tap0", combine([QosSource("t", qos)]), accounting=False)
    queue = _leaf_queues(plan)["1:10"]
    assert queue.qdisc_kind == "tbf" and queue.limit_bytes is not None and queue.burst_bytes is not None
    assert 2 * 1514 <= queue.burst_bytes <= queue.limit_bytes
    assert queue.burst_bytes == min(burst, queue.limit_bytes) or burst < 2 * 1514
    port_class = next(o for o in plan.objects if isinstance(o, HtbClass) and o.classid == "1:1")
    assert port_class.burst_bytes == max(burst, 2 * 1514)  # the class keeps the operator's burst


@pytest.mark.parametrize("mbit", [53, 100, 1000])
def test_a_leaf_from_52_mbit_keeps_a_bfifo_of_20_ms(mbit):
    rate = mbit * MBIT
    queue = _leaf_queues(_plan(rate))["1:10"]
    assert not segments(rate, PROFILE)
    assert (queue.qdisc_kind, queue.limit_bytes) == ("bfifo", max(128 * 1024, rate * 20 // 8000))


def test_the_peak_not_the_average_chooses_the_queue():
    """The leaf drains at its ceiling (the peak): a 10 Mbit/s average with a 100 Mbit/s peak gets a bfifo."""
    assert _leaf_queues(_plan(10 * MBIT, 100 * MBIT))["1:10"].qdisc_kind == "bfifo"
    assert _leaf_queues(_plan(10 * MBIT, 20 * MBIT))["1:10"].rate_bps == 200 * MBIT


def test_short_packets_go_to_the_sparse_class_first_and_big_tcp_does_not():
    plan = _plan(3 * MBIT, classes=(TrafficClass("web", 60, TrafficMatch("tcp", (80,))), TrafficClass("rest", 40)))
    classes = {o.classid: o for o in plan.objects if isinstance(o, HtbClass)}
    sparse = classes["1:f"]
    assert (sparse.prio, sparse.rate_bps, sparse.ceil_bps) == (0, 60_000, 3 * MBIT)
    assert {c.prio for cid, c in classes.items() if cid not in ("1:1", "1:f")} == {1}
    # every guarantee together is the limit: the sparse class's 2 % comes out of the classes' shares
    assert sum(c.rate_bps for cid, c in classes.items() if cid != "1:1") == 3 * MBIT
    filters = sorted((o for o in plan.objects if isinstance(o, U32Filter)), key=lambda f: f.prio)
    first = [(f.prio, f.protocol, f.matches_, f.flowid) for f in filters[:4]]
    assert first == [(1, "ip", ("u16 0x0 0xffff at 2",), "1:10"), (2, "ipv6", ("u16 0x0 0xffff at 4",), "1:10"),
                     (3, "ip", ("u16 0x0 0xff00 at 2",), "1:f"), (4, "ipv6", ("u16 0x0 0xff00 at 4",), "1:f")]
    assert all(f.flowid == "1:11" for f in filters[4:])
    assert _leaf_queues(plan)["1:f"].qdisc_kind == "bfifo"


@pytest.mark.parametrize("netlink", [True, False])
@pytest.mark.parametrize("rates", [(100, 2), (2, 100), (3, 1)])
def test_a_live_change_across_the_threshold_grafts_the_leaf_queue_in_place(monkeypatch, netlink, rates):
    kernel = FakeKernel(PORTS)
    rec = reconciler(kernel)
    before, after = (state(r * MBIT, classes=True) for r in rates)
    _, record = settle(rec, before)
    if not netlink:
        monkeypatch.setattr("vmqos.reconcile.execute.LIVE_REPLACE_LIMIT", 0)
    kernel.clear_journal()
    kernel.watchers.append(_limiters_always_there)
    results, _ = settle(rec, after, applied=record, verify=False)
    assert all(op.action == "replace" for r in results for op in r.ops)
    # the AQM's change is a rewrite of its map (the fake journals the line `plan` shows for it)
    assert kernel.writes() and all(" replace " in f" {c.text} " or c.text.startswith("vmqos aqm program")
                                   for c in kernel.writes())
    kinds = {o.qdisc_kind for o in kernel.objects("tap0") if isinstance(o, Qdisc) and o.parent == "1:10"}
    assert kinds == ({"tbf"} if segments(rates[1] * MBIT, PROFILE) else {"bfifo"})
    assert in_sync(rec, after)


def test_a_tbf_read_back_with_the_kernels_rounding_still_matches():
    queue = _leaf_queues(_plan(3 * MBIT))["1:10"]
    assert queue.rate_bps is not None and queue.burst_bytes is not None and queue.limit_bytes is not None
    rounded = Qdisc(queue.dev, queue.parent, queue.handle, "tbf", limit_bytes=queue.limit_bytes + 3,
                    rate_bps=queue.rate_bps, burst_bytes=queue.burst_bytes - 1)
    assert not diff([queue], [rounded])
    wrong = Qdisc(queue.dev, queue.parent, queue.handle, "tbf", limit_bytes=queue.limit_bytes * 2,
                  rate_bps=queue.rate_bps, burst_bytes=queue.burst_bytes)
    assert [op.action for op in diff([queue], [wrong])] == ["replace"]


def test_sibling_quanta_keep_the_ratio_of_the_shares_so_an_idle_class_is_lent_in_that_ratio():
    plan = _plan(20 * MBIT, classes=(TrafficClass("web", 50, TrafficMatch("tcp", (80,))),
                                     TrafficClass("mail", 30, TrafficMatch("tcp", (25,))), TrafficClass("rest", 20)))
    quanta = {o.classid: o.quantum for o in plan.objects if isinstance(o, HtbClass) and o.prio == 1}
    # each share alone is over 60000 bytes per round at r2q 10: scaled together, not clamped one by one
    assert quanta == {"1:11": 60_000, "1:12": 36_000, "1:10": 24_000}


def test_a_tbf_at_the_root_is_someone_elses_even_with_handle_1():
    """TBF leaves are vmqos's; a root TBF (the CNI bandwidth plugin's, a seed's script) is drift."""
    from vmqos.core.plan.objects import is_foreign

    assert is_foreign(Qdisc("tap0", "root", "1:", "tbf", limit_bytes=10_000, rate_bps=MBIT, burst_bytes=1540))
    assert not is_foreign(_leaf_queues(_plan(MBIT))["1:10"])
    assert not is_foreign(Qdisc("tap0", "root", "1:", "htb", default_minor=0x10))


def test_the_aqm_is_planned_and_sized_in_frames_at_low_rates_and_before_the_class_filters_of_a_classed_port():
    """Mark-only AQM on the HTB root, last of its filters; its target and interval at least one and four
    frames at the rate. With traffic classes it sits between the sparse and the class filters (a class
    filter ends the search), at the port's rate, and the class filters keep prios of their own."""
    from vmqos.core.plan.objects import Aqm
    from vmqos.core.plan.queues import CLASS_FILTER_PRIO, CLASSED_AQM_PRIO
    from vmqos.core.plan.tc_objects import AQM_PRIO

    def plan(rate, classes=()):
        qos = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(rate), classes=classes))
        return plan_port("tap-q", combine([QosSource("t", qos)]))
    (low,) = [o for o in plan(1 * MBIT).objects if isinstance(o, Aqm)]
    assert (low.parent, low.prio, low.rate_bytes) == ("1:", AQM_PRIO, 125_000)
    assert low.target_ns == 1514 * 8 * 1000 and low.interval_ns == 4 * 1514 * 8 * 1000  # a frame: 12.1 ms
    (high,) = [o for o in plan(100 * MBIT).objects if isinstance(o, Aqm)]
    assert (high.target_ns, high.interval_ns, high.bucket_bytes) == (2_000_000, 10_000_000, 50_000)  # a tick
    assert max(f.prio for f in plan(100 * MBIT).objects if hasattr(f, "prio") and f.kind == "filter") == AQM_PRIO
    web = TrafficClass("web", 60, TrafficMatch("tcp", (80,)))
    classed = plan(10 * MBIT, (web, TrafficClass("rest", 40))).objects
    (aqm,) = [o for o in classed if isinstance(o, Aqm)]
    assert (aqm.prio, aqm.rate_bytes) == (CLASSED_AQM_PRIO, 1_250_000)
    class_filters = sorted(f.prio for f in classed if f.kind == "filter" and getattr(f, "flowid", None) == "1:11")
    sparse = [f.prio for f in classed if f.kind == "filter" and getattr(f, "flowid", None) in ("1:f", "1:10")]
    assert max(sparse) < CLASSED_AQM_PRIO < CLASS_FILTER_PRIO == min(class_filters), (sparse, class_filters)
    assert len(class_filters) == 4  # tcp 80 as source or destination, IPv4 and IPv6
    assert tc_commands(Operation("create", low))[0].startswith("# vmqos aqm program on tap-q")
