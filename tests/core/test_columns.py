"""Core tier: the columnar sample gives what the per-port records give, port for port (issue 17).

The sampler's arrays path runs with its three reads replaced by arrays filled in advance (what
the C decoder would have written), once with columns and once with records, on the same arrays:
shaped, policed and half-limited ports; a root qdisc missing; a counter no plan names; a device
gone; queues recreated (counters that step back) and a SYN counter that restarts. Samples and
rates must be equal, and the columnar sampler must really have taken the columns.
"""

from __future__ import annotations

import time
from array import array
from typing import Any

import numpy as np
import pytest

from vmqos.core.analysis.columns import LazyPorts, LazyRates
from vmqos.core.analysis.detect import Thresholds, _conditions, hit_rows
from vmqos.core.model.host import EgressMode, HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import BandwidthLimit, DirectionQos, NetworkQos, PacketRateLimit
from vmqos.core.plan.host import plan_host
from vmqos.core.plan.names import ifb_name
from vmqos.drivers import counter_arrays
from vmqos.drivers.counter_arrays import LINK_FIELDS, NFT_FIELDS, QDISC_FIELDS
from vmqos.monitor.sampler import Sampler, rates

pytestmark = pytest.mark.skipif(not counter_arrays.available(), reason="the compiled decoder is not built (make)")


def _state(n: int) -> HostState:
    both = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(10_000_000), packet_rate=PacketRateLimit(4000)),
                      egress=DirectionQos(bandwidth=BandwidthLimit(20_000_000), packet_rate=PacketRateLimit(3000)))
    police = NetworkQos(egress=DirectionQos(bandwidth=BandwidthLimit(5_000_000)))
    down_only = NetworkQos(ingress=DirectionQos(bandwidth=BandwidthLimit(1_000_000)))
    kinds = [(both, EgressMode.SHAPE), (police, EgressMode.POLICE), (down_only, EgressMode.SHAPE)]
    out = {}
    for i in range(n):
        limits, mode = kinds[0] if i % 5 else kinds[(i // 5) % 3]
        out[f"vm{i}"] = InstanceSpec(f"vm{i}", ports=(PortSpec(f"vqc{i}", limits=limits, egress_mode=mode),))
    return HostState(instances=out)


class FakeReads:
    """Stands for `ArrayReader`'s reads: the arrays of the current tick, as the decoder fills them."""

    def __init__(self, sizes: tuple[int, int, int], devices: tuple[int, int], kinds: list[tuple[int, int]]) -> None:
        nq, nl, nc = sizes
        self.rng = np.random.default_rng(17)
        self.devices = devices
        self.q = np.zeros((nq, QDISC_FIELDS), dtype=np.uint64)
        for slot, words in enumerate(kinds):
            if words[0] >= 0:
                self.q[slot, 0], self.q[slot, 3], self.q[slot, 4] = 1, words[0], words[1]
        self.links = np.zeros((nl, LINK_FIELDS), dtype=np.uint64)
        self.links[:, 0] = 1
        self.c = np.zeros((nc, NFT_FIELDS), dtype=np.uint64)
        self.c[:, 0] = 1
        self.unknown: list[tuple[str, int, int]] = []

    def advance(self) -> None:
        nq = self.q.shape[0]
        packets = self.rng.integers(0, 8000, nq).astype(np.uint64)
        self.q[:, 6] += packets
        self.q[:, 5] += packets * self.rng.integers(60, 1500, nq).astype(np.uint64)
        self.q[:, 7] += self.rng.integers(0, 20, nq).astype(np.uint64)
        self.q[:, 10] = self.rng.integers(0, 5, nq).astype(np.uint64)
        self.q[:, 9] = self.q[:, 10] * np.uint64(1400)
        self.links[:, 1:7] += self.rng.integers(0, 8000, (self.links.shape[0], 6)).astype(np.uint64)
        grow = self.rng.integers(0, 300, self.c.shape[0]).astype(np.uint64)
        self.c[:, 1] += grow
        self.c[:, 2] += grow * np.uint64(80)

    def links_(self, layout: Any) -> tuple[array, tuple[int, int]]:
        return array("Q", self.links.tobytes()), self.devices

    def qdiscs(self, layout: Any, by_get: bool = False, slots: Any = None) -> array:
        return array("Q", self.q.tobytes())

    def counters(self, layout: Any, table: str = "vmqos", names: Any = None) -> tuple[array, list[Any]]:
        return array("Q", self.c.tobytes()), list(self.unknown)

    def leaves_by_get(self, leaves: Any, batch: int = 256) -> array:
        return array("Q", bytes(8 * QDISC_FIELDS * 2 * len(leaves)))


def _sampler(plans: dict[str, Any], columns: bool) -> tuple[Sampler, Any]:
    sampler = Sampler(None, method="arrays", columns=columns)
    ports = list(plans)
    sampler._names = {idx: name for i, p in enumerate(ports) for idx, name in ((2 * i + 1, p), (2 * i + 2, ifb_name(p)))}
    sampler._devices = (len(sampler._names), sum(sampler._names))
    sampler._names_at = time.monotonic()
    return sampler, sampler._slots_of(sampler._watch(plans))


def _patch(sampler: Sampler, fake: FakeReads) -> None:
    reader = sampler._arrays
    assert reader is not None
    reader.links = fake.links_  # type: ignore[method-assign]
    reader.qdiscs = fake.qdiscs  # type: ignore[method-assign]
    reader.counters = fake.counters  # type: ignore[method-assign]
    reader.leaves_by_get = fake.leaves_by_get  # type: ignore[method-assign]


def _samplers(plans: dict[str, Any], fake: FakeReads) -> tuple[Sampler, Sampler]:
    new, _ = _sampler(plans, True)
    old, _ = _sampler(plans, False)
    _patch(new, fake)
    _patch(old, fake)
    return new, old


def _fake(plans: dict[str, Any]) -> FakeReads:
    probe, slots = _sampler(plans, True)
    kinds = [k for row in slots.rows for k in (row[3], row[5])]
    fake = FakeReads(slots.layout.sizes(), probe._devices, kinds)
    probe.close()
    return fake


def test_columns_equal_the_records_port_for_port_and_rate_for_rate():
    plans = plan_host(_state(40))
    fake = _fake(plans)
    new, old = _samplers(plans, fake)
    ports = list(plans)
    with new, old:
        before_new, before_old = new.sample(plans, {"vqc1": "vm1"}), old.sample(plans, {"vqc1": "vm1"})
        assert isinstance(before_new.ports, LazyPorts) and before_new.columns is not None
        assert isinstance(before_old.ports, dict) and before_old.columns is None
        assert before_new.ports == before_old.ports
        for tick in range(4):
            fake.advance()
            if tick == 1:  # a queue recreated (its counters restart), a SYN counter restarts, a root missing
                fake.q[4] = np.array([1, 0, 0, *fake.q[4, 3:5], 100, 1, 0, 0, 0, 0], dtype=np.uint64)
                fake.c[:, 1:3] //= np.uint64(3)
                fake.q[7, 0] = 0
            if tick == 2:  # a counter no plan names, for a port whose plan names its others; a device gone
                fake.unknown = [(f"from_{ports[3]}_syn_extra", 5, 500), (f"to_{ports[6]}_pps_dropped", 9, 900)]
                fake.links[2, 0] = 0
            now_new, now_old = new.sample(plans, {"vqc1": "vm1"}), old.sample(plans, {"vqc1": "vm1"})
            object.__setattr__(now_new, "monotonic", now_old.monotonic)  # the same interval for both
            object.__setattr__(before_new, "monotonic", before_old.monotonic)
            assert now_new.ports == now_old.ports, tick
            got, want = rates(before_new, now_new), rates(before_old, now_old)
            assert isinstance(got, LazyRates) and isinstance(want, dict)
            assert got == want, tick
            assert dict(got) == want and list(got) == list(want) and len(got) == len(want)
            before_new, before_old = now_new, now_old
        # every kind of value was compared
        assert any(r.rates.get("egress") and r.rates["egress"].dropped_pps > 0 for r in want.values())
        assert any(r.syn_pps for r in want.values()) and any(r.link is None for r in want.values())
        police = [want[p] for p in ports if plans[p].egress.rate_bps == 5_000_000]  # egress: nft's counters
        assert police and all(r.rates["egress"].offered_pps > 0 for r in police)


def test_wrong_columns_are_caught(monkeypatch):
    """The comparison above can fail: a formula off by one byte in the columns is seen."""
    plans = plan_host(_state(10))
    fake = _fake(plans)
    new, old = _samplers(plans, fake)
    import vmqos.monitor.columns as columns

    real = columns.build

    def off_by_one(*args: Any, **kwargs: Any) -> Any:
        cols = real(*args, **kwargs)
        cols.flows[0, 0, 0] += 1
        return cols

    monkeypatch.setattr("vmqos.monitor.sampler.build", off_by_one)
    with new, old:
        fake.advance()
        assert new.sample(plans).ports != old.sample(plans).ports


def test_the_detectors_look_at_the_rows_where_a_condition_holds():
    """`hit_rows` (the columns) are the ports where `_conditions` (the records) holds in a direction,
    with thresholds that some ports reach and others do not."""
    plans = plan_host(_state(60))
    fake = _fake(plans)
    new, _ = _samplers(plans, fake)
    th = Thresholds(packet_rate_pps=7_500, small_packet_bytes=400, small_packet_min_pps=6_000, syn_share=0.02,
                    syn_min_pps=250, pinned_utilisation=2.0, pinned_drop_pps=1)
    with new:
        a = new.sample(plans)
        fake.advance()
        b = new.sample(plans)
        object.__setattr__(b, "monotonic", a.monotonic + 1.0)
        got = rates(a, b)
        assert isinstance(got, LazyRates)
        hits = set(hit_rows(got.columns, th).tolist())
        want = {i for i, p in enumerate(got) for d, r in got[p].rates.items() if _conditions(th, d, r, got[p].syn_pps)}
        kinds = {name for p in got for d, r in got[p].rates.items() for name in _conditions(th, d, r, got[p].syn_pps)}
        assert hits == want and 0 < len(hits) < len(got)
        assert kinds == {"packet_rate", "small_packets", "syn_flood", "pinned"}  # each condition was compared


def test_the_exporter_gives_the_same_metrics_from_columns_as_from_records():
    from vmqos.monitor.exporter import families

    plans = plan_host(_state(30))
    fake = _fake(plans)
    new, old = _samplers(plans, fake)
    with new, old:
        fake.advance()
        fake.links[3, 0] = 0  # a device gone
        instances = {p: f"vm-{p}" for p in list(plans)[::2]}
        got, want = new.sample(plans, instances), old.sample(plans, instances)
    assert got.columns is not None and want.columns is None
    quarantined = {list(plans)[4]}

    def metrics(sample: Any) -> list[Any]:
        return [(f.name, [(s.name, s.labels, s.value) for s in f.samples]) for f in families(sample, quarantined)]

    have, expect = metrics(got), metrics(want)
    assert have == expect
    by_name = dict(expect)
    assert len(by_name["vmqos_port_offered_bytes"]) > 30 and by_name["vmqos_port_tcp_syn_packets"]
    assert sum(s[2] for s in by_name["vmqos_port_quarantined"]) == 1


def test_the_agents_report_rates_from_columns_equal_those_from_records():
    from datetime import UTC, datetime

    from vmqos.core.fleet.report import RateSample, rate_samples

    plans = plan_host(_state(30))
    fake = _fake(plans)
    new, _ = _samplers(plans, fake)
    at = datetime.now(UTC)
    with new:
        a = new.sample(plans)
        fake.advance()
        b = new.sample(plans)
        object.__setattr__(b, "monotonic", a.monotonic + 0.9876)
        got = rates(a, b)
    assert isinstance(got, LazyRates)
    want = tuple(RateSample.of(r, at) for _, r in sorted(dict(got).items()))
    have = rate_samples(got, at)
    assert have == want and rate_samples(dict(got), at) == want
    assert any(s.egress.dropped_pps for s in want) and {s.interval_s for s in want} == {0.988}


@pytest.mark.parametrize("sort_by", ["offered", "delivered", "dropped", "pps", "util", "port"])
@pytest.mark.parametrize("reverse", [False, True])
def test_top_orders_the_columns_as_it_sorts_the_rows(sort_by, reverse):
    """`vmqos top`'s live view: the order computed on the columns is `_sort(visible(_rows(...)))`'s,
    ties included (ports with the same figures, a filter), and only the rows asked for are built."""
    from vmqos.cli.top import _row, _rows, _sort
    from vmqos.cli.top_rows import ColumnRows

    plans = plan_host(_state(40))
    fake = _fake(plans)
    new, _ = _samplers(plans, fake)
    instances = {p: f"vm{i % 7}" for i, p in enumerate(plans)}
    with new:
        a = new.sample(plans, instances)
        fake.advance()
        fake.q[10:20] = fake.q[20:30]  # ties: some ports with the same counters as others
        b = new.sample(plans, instances)
        object.__setattr__(b, "monotonic", a.monotonic + 1.0)
        got = rates(a, b)
    assert isinstance(got, LazyRates)
    peaks = {(list(plans)[3], "ingress"): 99}
    for text in (None, "vm3", "vqc1"):
        def keep(port: str, inst: str | None) -> bool:
            return text in port or text in (inst or "")

        want = _sort([r for r in _rows(dict(got), peaks) if text is None or keep(r["port"], r["instance"])],
                     sort_by, reverse)
        view = ColumnRows()
        view.record(got)
        order = view.order(got, sort_by, reverse, keep if text else None)
        shown, history = view.rows(got, order[:10], lambda pr, d: _row(pr, d, peaks))
        assert len(order) == len(want) > 10
        assert shown == want[:10]
        assert view.rows(got, order, lambda pr, d: _row(pr, d, peaks))[0] == want
        assert all(history[(r["port"], r["direction"])] == [r["delivered_bps"]] for r in shown)
