"""Core tier: counter arithmetic, rates, detectors, the quarantine decision, usage folding, the monitor's tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmqos.cli.top import sparkline
from vmqos.cli.watch import parse_since
from vmqos.core.analysis.detect import (
    PACKET_RATE,
    PINNED,
    SMALL_PACKETS,
    SYN_FLOOD,
    Detectors,
    Thresholds,
    decide,
)
from vmqos.core.analysis.flows import Flow
from vmqos.core.analysis.rates import FlowRate, counter_delta, flow_rate
from vmqos.core.analysis.samples import PortRates
from vmqos.core.analysis.usage import Counted, UsageKey, counts, deltas, period_start
from vmqos.core.errors import InvalidValue
from vmqos.core.model.network import (
    BandwidthLimit,
    DirectionQos,
    NetworkQos,
    PacketRateLimit,
)
from vmqos.core.observed import CounterValue
from vmqos.monitor.daemon import EXAMPLE_CONFIG, MonitorConfig, load_config
from vmqos.store import Store
from vmqos.store import monitor as mstore

U64 = 1 << 64


@given(st.integers(0, U64 - 1), st.integers(0, 1 << 40))
def test_a_counter_that_wrapped_counts_across_the_wrap(start, step):
    assert counter_delta(start, (start + step) % U64) == step


def test_a_counter_that_restarted_counts_since_the_restart():
    assert counter_delta(10_000_000, 1_500) == 1_500  # a qdisc recreated by a re-apply
    assert counter_delta(10_000_000, 9_999_990, derived=True) == 0  # a derived value wobbling
    assert counter_delta(10_000_000, 1_500, derived=True) == 1_500


def test_flow_rate_in_frames_per_second():
    before = Flow(offered_bytes=1000, offered_packets=10, delivered_bytes=1000, delivered_packets=10)
    after = Flow(offered_bytes=1000 + 2_500_000, offered_packets=10 + 2000, delivered_bytes=1000 + 1_250_000,
                 delivered_packets=10 + 1000, dropped_packets=1000, backlog_bytes=3028)
    r = flow_rate(before, after, 2.0, limit_bps=5_000_000)
    assert (r.offered_bps, r.delivered_bps, r.offered_pps, r.dropped_pps) == (10_000_000, 5_000_000, 1000, 500)
    assert r.dropped_bps == 5_000_000 and r.utilisation == 1.0 and r.mean_packet_bytes == 1250
    assert r.backlog_bytes == 3028
    with pytest.raises(ValueError):
        flow_rate(before, after, 0)


def _rate(pps: float, mean: float = 1500, limit_bps: int | None = None, delivered_bps: float | None = None,
          dropped_pps: float = 0.0) -> FlowRate:
    bps = pps * mean * 8
    return FlowRate(1.0, bps, bps if delivered_bps is None else delivered_bps, pps, pps, dropped_pps, 0, limit_bps)


def _pr(port: str, rate: FlowRate, syn: float | None = None, direction: str = "egress") -> dict[str, PortRates]:
    return {port: PortRates(port, "vm1", {direction: rate}, None, syn)}


def test_a_flood_is_an_event_only_once_it_held_and_ends_once_it_cleared():
    det = Detectors(Thresholds(for_seconds=2))
    flood = _pr("tap1", _rate(80_000, mean=64), syn=70_000)
    assert det.update(0.0, flood) == ([], [])
    assert det.update(1.0, flood) == ([], [])
    started, ended = det.update(2.0, flood)
    assert {d.detector for d in started} == {PACKET_RATE, SMALL_PACKETS, SYN_FLOOD} and not ended
    assert det.update(3.0, flood) == ([], [])  # once, not every sample
    calm = _pr("tap1", _rate(100))
    assert det.update(4.0, calm) == ([], [])
    assert det.update(5.0, flood)[0] == []  # back before it ended: still the same event
    det.update(6.0, calm)
    det.update(7.0, calm)
    _, ended = det.update(8.0, calm)
    assert {d.detector for d in ended} == {PACKET_RATE, SMALL_PACKETS, SYN_FLOOD} and det.active() == []


def test_an_active_flood_ends_when_its_port_goes_and_a_quiet_port_leaves_nothing_tracked():
    det = Detectors(Thresholds(for_seconds=1))
    flood = _pr("tap1", _rate(80_000, mean=64))
    det.update(0.0, flood)
    started, _ = det.update(1.0, {**flood, **_pr("tap2", _rate(100))})
    assert {d.port for d in started} == {"tap1"}
    _, ended = det.update(2.0, _pr("tap2", _rate(100)))  # tap1 was removed
    assert {(d.port, d.detector) for d in ended} == {("tap1", PACKET_RATE), ("tap1", SMALL_PACKETS)}
    assert det.active() == [] and det._tracks == {}
    det.update(3.0, _pr("tap2", _rate(80_000, mean=64)))  # held once, then calm: forgotten
    det.update(4.0, _pr("tap2", _rate(100)))
    assert det._tracks == {}


def test_syn_share_needs_both_the_share_and_the_rate_and_only_from_the_instance():
    det = Detectors(Thresholds(for_seconds=0))
    few = det.update(0.0, _pr("a", _rate(3_000, mean=60), syn=1_000))[0]  # 33 % SYNs
    towards = det.update(0.0, _pr("b", _rate(9_000, mean=60), syn=8_000, direction="ingress"))[0]
    assert SYN_FLOOD not in {d.detector for d in few + towards}
    hit = det.update(0.0, _pr("c", _rate(9_000, mean=60), syn=8_000))[0]
    assert SYN_FLOOD in {d.detector for d in hit} and "89%" in [d for d in hit if d.detector == SYN_FLOOD][0].message


def test_pinned_at_the_limit_with_drops_takes_its_own_time():
    det = Detectors(Thresholds(for_seconds=1, pinned_seconds=10))
    full = _pr("a", _rate(800, limit_bps=10_000_000, delivered_bps=9_950_000, dropped_pps=50))
    for t in range(10):
        assert PINNED not in {d.detector for d in det.update(float(t), full)[0]}
    assert PINNED in {d.detector for d in det.update(10.0, full)[0]}


def test_quarantine_then_lift_after_the_cool_down():
    det = Detectors(Thresholds(for_seconds=0))
    det.update(0.0, _pr("tap1", _rate(90_000, mean=64)))
    active = det.active()
    triggers = (PACKET_RATE, SMALL_PACKETS, SYN_FLOOD)
    (act,) = decide(0.0, active, {}, {}, triggers, 30)
    assert act.kind == "quarantine" and act.port == "tap1" and "packets/s" in act.reason
    assert decide(1.0, active, {"tap1": 0.0}, {"tap1": 1.0}, triggers, 30) == []  # still flooding
    assert decide(20.0, [], {"tap1": 0.0}, {"tap1": 1.0}, triggers, 30) == []  # calm for 19 s only
    (lift,) = decide(31.0, [], {"tap1": 0.0}, {"tap1": 1.0}, triggers, 30)
    assert lift.kind == "lift" and "30 s" in lift.reason
    pinned_only = [d for d in Detectors(Thresholds(for_seconds=0, pinned_seconds=0)).update(
        0.0, _pr("x", _rate(800, limit_bps=10_000_000, delivered_bps=10_000_000, dropped_pps=9)))[0]]
    assert decide(0.0, pinned_only, {}, {}, triggers, 30) == []  # a busy customer is not a flood


def test_monitor_config_defaults_example_and_errors():
    assert load_config(None) == MonitorConfig()
    example = load_config(EXAMPLE_CONFIG)
    assert example == MonitorConfig()
    custom = load_config("interval: 0.5\ndetectors: {syn_min_pps: 100}\nresponse:\n  cooldown: 5\n"
                         "  quarantine: {egress: {rate: 2mbit, pps: 500}}\n")
    assert custom.interval_s == 0.5 and custom.thresholds.syn_min_pps == 100 and custom.cooldown_s == 5
    assert custom.quarantine == NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(2_000_000),
                                                               packet_rate=PacketRateLimit(500)))
    for bad, where in (("detectors: {syn_rate: 1}", "detectors"), ("response: {triggers: [ddos]}", "response.triggers"),
                       ("interval: -1", "config.interval"), ("colour: red", "monitor config"),
                       ("response: {quarantine: {egress: {rate: fast}}}", "response.quarantine"), (":", "")):
        with pytest.raises(InvalidValue, match=where):
            load_config(bad)


def test_usage_counts_deltas_and_periods():
    elements = [(("tap-vm1", "10.247.0.11", "10.247.0.130"), CounterValue(10, 1000)),
                (("bad",), CounterValue(1, 1))]
    egress = counts("egress", elements)
    key = UsageKey("egress", "tap-vm1", "10.247.0.11", "10.247.0.130")
    assert egress == {key: Counted(1000 + 14 * 10, 10)}  # the ingress hook sees IP packets: add the frame header
    towards = UsageKey("ingress", key.device, key.local_ip, key.remote_ip)
    assert counts("ingress", elements) == {towards: Counted(1000, 10)}  # the egress hook sees frames already
    assert deltas({key: Counted(500, 5)}, {key: Counted(1140, 10)}) == {key: Counted(640, 5)}
    assert deltas({key: Counted(5000, 50)}, {key: Counted(140, 1)}) == {key: Counted(140, 1)}  # element expired
    assert deltas({key: Counted(140, 1)}, {key: Counted(140, 1)}) == {}
    at = datetime(2026, 12, 2, 13, 47, 5, tzinfo=UTC)
    assert period_start(at, "hour") == datetime(2026, 12, 2, 13, tzinfo=UTC)
    assert period_start(at, "day") == datetime(2026, 12, 2, tzinfo=UTC)


def test_events_quarantines_and_usage_in_the_store(db_url):  # SQLite and PostgreSQL (its ON CONFLICT upsert)
    with Store(db_url) as store:
        t0 = datetime(2026, 12, 2, 13, 0, tzinfo=UTC)
        first = mstore.add_event(store, "ns", t0, "tap1", "detected", "80,000 packets/s", instance="vm1",
                                 direction="egress", detector=PACKET_RATE)
        mstore.add_event(store, "ns", t0 + timedelta(seconds=3), "tap1", "quarantined", "quarantined: flood")
        mstore.add_event(store, "other", t0, "tap9", "detected", "elsewhere")
        got = mstore.events(store, "ns")
        assert [e.kind for e in got] == ["detected", "quarantined"] and got[0].instance == "vm1"
        assert [e.kind for e in mstore.events(store, "ns", after_id=first)] == ["quarantined"]
        assert mstore.events(store, "ns", since=t0 + timedelta(seconds=1))[0].kind == "quarantined"
        assert mstore.events(store, "ns", limit=1)[0].kind == "quarantined"  # the newest
        q = mstore.Quarantine("tap1", MonitorConfig().quarantine, "flood", t0)
        mstore.put_quarantine(store, "ns", q)
        assert mstore.quarantines(store, "ns") == {"tap1": q} and mstore.quarantines(store, "other") == {}
        assert mstore.lift_quarantine(store, "ns", "tap1") and not mstore.lift_quarantine(store, "ns", "tap1")

        key = UsageKey("ingress", "tap1", "10.0.0.11", "10.0.0.130")
        mstore.record_usage(store, "ns", t0 + timedelta(minutes=5), {key: Counted(1000, 2)}, {key: Counted(1000, 2)})
        mstore.record_usage(store, "ns", t0 + timedelta(minutes=50), {key: Counted(500, 1)}, {key: Counted(1500, 3)})
        mstore.record_usage(store, "ns", t0 + timedelta(minutes=65), {key: Counted(7, 1)}, {key: Counted(1507, 4)})
        hours = mstore.usage(store, "ns")
        assert [(u.period_start.hour, u.bytes, u.packets) for u in hours] == [(13, 1500, 3), (14, 7, 1)]
        (day,) = mstore.usage(store, "ns", granularity="day")
        assert (day.bytes, day.packets) == (1507, 4)
        assert mstore.usage(store, "ns", since=t0 + timedelta(minutes=61))[0].bytes == 7
        assert mstore.usage_cursors(store, "ns") == {key: Counted(1507, 4)}
        mstore.record_usage(store, "ns", t0 + timedelta(minutes=66), {}, {})
        assert mstore.usage_cursors(store, "ns") == {}  # elements gone from the kernel are forgotten


def test_since_and_sparklines():
    assert abs((datetime.now(UTC) - parse_since("2h")).total_seconds() - 7200) < 5
    assert parse_since("2026-12-02T08:00") == datetime(2026, 12, 2, 8, tzinfo=UTC)
    with pytest.raises(InvalidValue, match="--since"):
        parse_since("yesterday")
    assert sparkline([0, 5, 10], 10) == "▁▅█" and sparkline([], None) == ""


def test_a_quarantined_port_is_planned_policed_under_the_strictest_limits(tmp_path):
    from vmqos.core.model.host import HostState, InstanceSpec, PortSpec
    from vmqos.services.ports import desired_plans

    own = NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(50_000_000)))
    state = HostState(instances={"vm1": InstanceSpec("vm1", ports=(PortSpec("tap1", limits=own),))})
    with Store(f"sqlite:///{tmp_path}/q.db") as store:
        before = desired_plans(store, "ns", state)["tap1"]
        assert before.egress.mechanism.startswith("htb on ifb")
        mstore.put_quarantine(store, "ns", mstore.Quarantine("tap1", MonitorConfig().quarantine, "flood",
                                                             datetime.now(UTC)))
        after = desired_plans(store, "ns", state)["tap1"]
    assert after.egress.rate_bps == 1_000_000 and after.egress.pps == 1000
    assert after.egress.mechanism.startswith("police") and after.ifb is None
    assert after.egress.source["rate_bps"].startswith("quarantine (flood)")


def test_only_the_qdiscs_a_plan_makes_are_read_as_limiters():
    """A port limited by nft alone keeps the kernel's default root qdisc: it must not be read as an HTB."""
    from vmqos.core.analysis.samples import planned_qdiscs
    from vmqos.core.model.host import HostState, InstanceSpec, PortSpec
    from vmqos.core.plan.host import plan_host
    from vmqos.core.plan.names import ifb_name

    shaped = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(20_000_000)),
                        egress=DirectionQos(bandwidth=BandwidthLimit(20_000_000)))
    pps_only = NetworkQos(ingress=DirectionQos(packet_rate=PacketRateLimit(10_000)))
    state = HostState(instances={"vm1": InstanceSpec("vm1", ports=(PortSpec("tap1", limits=shaped),)),
                                 "vm2": InstanceSpec("vm2", ports=(PortSpec("tap2", limits=pps_only),))})
    planned = planned_qdiscs(plan_host(state))
    assert planned[("qdisc", "tap1", "root")] == "htb" and planned[("qdisc", ifb_name("tap1"), "root")] == "htb"
    assert not any(key[1] == "tap2" for key in planned)
