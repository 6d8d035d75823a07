"""One pass over every managed port of a namespace: three reads, whatever the number of ports.

A pass is three netlink reads: the links' counters (one dump), the root qdisc of each port and
IFB, and vmqos's named nft counters (a root with segmenting TBF leaves also gets the drops they
hid from it: `leaf_drops`). `rates` turns two passes into per-port, per-direction rates.
The qdisc and nft dumps grow with the square of the objects (the kernel resumes them from the
head of its list once per 32 KiB chunk), so the arrays path reads the qdiscs with one get per
device, and with `nft_reads="needed"` (the monitor, the exporter, `top`) only the nft counters the
results use by name; both linear, decoded in C (docs/benchmarks.md, section 6).

Two ways to decode them, with the same results (tests/kernel/test_sampler_paths.py):
- "arrays" (the default when the compiled helper is built): `counter_arrays` decodes, in C, only
  the watched objects into arrays at slots laid out once per set of plans and devices.
- "dumps": `CounterReader` decodes every message in Python (the path before issue 17; the
  fallback without the helper, and the reference the tests compare with).
The arrays path keeps a pass's counters as numpy columns (`monitor.columns`, `core.analysis.columns`):
`PortSample`s are built only for the ports a reader asks for, and `rates` between two passes over
the same layout is computed on the columns; a record per port cost ~200 ms a pass at 10,000 ports
(`columns=False` keeps the records, `monitor.records`).
The cyclic garbage collector is paused during a pass and `rates` (about fifteen objects a port,
freed on the next pass, none in a cycle); a pass never runs a collection (one walks all the
process holds: seconds in a test session, issue 17's revert).

A sample's time is taken just before its reads, after what the pass had to prepare (layout, names):
rates divide what the counters moved by the time between two samples, when they were read.
"""

from __future__ import annotations

import gc
from array import array
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Iterator, Literal, Mapping

import numpy as np

from vmqos.core.analysis.columns import LazyPorts, LazyRates, column_rates
from vmqos.core.analysis.flows import flows
from vmqos.core.analysis.samples import (
    PortLimits,
    PortRates,
    PortSample,
    Sample,
    planned_qdiscs,
)
from vmqos.core.errors import KernelError
from vmqos.core.observed import CounterValue, TcStats
from vmqos.core.plan.names import chain_from, chain_owners, chain_to, counter_port, ifb_name
from vmqos.core.plan.objects import NftCounter
from vmqos.core.plan.planner import PortPlan
from vmqos.drivers import counter_arrays
from vmqos.drivers.counter_arrays import ArrayReader, Layout, kind_words
from vmqos.drivers.counters import CounterReader
from vmqos.drivers.process import run
from vmqos.monitor.columns import ColumnLayout, build, root_ok
from vmqos.monitor.records import port_rates, records
from vmqos.monitor.leaf_drops import (LeafMemo, TbfLeaf, TbfRow, add_unseen_from_dumps, add_unseen_from_gets,
                                      leaf_parents, tbf_leaves, tbf_rows)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Watched:
    """What a pass needs from the plans, derived once per set of plans rather than once per pass."""

    plans: Mapping[str, PortPlan]
    wanted: frozenset[str]  # the ports and their IFBs
    planned: dict[tuple[object, ...], str]
    owners: dict[str, str]
    limits: dict[str, PortLimits]
    tbf: dict[str, tuple[TbfLeaf, ...]]  # device -> its segmenting TBF leaves (leaf_drops)
    counter_owners: dict[str, str | None] = field(default_factory=dict)  # filled as counters are seen

    @classmethod
    def of(cls, plans: Mapping[str, PortPlan]) -> "_Watched":
        return cls(plans, frozenset(d for port in plans for d in (port, ifb_name(port))), planned_qdiscs(plans),
                   chain_owners(plans), {port: PortLimits.of(plan) for port, plan in plans.items()}, tbf_leaves(plans))


_NO_KIND = (-1, -1)  # no planned root qdisc: no kind's words are equal to these


def needed_counters(port: str) -> tuple[tuple[str, ...], list[tuple[str, ...]], list[tuple[str, ...]]]:
    """The named counters `flows` and `rates` read for a port: (always, [towards the instance,
    from it] when that direction's root qdisc is there, [the same] when it is not). What `flows`
    takes from a queue when there is one it does not read from nft (offered, passed, policed)."""
    to, frm = chain_to(port), chain_from(port)
    return ((f"{frm}_syn",), [(f"{to}_pps_dropped",), (f"{frm}_pps_dropped",)],
            [(f"{to}_offered", f"{to}_passed"), (f"{frm}_offered", f"{frm}_passed", f"{frm}_dropped")])


@dataclass(frozen=True)
class _Slots:
    """The arrays path's layout of one set of plans over one set of devices, and per port what its
    record needs: (port, its limits, its qdisc slot and planned kind words, its IFB's, its link
    slot or None, (counter name, slot) of its plan's named counters)."""

    layout: Layout
    rows: tuple[tuple[str, PortLimits, int, tuple[int, int], int, tuple[int, int], int | None,
                      tuple[tuple[str, int], ...]], ...]
    # the named counters a pass needs when every planned root qdisc is there, and per row those
    # it needs more when its port's (index 0) or its IFB's (index 1) planned root is not
    needed: tuple[str, ...] = ()
    without_root: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()
    pps_names: tuple[tuple[str, str], ...] = ()  # per row: its packet-rate drop counters (to, from)
    tbf_rows: tuple[TbfRow, ...] = ()

    @classmethod
    def of(cls, watched: _Watched, index: Mapping[str, int]) -> "_Slots":
        qdiscs: dict[int, int] = {}
        links: dict[int, int] = {}
        counters: dict[str, int] = {}
        rows = []
        needed: list[str] = []
        without: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        for i, (port, limits) in enumerate(watched.limits.items()):
            ifb, idx = ifb_name(port), index.get(port)
            if idx is not None:
                qdiscs[idx], links[idx] = 2 * i, i
            if ifb in index:
                qdiscs[index[ifb]] = 2 * i + 1
            own = []
            for obj in watched.plans[port].objects:
                # a counter is its owner's by its name, as the dumps path decides (counter_port)
                if isinstance(obj, NftCounter) and obj.name not in counters and \
                        counter_port(obj.name, watched.owners) == port:
                    counters[obj.name] = slot = len(counters)
                    own.append((obj.name, slot))
            kinds = [watched.planned.get(("qdisc", dev, "root")) for dev in (port, ifb)]
            rows.append((port, limits, 2 * i, kind_words(kinds[0]) if kinds[0] else _NO_KIND,
                         2 * i + 1, kind_words(kinds[1]) if kinds[1] else _NO_KIND,
                         i if idx is not None else None, tuple(own)))
            mine = {name for name, _ in own}
            always, if_root, if_not = needed_counters(port)
            for d in (0, 1):  # a direction without a planned root reads its nft counters always
                if kinds[d] is None:
                    always, if_root[d], if_not[d] = always + if_root[d] + if_not[d], (), ()
            needed += [n for n in always + if_root[0] + if_root[1] if n in mine]
            without.append((tuple(n for n in if_not[0] if n in mine), tuple(n for n in if_not[1] if n in mine)))
        return cls(Layout(qdiscs, links, counters, (2 * len(rows), len(rows), len(counters))), tuple(rows),
                   tuple(dict.fromkeys(needed)), tuple(without),
                   tuple((f"{chain_to(port)}_pps_dropped", f"{chain_from(port)}_pps_dropped") for port in watched.limits),
                   tbf_rows(tuple(watched.limits), watched.tbf, index))


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The cyclic collector paused (see the module's docstring); reference counting still frees."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


Method = Literal["auto", "arrays", "dumps"]
NftReads = Literal["all", "needed"]
FULL_EVERY = 10  # "needed": every this many passes, the whole dump of the counters all the same
NAMES_RETRY_S = 10.0  # how often a planned device that does not exist is looked for again (arrays path)


class Sampler:
    """Samples the ports it is given, in one network namespace; use as a context manager."""

    def __init__(self, netns: str | None = None, method: Method = "auto", nft_reads: NftReads = "all",
                 full_every: int = FULL_EVERY, columns: bool = True) -> None:
        """`nft_reads` (arrays path): "all" reads every named counter of the table each pass (one
        dump); "needed" reads by name only those the per-port results use (a shaped port's SYN and
        packet-rate drops; offered, passed and policed only where a direction has no queue), and
        the whole dump on the first pass, on new plans or devices, and every `full_every` passes,
        so that a counter no plan names is still seen. The flows, links and SYN rates are the
        same either way; `PortSample.counters` holds what the pass read (docs/benchmarks.md, §6).
        `columns` (arrays path): the sample's counters as columns, its `PortSample`s built when
        asked (`core.analysis.columns`); False: a record per port, as before issue 17's columns."""
        self.columns = columns
        self._column_layout: ColumnLayout | None = None
        self._column_layout_for: _Slots | None = None
        self.netns = netns
        self.nft_reads = nft_reads
        self.full_every = max(1, full_every)
        self._since_full = 0
        self._full_for: _Slots | None = None
        self._reader = CounterReader(netns)
        if method == "auto":
            method = "arrays" if counter_arrays.available() else "dumps"
            if method == "dumps":
                log.info("sampler: the compiled counter decoder is not built; decoding in Python (slower)")
        self.method = method
        self._arrays = ArrayReader(self._reader) if method == "arrays" else None
        self._names: dict[int, str] = {}
        self._devices = (0, 0)  # (count, sum of ifindexes) of the devices when the names were read
        self._names_at = float("-inf")
        self._watched: _Watched | None = None
        self._slots: _Slots | None = None
        self._slots_for: _Watched | None = None
        self._leaf_memo = LeafMemo()

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> "Sampler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refresh_names(self) -> None:
        argv = ["ip", *(("-n", self.netns) if self.netns else ()), "-j", "link", "show"]
        done = run(argv, None, check=False)
        if done.returncode != 0:
            raise KernelError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
        self._names = {link["ifindex"]: link["ifname"] for link in json.loads(done.stdout or "[]")}
        self._devices = (len(self._names), sum(self._names))
        self._names_at = time.monotonic()
        self._slots = None
        self._leaf_memo.clear()
        log.debug("sampler: a device came or went; %d link names re-read", len(self._names))

    def _watch(self, plans: Mapping[str, PortPlan]) -> _Watched:
        if self._watched is None or self._watched.plans is not plans:
            self._watched = _Watched.of(plans)
        return self._watched

    def sample(self, plans: Mapping[str, PortPlan], instances: Mapping[str, str] | None = None) -> Sample:
        """Counters of every port of `plans` (port -> plan), read in one pass.

        What is derived from the plans is kept while the same mapping comes back: pass a new one
        when they change, never the same one changed in place."""
        with _no_cyclic_gc():
            if self._arrays is not None:
                return self._sample_arrays(plans, instances or {})
            return self._sample_dumps(plans, instances)

    def _slots_of(self, watched: _Watched) -> _Slots:
        """The layout of these plans over the devices known now, kept until either changes."""
        if self._slots is None or self._slots_for is not watched:
            self._slots = _Slots.of(watched, {name: idx for idx, name in self._names.items()})
            self._slots_for = watched
        return self._slots

    def _sample_arrays(self, plans: Mapping[str, PortPlan], instances: Mapping[str, str]) -> Sample:
        assert self._arrays is not None
        watched = self._watch(plans)
        if self._names_at == float("-inf"):
            self._refresh_names()  # the first pass: the names before the layout, which needs them
        slots = self._slots_of(watched)
        at, mono = datetime.now(UTC), time.monotonic()  # the counters' time: nothing but the dumps follows
        links, devices = self._arrays.links(slots.layout)
        if devices != self._devices or (mono - self._names_at >= NAMES_RETRY_S
                                        and not watched.wanted <= set(self._names.values())):
            self._refresh_names()  # a device came or went (an index is reused only after a new name)
            slots = self._slots_of(watched)
            at, mono = datetime.now(UTC), time.monotonic()  # read again from here: this is their time
            links, devices = self._arrays.links(slots.layout)
        qdiscs = self._arrays.qdiscs(slots.layout, by_get=True)
        add_unseen_from_gets(self._arrays, self._leaf_memo, slots.tbf_rows, qdiscs)  # into the roots' drops
        if self.nft_reads == "needed" and self._full_for is slots and self._since_full < self.full_every - 1:
            self._since_full += 1
            counters, unknown = self._arrays.counters(slots.layout, names=_needed(slots, self._columns_of(slots), qdiscs))
        else:
            self._full_for, self._since_full = slots, 0
            counters, unknown = self._arrays.counters(slots.layout)
        extra: dict[str, dict[str, CounterValue]] = {}  # counters of a port that its plan does not name
        owner_of = watched.counter_owners
        for name, packets, nbytes in unknown:
            if name not in owner_of:
                owner_of[name] = counter_port(name, watched.owners)
            owner = owner_of[name]
            if owner is not None:
                extra.setdefault(owner, {})[name] = CounterValue(packets, nbytes)
        cols = build(self._columns_of(slots), qdiscs, links, counters, extra, instances) if self.columns else None
        if cols is not None:
            log.debug("sampler: %d ports (columns), %d nft counters unplanned, in %.3f s", len(cols.table),
                      len(unknown), time.monotonic() - mono)
            return Sample(mono, at, LazyPorts(cols), cols)
        ports = records(slots.rows, slots.pps_names, qdiscs, links, counters, extra, instances)
        log.debug("sampler: %d ports, %d nft counters unplanned, in %.3f s", len(ports), len(unknown),
                  time.monotonic() - mono)
        return Sample(mono, at, ports)

    def _columns_of(self, slots: _Slots) -> ColumnLayout:
        if self._column_layout is None or self._column_layout_for is not slots:
            self._column_layout, self._column_layout_for = ColumnLayout.of(slots.rows, slots.pps_names), slots
        return self._column_layout

    def _sample_dumps(self, plans: Mapping[str, PortPlan], instances: Mapping[str, str] | None) -> Sample:
        watched = self._watch(plans)
        at, mono = datetime.now(UTC), time.monotonic()  # the counters' time: nothing but the dumps follows
        links = self._reader.links()
        if any(i not in self._names for i in links) or not watched.wanted <= set(self._names.values()):
            self._refresh_names()  # a device came or went (an index is reused only after a new name)
            at, mono = datetime.now(UTC), time.monotonic()  # read again from here: this is their time
            links = self._reader.links()
        names = self._names
        index = {name: idx for idx, name in names.items()}
        planned = watched.planned
        qdiscs = self._reader.qdiscs(top_only=True, devices={index[d] for d in watched.wanted if d in index},
                                     leaves=leaf_parents(watched.tbf, index))
        counters = self._reader.nft_counters()
        tc: dict[str, dict[tuple[object, ...], TcStats]] = {}
        for q in qdiscs:  # a TBF leaf is not in `planned` (roots only): add_unseen_from_dumps reads it
            name = names[q.ifindex]
            key = ("qdisc", name, q.where)
            if planned.get(key) == q.kind:
                tc.setdefault(name, {})[key] = q.stats
        add_unseen_from_dumps(self._reader, self._leaf_memo, watched.tbf, tc, qdiscs, index)
        owner_of = watched.counter_owners
        by_port: dict[str, dict[str, CounterValue]] = {}
        for name, value in counters.items():
            if name not in owner_of:
                owner_of[name] = counter_port(name, watched.owners)
            owner = owner_of[name]
            if owner is not None:
                by_port.setdefault(owner, {})[name] = value
        instances = instances or {}
        ports: dict[str, PortSample] = {}
        for port, limits in watched.limits.items():
            stats = tc.get(port, {})
            ifb = tc.get(ifb_name(port))
            if ifb:
                stats = {**stats, **ifb}
            own = by_port.get(port, {})
            idx = index.get(port)
            ports[port] = PortSample(port, flows(port, stats, own), links.get(idx) if idx is not None else None,
                                     own, limits, instances.get(port))
        log.debug("sampler: %d ports, %d qdiscs, %d nft counters in %.3f s", len(ports), len(qdiscs), len(counters),
                  time.monotonic() - mono)
        return Sample(mono, at, ports)


def _needed(slots: _Slots, layout: ColumnLayout, q: array) -> list[str] | tuple[str, ...]:
    """The counters a pass needs, given the root qdiscs it read: more for a planned root that is not there."""
    ok = root_ok(layout, q)
    missing: list[str] = []
    for row in np.flatnonzero(~ok.all(axis=1)).tolist():
        if_not, ifb_if_not = slots.without_root[row]
        if if_not and not ok[row, 0]:
            missing += if_not
        if ifb_if_not and not ok[row, 1]:
            missing += ifb_if_not
    return slots.needed + tuple(missing) if missing else slots.needed


def rates(previous: Sample, current: Sample) -> Mapping[str, PortRates]:
    """Per-port rates between two samples; ports present in both. Two columnar samples of one
    layout (consecutive passes over the same plans and devices): computed on the columns, a
    `LazyRates` whose `PortRates` are built when asked; any other pair: per port (`records`)."""
    with _no_cyclic_gc():  # as during a pass (see the module's docstring)
        a, b = previous.columns, current.columns
        seconds = current.monotonic - previous.monotonic
        if a is not None and b is not None and a.table is b.table and seconds > 0:
            return LazyRates(column_rates(a, b, seconds))
        return port_rates(previous, current)
