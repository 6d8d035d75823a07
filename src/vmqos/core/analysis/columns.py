"""A pass's counters as columns, and rates computed on whole columns (pure; issue 17).

At 10,000 ports, building a `PortSample` (flows, link, counters) and a `PortRates` per port every
second cost about 200 ms of CPU a pass on this machine, twice the whole pass's budget; the same
figures as numpy columns cost about 2 ms (docs/benchmarks.md, section 6). So a sample of the
sampler's arrays path keeps its counters as columns, one row per port of a `PortTable` that two
consecutive passes over the same plans and devices share, and `PortSample`/`PortRates` objects are
built only for the ports a reader asks for (`LazyPorts`, `LazyRates`: read-only mappings equal to
the dicts of the records path). Rates between two samples of one table are computed on the
columns, and per port, with the records' own functions, exactly where they do something special:
a counter that stepped back (`counter_delta`'s reset and wrap rules).

Every value is an int64: a pass whose counters reach `LIMIT` (2**60 bytes: three years of
100 Gbit/s into one qdisc that was never recreated) is built as records instead, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import numpy as np
import numpy.typing as npt

from vmqos.core.analysis.flows import Flow
from vmqos.core.analysis.rates import FlowRate, counter_delta, flow_rate
from vmqos.core.analysis.samples import PortLimits, PortRates, PortSample
from vmqos.core.model.network import DIRECTIONS
from vmqos.core.observed import CounterValue, LinkCounters

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

# a flow's integer fields, in `Flow`'s order (its seventh, offered_bytes_estimated, is a column of its own)
FLOW_FIELDS = ("offered_bytes", "offered_packets", "delivered_bytes", "delivered_packets", "dropped_packets",
               "backlog_bytes")
COUNTED = 5  # the first five are cumulative; backlog is a level
LINK_FIELDS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped")
LIMIT = 1 << 60  # a counter (or drops x mean size) at or above this: the pass builds records


@dataclass(frozen=True, eq=False)
class PortTable:
    """The ports of one layout, in order: what two passes over the same plans and devices share.

    `limits` per direction as floats (nan: no limit) for the columns; `PortLimits` for the records."""

    ports: tuple[str, ...]
    limits: tuple[PortLimits, ...]
    index: dict[str, int] = field(init=False)
    _order: Ints = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {p: i for i, p in enumerate(self.ports)})
        order = np.empty(len(self.ports), dtype=np.int64)
        order[np.argsort(np.array(self.ports, dtype=object), kind="stable")] = np.arange(len(self.ports))
        object.__setattr__(self, "_order", order)

    def __len__(self) -> int:
        return len(self.ports)

    @property
    def name_rank(self) -> Ints:
        """Each row's place when the ports are sorted by name (for sorting rows with numpy)."""
        return self._order

    def limit_columns(self) -> tuple[Floats, Floats]:
        """(ports, 2) byte and packet limits per direction, 0 where there is none (kept once made)."""
        made = self.__dict__.get("_limit_columns")
        if made is None:
            bps = np.array([[lim.ingress_bps or 0, lim.egress_bps or 0] for lim in self.limits], dtype=np.float64)
            pps = np.array([[lim.ingress_pps or 0, lim.egress_pps or 0] for lim in self.limits], dtype=np.float64)
            made = (bps.reshape(-1, 2), pps.reshape(-1, 2))
            object.__setattr__(self, "_limit_columns", made)
        return made


@dataclass(frozen=True, eq=False)
class SampleColumns:
    """One pass's counters, a row per port of `table` and, for flows, a column pair per direction."""

    table: PortTable
    flows: Ints  # (ports, 2 directions, FLOW_FIELDS)
    has_flow: Bools  # (ports, 2): the direction has a flow (a limiter that counts it)
    estimated: Bools  # (ports, 2): offered bytes estimated (the queue dropped)
    links: Ints  # (ports, LINK_FIELDS)
    has_link: Bools  # (ports,): False: the device is gone
    syn: Ints  # (ports,): SYN packets the instance sent
    has_syn: Bools  # (ports,): its chain counts SYNs (the counter was read)
    counters_of: Callable[[int], dict[str, CounterValue]]  # row -> the port's nft counters (built on demand)
    instances: Mapping[str, str]

    def flow(self, row: int, d: int) -> Flow | None:
        if not self.has_flow[row, d]:
            return None
        v = self.flows[row, d].tolist()
        return Flow(v[0], v[1], v[2], v[3], v[4], v[5], bool(self.estimated[row, d]))

    def link(self, row: int) -> LinkCounters | None:
        return LinkCounters(*self.links[row].tolist()) if self.has_link[row] else None

    def port_sample(self, row: int) -> PortSample:
        port = self.table.ports[row]
        port_flows = {}
        for d, direction in enumerate(DIRECTIONS):
            flow = self.flow(row, d)
            if flow is not None:
                port_flows[direction] = flow
        return PortSample(port, port_flows, self.link(row), self.counters_of(row), self.table.limits[row],
                          self.instances.get(port))


class LazyPorts(Mapping[str, PortSample]):
    """`Sample.ports` of a columnar sample: a read-only mapping that builds a port's record when asked."""

    def __init__(self, columns: SampleColumns) -> None:
        self.columns = columns
        self._built: dict[int, PortSample] = {}

    def __getitem__(self, port: str) -> PortSample:
        row = self.columns.table.index[port]
        built = self._built.get(row)
        if built is None:
            built = self._built[row] = self.columns.port_sample(row)
        return built

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns.table.ports)

    def __len__(self) -> int:
        return len(self.columns.table.ports)

    def __contains__(self, port: object) -> bool:
        return port in self.columns.table.index

    def __repr__(self) -> str:
        return f"LazyPorts({len(self)} ports)"


# a rate's float fields, in `FlowRate`'s order after `seconds`
RATE_FIELDS = ("offered_bps", "delivered_bps", "offered_pps", "delivered_pps", "dropped_pps")


@dataclass(frozen=True, eq=False)
class RateColumns:
    """Rates between two samples of one table: per port and direction, in bit/s and packet/s."""

    current: SampleColumns
    seconds: float
    rates: Floats  # (ports, 2, RATE_FIELDS); nan where the direction has no flow
    syn_pps: Floats  # (ports,); nan where the chain does not count SYNs

    @property
    def has(self) -> Bools:
        return self.current.has_flow

    def flow_rate(self, row: int, d: int) -> FlowRate | None:
        if not self.current.has_flow[row, d]:
            return None
        limits = self.current.table.limits[row]
        direction = DIRECTIONS[d]
        r = self.rates[row, d].tolist()
        return FlowRate(self.seconds, r[0], r[1], r[2], r[3], r[4], int(self.current.flows[row, d, 5]),
                        limits.bps(direction), limits.pps(direction))

    def port_rates(self, row: int) -> PortRates:
        port = self.current.table.ports[row]
        per_dir = {}
        for d, direction in enumerate(DIRECTIONS):
            rate = self.flow_rate(row, d)
            if rate is not None:
                per_dir[direction] = rate
        syn = self.syn_pps[row]
        return PortRates(port, self.current.instances.get(port), per_dir, self.current.link(row),
                         None if np.isnan(syn) else float(syn))

    def utilisation(self) -> Floats:
        """(ports, 2) as `FlowRate.utilisation`: delivered against the byte limit, else the packet
        limit; nan without either (or without a flow)."""
        bps, pps = self.current.table.limit_columns()
        r = self.rates
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(bps > 0, r[:, :, 1] / bps, np.where(pps > 0, r[:, :, 3] / pps, np.nan))


class LazyRates(Mapping[str, PortRates]):
    """What `rates` returns for a columnar pair: the per-port mapping, built per port when asked."""

    def __init__(self, columns: RateColumns) -> None:
        self.columns = columns
        self._built: dict[int, PortRates] = {}

    def row(self, row: int) -> PortRates:
        built = self._built.get(row)
        if built is None:
            built = self._built[row] = self.columns.port_rates(row)
        return built

    def __getitem__(self, port: str) -> PortRates:
        return self.row(self.columns.current.table.index[port])

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns.current.table.ports)

    def __len__(self) -> int:
        return len(self.columns.current.table.ports)

    def __contains__(self, port: object) -> bool:
        return port in self.columns.current.table.index

    def __repr__(self) -> str:
        return f"LazyRates({len(self)} ports)"


def column_rates(previous: SampleColumns, current: SampleColumns, seconds: float) -> RateColumns:
    """The rates of every port between two samples of the same table (`seconds` > 0): what
    `flow_rate` and the SYN rate of the records give, port for port. A row where a cumulative
    counter stepped back is computed by `flow_rate` itself (its `counter_delta` rules)."""
    if previous.table is not current.table:
        raise ValueError("column_rates: the two samples have different tables; use the per-port rates")
    now, has = current.flows, current.has_flow
    before = np.where(previous.has_flow[:, :, None], previous.flows, 0)  # a flow that appeared: from zero
    delta = now[:, :, :COUNTED] - before[:, :, :COUNTED]
    out = np.empty(now.shape[:2] + (len(RATE_FIELDS),), dtype=np.float64)
    # FlowRate's order: offered bps, delivered bps, offered pps, delivered pps, dropped pps
    out[:, :, 0] = (8 * delta[:, :, 0]) / seconds
    out[:, :, 1] = (8 * delta[:, :, 2]) / seconds
    out[:, :, 2] = delta[:, :, 1] / seconds
    out[:, :, 3] = delta[:, :, 3] / seconds
    out[:, :, 4] = delta[:, :, 4] / seconds
    back = has & (delta < 0).any(axis=2)
    for row, d in zip(*np.nonzero(back)):
        was = previous.flow(int(row), int(d)) or Flow()
        flow = current.flow(int(row), int(d))
        assert flow is not None
        r = flow_rate(was, flow, seconds)
        out[row, d] = (r.offered_bps, r.delivered_bps, r.offered_pps, r.delivered_pps, r.dropped_pps)
    out[~has] = np.nan
    syn_before = np.where(previous.has_syn, previous.syn, 0)
    syn_delta = current.syn - syn_before
    for row in np.flatnonzero(current.has_syn & (syn_delta < 0)):
        syn_delta[row] = counter_delta(int(syn_before[row]), int(current.syn[row]))
    syn = syn_delta / seconds
    syn[~current.has_syn] = np.nan
    return RateColumns(current, seconds, out, syn)


def empty_columns(table: PortTable, counters_of: Callable[[int], dict[str, CounterValue]],
                  instances: Mapping[str, str]) -> SampleColumns:
    """Columns of `table` with nothing in them, for a builder to fill."""
    n = len(table)
    return SampleColumns(table, np.zeros((n, 2, len(FLOW_FIELDS)), dtype=np.int64), np.zeros((n, 2), dtype=bool),
                         np.zeros((n, 2), dtype=bool), np.zeros((n, len(LINK_FIELDS)), dtype=np.int64),
                         np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool),
                         counters_of, instances)


def put_flows(columns: SampleColumns, row: int, port_flows: Mapping[str, Flow]) -> None:
    """Write one port's flows (computed per port by `flows.flows`) into its row."""
    for d, direction in enumerate(DIRECTIONS):
        flow = port_flows.get(direction)
        columns.has_flow[row, d] = flow is not None
        if flow is not None:
            columns.flows[row, d] = [getattr(flow, f) for f in FLOW_FIELDS]
            columns.estimated[row, d] = flow.offered_bytes_estimated
