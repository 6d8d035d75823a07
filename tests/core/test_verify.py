"""Core tier: judging a verification run (steady state, tolerance, load, burst, latency), its parsers and plots."""

from __future__ import annotations

import math

import pytest
from defusedxml import ElementTree
from hypothesis import given
from hypothesis import strategies as st

from vmqos.cli.main import main
from vmqos.core.analysis.iperf import first_address, ping_replies, ping_transmitted
from vmqos.core.analysis.judge import (
    MIN_OVERLOAD,
    STEADY_AFTER_S,
    TOLERANCE,
    Limit,
    Metric,
    RateSample,
    Rtt,
    Traffic,
    Verdict,
    bin_samples,
    choose_metric,
    judge,
    loaded_samples,
    percentile,
    resolution_note,
)
from vmqos.lab.traffic import TrafficResult
from vmqos.verify.plot import base_of, default_base, plot
from vmqos.verify.run import Run, sender_options

MBIT = 1_000_000
FRAME = 1514  # a full-size TCP frame


def series(rates_bps, *, offered=None, frame: int = FRAME, step: float = 0.1, backlog=None) -> list[RateSample]:
    """Samples every `step` seconds from 0: delivered as given, offered as given (or the same), the
    queue's backlog at each sample's end as given (or none: a limiter without a queue)."""
    offered = offered or rates_bps
    backlog = backlog or [0] * len(rates_bps)
    return [RateSample(i * step, (i + 1) * step, o, d, o / 8 / frame, d / 8 / frame, backlog[i - 1] if i else b, b)
            for i, (d, o, b) in enumerate(zip(rates_bps, offered, backlog))]


def steady_run(value: float, *, seconds: float = 3, first=None, offered: float | None = None,
               frame: int = FRAME) -> list[RateSample]:
    n = round(seconds / 0.1)
    head = list(first or [value] * 10)
    body = head + [value] * (n - len(head))
    return series(body, offered=[offered or value] * n, frame=frame)


# -- percentiles ---------------------------------------------------------------------------------

@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=60), st.floats(0, 1), st.floats(0, 1))
def test_a_percentile_is_one_of_the_values_and_grows_with_q(values, q1, q2):
    lo, hi = sorted((q1, q2))
    assert percentile(values, lo) in values and percentile(values, lo) <= percentile(values, hi)
    assert percentile(values, 0) == min(values) and percentile(values, 1) == max(values)


def test_the_95th_percentile_by_nearest_rank():
    assert percentile(list(range(1, 101)), 0.95) == 95
    assert percentile([3.0], 0.5) == 3.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


# -- tcp: within 5 % both ways ---------------------------------------------------------------------

@given(st.floats(-0.3, 0.3))
def test_tcp_passes_within_the_tolerance_and_fails_outside_it(error):
    limit = Limit(rate_bps=20 * MBIT)
    j = judge(Traffic.TCP, limit, steady_run(20 * MBIT * (1 + error)))
    assert j.metric is Metric.BPS and j.limit == 20 * MBIT and j.phase == "steady"
    assert j.error == pytest.approx(error, abs=1e-9)
    if abs(error) <= TOLERANCE - 1e-9:
        assert j.verdict is Verdict.PASS and j.verdict.ok
    elif abs(error) >= TOLERANCE + 1e-9:
        assert j.verdict is (Verdict.OVER if error > 0 else Verdict.UNDER) and not j.verdict.ok


@given(st.lists(st.floats(0, 200 * MBIT), min_size=10, max_size=10))
def test_the_first_second_is_the_burst_and_not_the_steady_state(first):
    j = judge(Traffic.TCP, Limit(rate_bps=20 * MBIT), steady_run(20 * MBIT, first=first))
    assert j.achieved == pytest.approx(20 * MBIT) and j.verdict is Verdict.PASS and j.window[0] >= STEADY_AFTER_S
    assert j.first_second_peak == max(first)
    assert j.overshoot == pytest.approx(max(first) / (20 * MBIT) - 1)


def test_achieved_is_what_passed_in_the_steady_state_divided_by_its_length():
    samples = series([30 * MBIT] * 10 + [19 * MBIT, 21 * MBIT, 20 * MBIT, 40 * MBIT, 0.0, 20.5 * MBIT, 19.5 * MBIT],
                     offered=[40 * MBIT] * 17)
    j = judge(Traffic.TCP, Limit(rate_bps=20 * MBIT), samples)
    assert j.achieved == pytest.approx(20 * MBIT) and j.achieved_median == 20 * MBIT and j.verdict is Verdict.PASS
    uneven = [RateSample(1.0, 1.1, 0, 10 * MBIT, 0, 0), RateSample(1.1, 1.4, 0, 30 * MBIT, 0, 0)]
    assert judge(Traffic.TCP, Limit(rate_bps=25 * MBIT), series([0.0] * 10) + uneven).achieved == \
        pytest.approx(25 * MBIT)  # weighted by each sample's length


def test_samples_in_steps_of_whole_gso_aggregates_are_judged_by_their_mean():
    """At 3 Mbit/s a 64 KB aggregate leaves the queue every 175 ms: a 100 ms sample sees 0, 1 or 2 of them.

    The queue stays full meanwhile (a TCP sender fills its 128 KiB, as measured on a lab port).
    """
    limit, aggregate = 3 * MBIT, 65_536 * 8
    every = aggregate / limit
    counts = [math.floor((i + 1) * 0.1 / every) - math.floor(i * 0.1 / every) for i in range(60)]
    samples = series([c * aggregate / 0.1 for c in counts], backlog=[100_000] * 60)
    j = judge(Traffic.TCP, Limit(rate_bps=limit), samples)
    assert abs(j.achieved - limit) <= aggregate / (j.window[1] - j.window[0])  # within one aggregate
    assert j.verdict is Verdict.PASS and j.achieved_median in (0.0, aggregate / 0.1)  # the median is a step
    assert "--duration" not in j.reason  # 5 s judged: one aggregate is 3.5 %
    short = judge(Traffic.TCP, Limit(rate_bps=limit), samples[:30])
    assert "one 64 KB GSO aggregate is 9% of the 2.0 s judged: --duration 5 or more" in short.reason
    assert resolution_note(20 * MBIT, 2.0) == ""


def test_samples_where_the_sender_did_not_offer_the_limit_are_not_the_limiters():
    """A TCP sender recovering from a loss offers less than the limit: that time says nothing of it."""
    limit = 200 * MBIT  # one 64 KB aggregate is 2.6 % of 100 ms: the samples are judged one by one
    delivered = [limit] * 16 + [0.1 * limit, 0.0, 0.25 * limit] + [limit] * 11
    offered = [limit] * 16 + [0.1 * limit, 0.0, 0.2 * limit] + [1.02 * limit] * 11
    backlog = [0] * 17 + [0, 1500] + [0] * 11  # a queue almost empty, as BBR keeps it
    j = judge(Traffic.TCP, Limit(rate_bps=limit), series(delivered, offered=offered, backlog=backlog))
    assert j.verdict is Verdict.PASS and j.achieved == pytest.approx(limit)
    assert (j.measured_samples, j.window_samples) == (17, 20) and len(j.measured) == 17


def test_loaded_time_is_chosen_in_bins_as_long_as_the_resolution_needs():
    assert bin_samples(Metric.BPS, 200 * MBIT, 0.1) == 1
    assert bin_samples(Metric.BPS, 20 * MBIT, 0.1) == 6  # 0.52 s for one aggregate to be 5 %
    assert bin_samples(Metric.BPS, 3 * MBIT, 0.1) == 35
    assert bin_samples(Metric.PPS, 10_000, 0.1) == 1
    # A sporadic sender at 3 Mbit/s: an aggregate now and then, sent at once from an empty queue.
    # Chosen sample by sample, the ones with an aggregate would read 5.2 Mbit/s; the window holds 1.
    delivered = [65_536 * 8 / 0.1 if i % 3 == 0 else 0.0 for i in range(30)]
    j = judge(Traffic.TCP, Limit(rate_bps=3 * MBIT), series(delivered))
    assert j.measured_samples == j.window_samples and j.verdict is Verdict.UNDER
    assert j.achieved == pytest.approx(sum(delivered[10:]) / 20)
    queued = [RateSample(0, 0.1, 0, 0, 0, 0, 3_000_000, 3_000_000)]  # 24 Mbit held: 100 ms at 240 Mbit/s
    assert len(loaded_samples(queued, Metric.BPS, 200 * MBIT)) == 1
    assert len(loaded_samples(queued, Metric.BPS, 300 * MBIT)) == 0
    assert len(loaded_samples([RateSample(0, 0.1, 0, 0, 12_000, 9_000)], Metric.PPS, 10_000)) == 1


def test_a_limiter_that_lets_too_much_through_is_over_in_its_loaded_samples():
    j = judge(Traffic.TCP, Limit(rate_bps=20 * MBIT), steady_run(30 * MBIT, offered=30 * MBIT))
    assert j.measured_samples == 20 and j.verdict is Verdict.OVER
    low = judge(Traffic.TCP, Limit(rate_bps=20 * MBIT), steady_run(15 * MBIT, offered=25 * MBIT))
    assert low.measured_samples == 20 and low.verdict is Verdict.UNDER  # loaded, and still too little


def test_a_limiter_rarely_loaded_means_the_sender_did_not_offer_the_limit():
    j = judge(Traffic.TCP, Limit(rate_bps=20 * MBIT), steady_run(10 * MBIT))
    assert j.measured_samples == j.window_samples == 20 and j.verdict is Verdict.UNDER
    assert "loaded in only 0 of 20 samples" in j.reason


# -- floods: not over the limit, and enough offered ------------------------------------------------

def test_udp_must_offer_well_above_the_limit_to_be_judged():
    limit = Limit(rate_bps=20 * MBIT)
    short = judge(Traffic.UDP, limit, steady_run(19 * MBIT, offered=MIN_OVERLOAD * 20 * MBIT * 0.98, frame=1442))
    assert short.verdict is Verdict.NO_LOAD and "1.25x" in short.reason and not short.verdict.ok
    held = judge(Traffic.UDP, limit, steady_run(20.9 * MBIT, offered=40 * MBIT, frame=1442))
    assert held.verdict is Verdict.PASS
    over = judge(Traffic.UDP, limit, steady_run(21.2 * MBIT, offered=40 * MBIT, frame=1442))
    assert over.verdict is Verdict.OVER and "6.0% over" in over.reason
    low = judge(Traffic.UDP, limit, steady_run(15 * MBIT, offered=40 * MBIT, frame=1442))
    assert low.verdict is Verdict.PASS and "below it" in low.reason  # a flood is judged by not exceeding


def test_small_packets_are_judged_by_the_limit_that_binds_first():
    both = Limit(rate_bps=20 * MBIT, pps=10_000)
    assert choose_metric(Traffic.SMALL_PACKETS, both, 64) == (Metric.PPS, 10_000)  # 20 Mbit/s = 39,062 pps
    assert choose_metric(Traffic.SMALL_PACKETS, Limit(rate_bps=1 * MBIT, pps=10_000), 64) == (Metric.BPS, 1 * MBIT)
    assert choose_metric(Traffic.UDP, both, 1442) == (Metric.BPS, 20 * MBIT)  # 1,734 pps of 1442-byte frames
    assert choose_metric(Traffic.TCP, both, 64) == (Metric.BPS, 20 * MBIT)
    assert choose_metric(Traffic.SMALL_PACKETS, Limit(pps=5_000), None) == (Metric.PPS, 5_000)
    assert choose_metric(Traffic.SMALL_PACKETS, Limit(), 64) == (Metric.PPS, None)
    pps = 10_000 * 64 * 8
    j = judge(Traffic.SMALL_PACKETS, both, steady_run(pps * 1.01, offered=pps * 12, frame=64))
    assert j.metric is Metric.PPS and j.achieved == pytest.approx(10_100) and j.verdict is Verdict.PASS


# -- no limit ------------------------------------------------------------------------------------

def test_a_direction_without_a_limit_reports_what_it_carried():
    j = judge(Traffic.TCP, Limit(), steady_run(9_000 * MBIT))
    assert j.verdict is Verdict.NO_LIMIT and not j.verdict.ok and j.error is None and j.overshoot is None
    assert j.achieved == pytest.approx(9_000 * MBIT)
    pps_only = judge(Traffic.TCP, Limit(pps=1_000), steady_run(900 * MBIT))
    assert pps_only.verdict is Verdict.NO_LIMIT and "small-packets" in pps_only.reason


# -- a peak with its burst -------------------------------------------------------------------------

def test_a_peak_is_judged_while_its_burst_lasts_and_the_average_after():
    limit = Limit(rate_bps=10 * MBIT, peak_bps=20 * MBIT, burst_bytes=5 * MBIT)  # 40 Mbit over 10 Mbit/s: 4 s
    assert limit.burst_seconds == pytest.approx(4.0)
    during = judge(Traffic.TCP, limit, steady_run(20 * MBIT, seconds=3))
    assert during.phase == "burst" and during.limit == 20 * MBIT and during.verdict is Verdict.PASS
    assert during.overshoot == pytest.approx(1.0)  # relative to the average
    longer = judge(Traffic.TCP, limit, series([20 * MBIT] * 40 + [10 * MBIT] * 30))
    assert longer.phase == "steady" and longer.limit == 10 * MBIT and longer.window[0] >= 4.0
    assert longer.verdict is Verdict.PASS
    assert Limit(rate_bps=10 * MBIT, burst_bytes=1 << 20).burst_seconds == 0.0  # no peak: no long burst
    assert "peak 20 Mbit/s for 4.0 s" in limit.describe()


# -- latency ---------------------------------------------------------------------------------------

def test_added_latency_is_the_loaded_median_minus_the_idle_one():
    idle = [Rtt(-1 + i * 0.1, us) for i, us in enumerate([250, 60, 61, 59, 60, 62, 60])]
    loaded = [Rtt(0.05, 90_000)] + [Rtt(1.0 + i * 0.1, 20_000 + i * 100) for i in range(20)]
    j = judge(Traffic.TCP, Limit(rate_bps=20 * MBIT), steady_run(20 * MBIT), idle, loaded, loaded_sent=30)
    lat = j.latency
    assert lat.idle_p50_us == 60 and lat.loaded_p50_us == 20_950  # the first second's 90 ms is not judged
    assert lat.loaded_p95_us == 21_800 and lat.added_us == 20_890
    assert lat.loaded_replies == 21 and lat.loaded_sent == 30
    assert judge(Traffic.TCP, Limit(), steady_run(1.0)).latency.added_us is None


def test_a_run_without_samples_is_refused():
    with pytest.raises(ValueError):
        judge(Traffic.TCP, Limit(rate_bps=1), [])


# -- parsers -------------------------------------------------------------------------------------

PING = """PING 10.247.0.130 (10.247.0.130) 56(84) bytes of data.
[1796218276.356340] 64 bytes from 10.247.0.130: icmp_seq=1 ttl=63 time=0.246 ms
[1796218276.457221] 64 bytes from 10.247.0.130: icmp_seq=2 ttl=63 time=12.5 ms
[1796218276.500000] From 10.247.0.1 icmp_seq=3 Destination Host Unreachable
[1796218276.561214] 64 bytes from 10.247.0.130: icmp_seq=4 ttl=63 time=1203 ms

--- 10.247.0.130 ping statistics ---
5 packets transmitted, 3 received, 40% packet loss, time 405ms
"""


def test_ping_replies_with_their_times_and_what_was_sent():
    replies = ping_replies(PING, 1796218276.0)
    assert [r.rtt_us for r in replies] == [246, 12_500, 1_203_000]
    assert replies[0].at_s == pytest.approx(0.35634)
    assert ping_transmitted(PING) == 5 and ping_transmitted("interrupted early") is None


def test_the_first_global_address_of_a_namespace_ipv4_first():
    text = ('[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","scope":"host"},'
            '{"family":"inet6","local":"::1","scope":"host"}]},'
            '{"ifname":"eth0","addr_info":[{"family":"inet6","local":"fd00:1::11","scope":"global"},'
            '{"family":"inet","local":"10.247.0.11","prefixlen":25,"scope":"global"},'
            '{"family":"inet6","local":"fe80::1","scope":"link"}]}]')
    assert first_address(text) == "10.247.0.11"
    v6 = ('[{"ifname":"eth0","addr_info":[{"family":"inet6","local":"fd00:1::12","scope":"global","tentative":true},'
          '{"family":"inet6","local":"fd00:1::11","scope":"global"},{"family":"inet6","local":"fe80::1","scope":"link"}]}]')
    assert first_address(v6) == "fd00:1::11"  # not one still in duplicate address detection
    assert first_address("[]") is None and first_address("") is None


def test_an_endpoint_address_is_checked_and_both_ends_share_a_family():
    from vmqos.core.errors import InvalidValue
    from vmqos.verify.targets import Endpoint, Target

    with pytest.raises(InvalidValue, match="one family"):
        Target("tap1", None, Endpoint("vm1", "ns1", "fd00::1"), Endpoint("wan", "ns2", "10.0.0.2"))
    assert Target("tap1", None, Endpoint("vm1", "ns1", "fd00::1"), Endpoint("wan", "ns2", "fd00::2")).peer.address


def test_what_each_kind_of_traffic_tells_iperf3():
    assert sender_options(Traffic.TCP, Limit(rate_bps=MBIT), None) == []
    assert sender_options(Traffic.UDP, Limit(rate_bps=20 * MBIT), None)[:6] == ["-u", "-l", "1400", "-b",
                                                                                str(40 * MBIT), "-w"]
    assert str(1_000_000_000) in sender_options(Traffic.UDP, Limit(), None)
    assert sender_options(Traffic.UDP, Limit(), 5 * MBIT)[4] == str(5 * MBIT)
    small = sender_options(Traffic.SMALL_PACKETS, Limit(pps=10_000), None)
    assert small == ["-u", "-l", "22", "-b", "0", "-w", "4M"]  # 22 + 8 + 20 + 14 = a 64-byte frame


# -- plots ---------------------------------------------------------------------------------------

def _run(judgement_samples, limit: Limit) -> Run:
    idle = (Rtt(-0.5, 60), Rtt(-0.4, 70))
    loaded = tuple(Rtt(i * 0.1, 10_000 + 500 * i) for i in range(30))
    j = judge(Traffic.TCP, limit, judgement_samples, idle, loaded, 30)
    return Run("ingress", Traffic.TCP, limit, 3.0, "iperf3, one TCP stream", tuple(judgement_samples), idle, loaded,
               TrafficResult("tcp", 3.5, 19.2 * MBIT, 19.1 * MBIT, retransmits=0), j)


def test_a_plot_is_written_as_png_and_svg(tmp_path):
    run = _run(steady_run(20 * MBIT, first=[40 * MBIT] * 3 + [20 * MBIT] * 7), Limit(rate_bps=20 * MBIT))
    png, svg = plot(run, "tap-vm1", str(tmp_path / "sub" / "verify"))
    assert png.endswith(".png") and svg.endswith(".svg")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert ElementTree.parse(svg).getroot().tag.endswith("svg")
    unlimited = _run(steady_run(900 * MBIT), Limit())
    assert all(p.endswith((".png", ".svg")) for p in plot(unlimited, "tap-vm1", str(tmp_path / "none")))


def test_plot_names():
    assert default_base("tap-vm1", "egress", "udp", "out") == "out/vmqos-verify-tap-vm1-egress-udp"
    assert default_base("a/b c", "ingress", "tcp") == "./vmqos-verify-a_b_c-ingress-tcp"
    assert base_of("x/run.png", "ingress", False) == "x/run"
    assert base_of("x/run.svg", "egress", True) == "x/run-egress"
    assert base_of("x/run", "egress", True) == "x/run-egress"


# -- the command's checks, before any traffic ------------------------------------------------------

def test_verify_refuses_contradicting_options(capsys):
    assert main(["verify", "vm1", "--lab", "vqx", "--netns", "vqx-host"]) == 2
    assert "give --lab or --netns, not both" in capsys.readouterr().err
    assert main(["verify", "vm1", "--lab", "vqx", "--duration", "1"]) == 2
    assert "--duration" in capsys.readouterr().err
    assert main(["verify", "vm1", "--lab", "vqx", "--plot-dir", "d", "--no-plot"]) == 2
    assert main(["verify", "vm1", "--lab", "vqx", "--traffic", "udp", "--offer", "0"]) == 2
    assert main(["verify", "--help"]) == 0
    assert "Exit status" in capsys.readouterr().out


def test_only_samples_within_the_load_are_kept_and_too_few_is_an_error():
    from vmqos.core.errors import KernelError
    from vmqos.verify.run import _within_load
    from vmqos.verify.targets import Endpoint, Target

    target = Target("tap-vm1", "vq-host", Endpoint("vm1", "vq-vm1", "10.0.0.1"), Endpoint("wan", "vq-wan", "10.0.0.2"))
    samples = series([20 * MBIT] * 30)
    stuck = samples[:-1] + [RateSample(2.9, 190.0, 0, 0, 0, 0)]  # one pass blocked for three minutes
    assert _within_load(stuck, target, 3.0) == samples[:-1]
    with pytest.raises(KernelError, match=r"on time only 3 times .*the longest interval was 188\.7 s"):
        _within_load(samples[:13] + [RateSample(1.3, 190.0, 0, 0, 0, 0)], target, 3.0)
