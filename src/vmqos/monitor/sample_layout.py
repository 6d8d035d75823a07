"""What a sampler's pass needs from a set of plans over a set of devices, derived once, not once per pass.

`Watched` is what the plans say (the devices, the planned root qdiscs, the limits, the TBF leaves);
`Slots` is the arrays path's layout of them over the devices that exist: the slot of every root
qdisc, link and named counter the decoder fills, and which counters a pass reads by name
(`needed_counters`), with the rows whose instance's side each counts (`monitor.quiet`).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import numpy.typing as npt

from vmqos.core.analysis.samples import PortLimits, planned_qdiscs
from vmqos.core.plan.names import chain_from, chain_owners, chain_to, counter_port, ifb_name
from vmqos.core.plan.objects import NftCounter
from vmqos.core.plan.planner import PortPlan
from vmqos.drivers.counter_arrays import Layout, kind_words
from vmqos.monitor.columns import ColumnLayout, root_ok
from vmqos.monitor.leaf_drops import TbfLeaf, TbfRow, tbf_leaves, tbf_rows


@dataclass(frozen=True)
class Watched:
    """What a pass needs from the plans, derived once per set of plans rather than once per pass."""

    plans: Mapping[str, PortPlan]
    wanted: frozenset[str]  # the ports and their IFBs
    planned: dict[tuple[object, ...], str]
    owners: dict[str, str]
    limits: dict[str, PortLimits]
    tbf: dict[str, tuple[TbfLeaf, ...]]  # device -> its segmenting TBF leaves (leaf_drops)
    counter_owners: dict[str, str | None] = field(default_factory=dict)  # filled as counters are seen

    @classmethod
    def of(cls, plans: Mapping[str, PortPlan]) -> "Watched":
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


Ints = npt.NDArray[np.int64]
NO_SLOTS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Slots:
    """The arrays path's layout of one set of plans over one set of devices, and per port what its
    record needs: (port, its limits, its qdisc slot and planned kind words, its IFB's, its link
    slot or None, (counter name, slot) of its plan's named counters)."""

    layout: Layout
    rows: tuple[tuple[str, PortLimits, int, tuple[int, int], int, tuple[int, int], int | None,
                      tuple[tuple[str, int], ...]], ...]
    # the counter slots a pass needs when every planned root qdisc is there (ascending), and for
    # each the row whose instance's side it counts (-1: the other side); per row the slots it
    # needs more when its port's (index 0) or its IFB's (index 1) planned root is not there
    # (`monitor.quiet` leaves out the `needed` of a quiet row's instance side)
    needed: Ints = field(default_factory=lambda: NO_SLOTS)
    needed_from: Ints = field(default_factory=lambda: NO_SLOTS)
    without_root: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = ()
    pps_names: tuple[tuple[str, str], ...] = ()  # per row: its packet-rate drop counters (to, from)
    tbf_rows: tuple[TbfRow, ...] = ()
    names: tuple[str, ...] = ()  # per counter slot, its name

    @classmethod
    def of(cls, watched: Watched, index: Mapping[str, int]) -> "Slots":
        qdiscs: dict[int, int] = {}
        links: dict[int, int] = {}
        counters: dict[str, int] = {}
        rows = []
        needed: dict[int, int] = {}
        without: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
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
            mine = dict(own)
            always, if_root, if_not = needed_counters(port)
            instance_side = {*always, *if_root[1], *if_not[1]}
            for d in (0, 1):  # a direction without a planned root reads its nft counters always
                if kinds[d] is None:
                    always, if_root[d], if_not[d] = always + if_root[d] + if_not[d], (), ()
            for name in always + if_root[0] + if_root[1]:
                if name in mine:
                    needed[mine[name]] = i if name in instance_side else -1
            without.append((tuple(mine[n] for n in if_not[0] if n in mine), tuple(mine[n] for n in if_not[1] if n in mine)))
        order = sorted(needed)
        return cls(Layout(qdiscs, links, counters, (2 * len(rows), len(rows), len(counters))), tuple(rows),
                   np.array(order, dtype=np.int64), np.array([needed[s] for s in order], dtype=np.int64),
                   tuple(without),
                   tuple((f"{chain_to(port)}_pps_dropped", f"{chain_from(port)}_pps_dropped") for port in watched.limits),
                   tbf_rows(tuple(watched.limits), watched.tbf, index), tuple(counters))


def needed_names(slots: Slots, layout: ColumnLayout, q: array) -> list[str]:
    """The names of the counters a pass needs, given the root qdiscs it read (`needed_slots`)."""
    return [slots.names[s] for s in needed_slots(slots, layout, q)]


def needed_slots(slots: Slots, layout: ColumnLayout, q: array, quiet: npt.NDArray[np.bool_] | None = None) -> list[int]:
    """The counter slots a pass needs (ascending), given the root qdiscs it read: more for a planned
    root that is not there; none of a quiet row's instance side but those (`quiet`)."""
    ok = root_ok(layout, q)
    keep = slots.needed if quiet is None else slots.needed[(slots.needed_from < 0) | ~quiet[slots.needed_from]]
    missing: list[int] = []
    for row in np.flatnonzero(~ok.all(axis=1)).tolist():
        if_not, ifb_if_not = slots.without_root[row]
        if if_not and not ok[row, 0]:
            missing += if_not
        if ifb_if_not and not ok[row, 1]:
            missing += ifb_if_not
    return sorted({*keep.tolist(), *missing}) if missing else keep.tolist()
