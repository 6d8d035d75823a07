"""The arrays path's samples and rates as per-port records: the path before the columns (issue 17).

Kept as the columns' reference (tests/core/test_columns.py compares them port for port), for a
pass whose counters are too large for int64 columns, and as `Sampler(columns=False)`, what
bench/sample_bench.py measures the columns against. `port_rates` is also the rates of any two
samples that do not share a layout (a sample of the dumps path, a pass after the plans or the
devices changed, the tests' hand-made samples).
"""

from __future__ import annotations

from array import array
from typing import Mapping, Sequence

from vmqos.core.analysis.flows import Flow, flows, queued_flow
from vmqos.core.analysis.rates import counter_delta, flow_rate
from vmqos.core.analysis.samples import PortRates, PortSample, Sample
from vmqos.core.model.checks import ETH_HLEN
from vmqos.core.model.network import DIRECTIONS
from vmqos.core.observed import CounterValue, LinkCounters, TcStats
from vmqos.core.plan.names import chain_from, ifb_name
from vmqos.drivers.counter_arrays import LINK_FIELDS, NFT_FIELDS, QDISC_FIELDS

_NO_COUNT = CounterValue(0, 0)
_NO_FLOW = Flow()
_SYN_NAMES: dict[str, str] = {}  # port -> its SYN counter's name (kept: the same ports come back every pass)


def records(rows: Sequence[tuple], pps_names: Sequence[tuple[str, str]], q: array, lk: array, c: array,
            extra: Mapping[str, dict[str, CounterValue]], instances: Mapping[str, str]) -> dict[str, PortSample]:
    """A `PortSample` per row of the sampler's layout (`sample_layout.Slots.rows`), from the decoder's arrays."""
    ports: dict[str, PortSample] = {}
    for (port, limits, qs, kind, ifb_qs, ifb_kind, ls, own_slots), (pps_in, pps_out) in \
            zip(rows, pps_names):
        own = {}
        for name, slot in own_slots:
            b = slot * NFT_FIELDS
            if c[b]:
                own[name] = CounterValue(c[b + 1], c[b + 2])
        if extra and port in extra:
            own.update(extra[port])
        b, ib = qs * QDISC_FIELDS, ifb_qs * QDISC_FIELDS
        if q[b] and q[b + 3] == kind[0] and q[b + 4] == kind[1] and \
                q[ib] and q[ib + 3] == ifb_kind[0] and q[ib + 4] == ifb_kind[1]:
            # both directions queued (a shaped port): `flows` without its TcStats, the same figures
            d_in, d_out = own.get(pps_in, _NO_COUNT), own.get(pps_out, _NO_COUNT)
            port_flows = {"ingress": queued_flow(q[b + 5], q[b + 6], q[b + 7], q[b + 9], q[b + 10],
                                                 d_in.packets, d_in.bytes),
                          "egress": queued_flow(q[ib + 5], q[ib + 6], q[ib + 7], q[ib + 9], q[ib + 10],
                                                d_out.packets, d_out.bytes + ETH_HLEN * d_out.packets)}
        else:
            stats: dict[tuple[object, ...], TcStats] = {}
            if q[b] and q[b + 3] == kind[0] and q[b + 4] == kind[1]:
                stats[("qdisc", port, "root")] = TcStats(q[b + 5], q[b + 6], q[b + 7], q[b + 8], q[b + 9],
                                                         q[b + 10])
            if q[ib] and q[ib + 3] == ifb_kind[0] and q[ib + 4] == ifb_kind[1]:
                stats[("qdisc", ifb_name(port), "root")] = TcStats(q[ib + 5], q[ib + 6], q[ib + 7], q[ib + 8],
                                                                   q[ib + 9], q[ib + 10])
            port_flows = flows(port, stats, own)
        link = None
        if ls is not None:
            b = ls * LINK_FIELDS
            if lk[b]:
                link = LinkCounters(lk[b + 1], lk[b + 2], lk[b + 3], lk[b + 4], lk[b + 5], lk[b + 6])
        ports[port] = PortSample(port, port_flows, link, own, limits, instances.get(port))
    return ports


def port_rates(previous: Sample, current: Sample) -> dict[str, PortRates]:
    """Per-port rates between two samples, a `PortRates` per port present in both."""
    seconds = current.monotonic - previous.monotonic
    out: dict[str, PortRates] = {}
    if seconds <= 0:
        return out
    before_ports = previous.ports
    for port, now in current.ports.items():
        before = before_ports.get(port)
        if before is None:
            continue
        per_dir = {}
        limits, flows_now, flows_before = now.limits, now.flows, before.flows
        for direction in DIRECTIONS:
            flow = flows_now.get(direction)
            if flow is not None:
                per_dir[direction] = flow_rate(flows_before.get(direction, _NO_FLOW), flow, seconds,
                                               limit_bps=limits.bps(direction), limit_pps=limits.pps(direction))
        syn_name = _SYN_NAMES.get(port)
        if syn_name is None:
            syn_name = _SYN_NAMES[port] = f"{chain_from(port)}_syn"
        syn = None
        if syn_name in now.counters:
            old = before.counters.get(syn_name, _NO_COUNT)
            syn = counter_delta(old.packets, now.counters[syn_name].packets) / seconds
        out[port] = PortRates(port, now.instance, per_dir, now.link, syn)
    return out
