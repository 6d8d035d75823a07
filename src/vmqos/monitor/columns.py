"""The sampler's arrays, as decoded by `_nlstats`, turned into a pass's columns (issue 17).

The arrays path's decoder writes each port's root qdiscs at slots 2i (the port) and 2i + 1 (its
IFB), its link counters at slot i and its named nft counters at slots the layout chose; this
module reads them as numpy views and computes every port's flows at once with `queued_flow`'s
formula (`flows.queued_flow`): a shaped port, both planned root queues there, is the common case
at host scale. A port that is anything else (police mode, a direction with no planned queue, a
queue missing this pass, a counter its plan does not name) gets its flows per port from
`flows.flows`, the function the records path uses, written into its row. Same results, port for
port, as the records (tests/core/test_columns.py; tests/kernel/test_sampler_paths.py on traffic).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from vmqos.core.analysis.columns import (
    LIMIT,
    PortTable,
    SampleColumns,
    empty_columns,
    put_flows,
)
from vmqos.core.analysis.flows import flows
from vmqos.core.model.checks import ETH_HLEN
from vmqos.core.observed import CounterValue, TcStats
from vmqos.core.plan.names import chain_from, ifb_name
from vmqos.drivers.counter_arrays import LINK_FIELDS, NFT_FIELDS, QDISC_FIELDS

U64 = npt.NDArray[np.uint64]
Row = tuple  # a `sample_layout.Slots` row: (port, limits, qdisc slot, kind words, IFB slot, its kind words, link slot, own)


@dataclass(frozen=True, eq=False)
class ColumnLayout:
    """What the columns need from one `Slots` (kept as long as it is): the table, and per row the
    planned kind words of its two root qdiscs, and the slots of its SYN and packet-rate counters."""

    table: PortTable
    planned: npt.NDArray[np.bool_]  # (ports, 2): a root qdisc is planned there
    kinds: U64  # (ports, 2, 2): its kind's two words
    syn: npt.NDArray[np.int64]  # (ports,): slot of the port's SYN counter, -1: none
    pps: npt.NDArray[np.int64]  # (ports, 2): slots of its packet-rate drop counters (to, from), -1: none
    link_known: npt.NDArray[np.bool_]  # (ports,): the port's device had an index when laid out
    rows: tuple[Row, ...]

    @classmethod
    def of(cls, rows: Sequence[Row], pps_names: Sequence[tuple[str, str]]) -> "ColumnLayout":
        n = len(rows)
        planned = np.zeros((n, 2), dtype=bool)
        kinds = np.zeros((n, 2, 2), dtype=np.uint64)
        syn = np.full(n, -1, dtype=np.int64)
        pps = np.full((n, 2), -1, dtype=np.int64)
        link_known = np.zeros(n, dtype=bool)
        for i, ((port, _, _, kind, _, ifb_kind, ls, own), names) in enumerate(zip(rows, pps_names)):
            for d, words in enumerate((kind, ifb_kind)):
                if words[0] >= 0:
                    planned[i, d] = True
                    kinds[i, d] = words
            slots = dict(own)
            syn[i] = slots.get(f"{chain_from(port)}_syn", -1)
            pps[i] = (slots.get(names[0], -1), slots.get(names[1], -1))
            link_known[i] = ls is not None
        return cls(PortTable(tuple(r[0] for r in rows), tuple(r[1] for r in rows)), planned, kinds, syn, pps,
                   link_known, tuple(rows))


def root_ok(layout: ColumnLayout, q: array) -> npt.NDArray[np.bool_]:
    """(ports, 2): the planned root qdisc of the port (0) and of its IFB (1) was read, of its planned kind."""
    n = len(layout.rows)
    qs = np.frombuffer(q, dtype=np.uint64).reshape(-1, QDISC_FIELDS)[:2 * n].reshape(n, 2, QDISC_FIELDS)
    return np.asarray(layout.planned & (qs[:, :, 0] != 0) & (qs[:, :, 3] == layout.kinds[:, :, 0]) &
                      (qs[:, :, 4] == layout.kinds[:, :, 1]), dtype=bool)


def build(layout: ColumnLayout, q: array, lk: array, c: array, extra: Mapping[str, dict[str, CounterValue]],
          instances: Mapping[str, str]) -> SampleColumns | None:
    """The pass's columns from the decoder's arrays; None when a counter is too large for int64
    columns (`columns.LIMIT`): the sampler builds the records instead."""
    n = len(layout.rows)
    qs = np.frombuffer(q, dtype=np.uint64).reshape(-1, QDISC_FIELDS)[:2 * n].reshape(n, 2, QDISC_FIELDS)
    ls = np.frombuffer(lk, dtype=np.uint64).reshape(-1, LINK_FIELDS)[:n]
    cs = np.frombuffer(c, dtype=np.uint64).reshape(-1, NFT_FIELDS)
    if any(a.size and int(a.max()) >= LIMIT for a in (qs[:, :, 5:11], ls[:, 1:7], cs[:, 1:3])):
        return None
    counters = np.vstack([cs, np.zeros((1, NFT_FIELDS), dtype=np.uint64)])  # slot -1: the zero row
    seen = counters[:, 0] != 0
    rows = layout.rows

    def counters_of(row: int) -> dict[str, CounterValue]:
        own = {}
        for name, slot in rows[row][7]:
            if seen[slot]:
                own[name] = CounterValue(int(counters[slot, 1]), int(counters[slot, 2]))
        more = extra.get(rows[row][0])
        if more:
            own.update(more)
        return own

    cols = empty_columns(layout.table, counters_of, instances)
    ok = root_ok(layout, q)
    # the packet-rate drops ahead of each queue (nft): bytes towards the instance are frames, from it IP
    pps_seen = seen[layout.pps]
    before_p = np.where(pps_seen, counters[layout.pps, 1], 0).astype(np.int64)
    before_b = np.where(pps_seen, counters[layout.pps, 2], 0).astype(np.int64)
    before_b[:, 1] += ETH_HLEN * before_p[:, 1]
    v = qs[:, :, 5:11].astype(np.int64)
    nbytes, packets, drops, backlog, qlen = v[:, :, 0], v[:, :, 1], v[:, :, 2], v[:, :, 4], v[:, :, 5]
    mean = np.where(packets > 0, nbytes // np.maximum(packets, 1), 0)
    if drops.size and float((drops.astype(np.float64) * mean).max()) >= LIMIT:
        return None
    f = cols.flows
    f[:, :, 0] = nbytes + backlog + drops * mean + before_b
    f[:, :, 1] = packets + drops + qlen + before_p
    f[:, :, 2] = nbytes
    f[:, :, 3] = packets
    f[:, :, 4] = drops + before_p
    f[:, :, 5] = backlog
    cols.estimated[:] = drops > 0
    fast = np.asarray(ok.all(axis=1), dtype=bool)
    cols.has_flow[:] = fast[:, None]
    index = layout.table.index
    for port in extra:  # a counter its plan does not name may be one `flows` reads
        if port in index:
            fast[index[port]] = False
    for row in np.flatnonzero(~fast).tolist():
        port = rows[row][0]
        stats: dict[tuple[object, ...], TcStats] = {}
        for d, dev in enumerate((port, ifb_name(port))):
            if ok[row, d]:
                stats[("qdisc", dev, "root")] = TcStats(*qs[row, d, 5:11].tolist())
        put_flows(cols, row, flows(port, stats, counters_of(row)))
    cols.links[:] = ls[:, 1:7]
    cols.has_link[:] = layout.link_known & (ls[:, 0] != 0)
    cols.has_syn[:] = seen[layout.syn]
    cols.syn[:] = np.where(cols.has_syn, counters[layout.syn, 1], 0)
    for port, more in extra.items():
        syn_name = f"{chain_from(port)}_syn"
        if syn_name in more and port in index:
            cols.has_syn[index[port]], cols.syn[index[port]] = True, more[syn_name].packets
    return cols
