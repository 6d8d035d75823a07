"""One pass over every managed port of a namespace: three reads, whatever the number of ports.

A pass is three netlink reads: the links' counters (one dump), the root qdisc of each port and
IFB, and vmqos's named nft counters (a root with segmenting TBF leaves also gets the drops they
hid from it: `leaf_drops`). `rates` turns two passes into per-port, per-direction rates.
The qdisc and nft dumps grow with the square of the objects (the kernel resumes them from the
head of its list once per 32 KiB chunk), so the arrays path reads the qdiscs with one get per
device, and with `nft_reads="needed"` (the monitor, the exporter, `top`) only the nft counters the
results use by name; both linear, decoded in C (docs/benchmarks.md, section 6). With "needed", a
port whose instance sent nothing over the last two passes (its device's rx counter, in the link
dump, stood still) has its side carried from the previous pass instead of read: its IFB's empty
queue and its ingress chain's counters (`monitor.quiet`). The whole dump of the nft counters is
read again only when the ruleset's generation moved (one get a pass says so), not every few passes.

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
from datetime import UTC, datetime
from typing import Iterator, Literal, Mapping

import numpy as np
import numpy.typing as npt

from vmqos.core.analysis.columns import LazyPorts, LazyRates, column_rates
from vmqos.core.analysis.flows import flows
from vmqos.core.analysis.samples import PortRates, PortSample, Sample
from vmqos.core.errors import KernelError
from vmqos.core.observed import CounterValue, TcStats
from vmqos.core.plan.names import counter_port, ifb_name
from vmqos.core.plan.planner import PortPlan
from vmqos.drivers import counter_arrays
from vmqos.drivers.counter_arrays import NFT_FIELDS, QDISC_FIELDS, ArrayReader
from vmqos.drivers.counters import CounterReader
from vmqos.drivers.process import run
from vmqos.monitor.columns import ColumnLayout, build
from vmqos.monitor.quiet import QuietPorts, carry, counters_to_carry, ifb_slots_to_keep, without
from vmqos.monitor.records import port_rates, records
from vmqos.monitor.sample_layout import NO_SLOTS, Slots, Watched, needed_slots
from vmqos.monitor.leaf_drops import LeafMemo, add_unseen_from_dumps, add_unseen_from_gets, leaf_parents

log = logging.getLogger(__name__)


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
# "needed": the whole dump of the counters (and every root qdisc) on the first pass over a layout, when the
# ruleset's generation moved (a counter added, deleted or made anew), and at least this many passes apart
FULL_EVERY = 300
REREAD_EVERY = 10  # ... and a quiet port's side read all the same every this many passes (monitor.quiet)
NAMES_RETRY_S = 10.0  # how often a planned device that does not exist is looked for again (arrays path)


class Sampler:
    """Samples the ports it is given, in one network namespace; use as a context manager."""

    def __init__(self, netns: str | None = None, method: Method = "auto", nft_reads: NftReads = "all",
                 full_every: int = FULL_EVERY, columns: bool = True, skip_quiet: bool = True,
                 reread_every: int = REREAD_EVERY) -> None:
        """`nft_reads` (arrays path): "all" reads every named counter of the table each pass (one
        dump); "needed" reads by name only those the per-port results use (a shaped port's SYN and
        packet-rate drops; offered, passed and policed only where a direction has no queue), and
        the whole dump on the first pass, on new plans or devices, whenever the namespace's nft
        ruleset generation moved since the last one (any commit: a counter added, deleted or made
        anew), and at least every `full_every` passes, so that a counter no plan names is still
        seen. The flows, links and SYN rates are the same either way; `PortSample.counters` holds
        what the pass read (docs/benchmarks.md, §6).
        `columns` (arrays path): the sample's counters as columns, its `PortSample`s built when
        asked (`core.analysis.columns`); False: a record per port, as before issue 17's columns.
        `skip_quiet` (with "needed"): a port whose instance sent nothing over the last two passes has
        its side (its IFB's empty queue, its ingress chain's counters) carried from the previous pass
        instead of read again, except on the whole passes and, in turn, a tenth of them each pass
        (`reread_every`: each quiet port read at least that often; `monitor.quiet`)."""
        self.columns = columns
        self._column_layout: ColumnLayout | None = None
        self._column_layout_for: Slots | None = None
        self.netns = netns
        self.nft_reads = nft_reads
        self.full_every = max(1, full_every)
        self._since_full = 0
        self._full_generation: int | None = None
        self.reread_every = max(1, reread_every)
        self._full_for: Slots | None = None
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
        self._watched: Watched | None = None
        self._slots: Slots | None = None
        self._slots_for: Watched | None = None
        self._leaf_memo = LeafMemo()
        self.skip_quiet = skip_quiet
        self._quiet = QuietPorts()
        self.quiet_ports = 0  # the last pass: ports whose instance's side was carried, not read
        self._previous_q = array("Q")
        self._previous: tuple[Slots, array, array] | None = None  # the last pass's slots, raw roots, counters

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

    def _watch(self, plans: Mapping[str, PortPlan]) -> Watched:
        if self._watched is None or self._watched.plans is not plans:
            self._watched = Watched.of(plans)
        return self._watched

    def sample(self, plans: Mapping[str, PortPlan], instances: Mapping[str, str] | None = None) -> Sample:
        """Counters of every port of `plans` (port -> plan), read in one pass.

        What is derived from the plans is kept while the same mapping comes back: pass a new one
        when they change, never the same one changed in place."""
        with _no_cyclic_gc():
            if self._arrays is not None:
                return self._sample_arrays(plans, instances or {})
            return self._sample_dumps(plans, instances)

    def _slots_of(self, watched: Watched) -> Slots:
        """The layout of these plans over the devices known now, kept until either changes."""
        if self._slots is None or self._slots_for is not watched:
            self._slots = Slots.of(watched, {name: idx for idx, name in self._names.items()})
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
        generation = self._arrays.generation() if self.nft_reads == "needed" else None
        whole = not (self.nft_reads == "needed" and self._full_for is slots and generation == self._full_generation
                     and self._since_full < self.full_every - 1)
        seen_quiet = self._quiet.observe(slots, links, len(slots.rows))
        quiet = None if whole or not self.skip_quiet or self._previous is None or self._previous[0] is not slots \
            else seen_quiet & (np.arange(len(slots.rows)) % self.reread_every != self._since_full % self.reread_every)
        self.quiet_ports = 0 if quiet is None else int(quiet.sum())
        qdiscs = self._read_qdiscs(slots, quiet)
        add_unseen_from_gets(self._arrays, self._leaf_memo, slots.tbf_rows, qdiscs)  # into the roots' drops
        if not whole:
            self._since_full += 1
            wanted = needed_slots(slots, self._columns_of(slots), qdiscs, quiet)
            counters, unknown = self._arrays.counters_at(slots.layout, wanted), list[tuple[str, int, int]]()
            if quiet is not None:
                assert self._previous is not None
                carry(counters, self._previous[2], counters_to_carry(quiet, slots.needed, slots.needed_from), NFT_FIELDS)
        else:
            self._full_for, self._since_full, self._full_generation = slots, 0, generation
            counters, unknown = self._arrays.counters(slots.layout)
        self._previous = (slots, self._previous_q, counters)
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
            log.debug("sampler: %d ports (columns), %d quiet, %d nft counters unplanned, in %.3f s", len(cols.table),
                      self.quiet_ports, len(unknown), time.monotonic() - mono)
            return Sample(mono, at, LazyPorts(cols), cols)
        ports = records(slots.rows, slots.pps_names, qdiscs, links, counters, extra, instances)
        log.debug("sampler: %d ports, %d nft counters unplanned, in %.3f s", len(ports), len(unknown),
                  time.monotonic() - mono)
        return Sample(mono, at, ports)

    def _read_qdiscs(self, slots: Slots, quiet: npt.NDArray[np.bool_] | None) -> array:
        """The root qdiscs, by get; with `quiet`, the IFBs of quiet rows whose queue was empty are not
        read again but carried from the previous pass (`monitor.quiet`). Keeps what was read, before
        `add_unseen_from_gets` adds to it, for the next pass to carry from."""
        kept = NO_SLOTS
        if quiet is not None:
            assert self._previous is not None
            kept = ifb_slots_to_keep(quiet, self._previous[1])
        assert self._arrays is not None
        size = slots.layout.sizes()[0]
        chosen = None if not len(kept) else without(slots.layout.qdisc_slots, kept, size)
        qdiscs = self._arrays.qdiscs(slots.layout, by_get=True, slots=chosen)
        if chosen is not None:
            assert self._previous is not None
            carry(qdiscs, self._previous[1], kept, QDISC_FIELDS)
        self._previous_q = array("Q", qdiscs)
        return qdiscs

    def _columns_of(self, slots: Slots) -> ColumnLayout:
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
