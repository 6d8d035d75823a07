"""What a port's segmenting TBF leaves dropped beyond what its root HTB counted, read only where it can have moved.

Below ~52 Mbit/s each HTB leaf queues in a TBF that segments GSO aggregates (`queues.leaf_queue`);
segments it drops while it takes others are counted on the TBF alone, so the root HTB, the one
counter the sampler reads per direction, undercounts drops and offered traffic at low rates
(`flows.unseen_leaf_drops` says exactly what it misses). Both read paths add, per device, the
difference read from the TBF and its HTB class.

Reading two more objects per leaf on every pass would cost what the whole pass may cost at 10,000
ports (issue 17). It is not needed: a TBF can drop only while something is enqueued through the
root, and any such enqueue leaves a trace on the root: an aggregate refused whole is a root drop,
one taken in part puts segments in the root's queue, which are still there (qlen > 0) or were
sent (its packets moved). So while a root's (packets, drops) stay what they were when its leaves
were last read, and it holds nothing, its leaves' difference is what it was: `LeafMemo` keeps it.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from vmqos.core.analysis.flows import unseen_leaf_drops, unseen_leaf_drops_since
from vmqos.core.observed import QdiscCounters, TcStats
from vmqos.core.plan.handles import handle_int
from vmqos.core.plan.names import ifb_name
from vmqos.core.plan.planner import PortPlan
from vmqos.core.plan.tc_objects import Qdisc
from vmqos.drivers.counter_arrays import QDISC_FIELDS, ArrayReader, kind_words
from vmqos.drivers.counters import CounterReader

TBF_KIND = "tbf"


@dataclass(frozen=True)
class TbfLeaf:
    """A planned segmenting TBF: the HTB leaf class it is under (its parent) and its own handle."""

    dev: str
    classid: int
    handle: int


def tbf_leaves(plans: Mapping[str, PortPlan]) -> dict[str, tuple[TbfLeaf, ...]]:
    """Device -> the TBF leaves the plans put under its HTB (the port's and its IFB's)."""
    out: dict[str, list[TbfLeaf]] = {}
    for plan in plans.values():
        for obj in plan.objects:
            if isinstance(obj, Qdisc) and obj.qdisc_kind == TBF_KIND and obj.parent not in ("root", "ingress"):
                out.setdefault(obj.dev, []).append(TbfLeaf(obj.dev, handle_int(obj.parent), handle_int(obj.handle)))
    return {dev: tuple(leaves) for dev, leaves in out.items()}


def leaf_parents(tbf: Mapping[str, tuple[TbfLeaf, ...]], index: Mapping[str, int]) -> frozenset[tuple[int, int]]:
    """(ifindex, parent class) of every TBF leaf of a device that exists: what the qdisc dump keeps."""
    return frozenset((index[dev], leaf.classid) for dev, leaves in tbf.items() if dev in index for leaf in leaves)


Signature = tuple[int, int, int]  # the root's sent packets, drops and queue length
TbfRow = tuple[int, str, int, tuple[TbfLeaf, ...]]  # a device's root qdisc slot, its name, ifindex, TBF leaves
_TBF_WORDS = kind_words(TBF_KIND)
_SIGNATURE = [6, 7, 10]  # a root's sent packets, drops and queue length, in a decoded slot


class LeafMemo:
    """Per device: the root's signature when its leaves were last read, and what they added then;
    per leaf, its last (TBF drops, class drops) and what it hid from the root so far."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Signature, int]] = {}
        self._leaves: dict[tuple[str, int], tuple[int, int, int]] = {}
        # the arrays path's copy of `_seen`, row by row of one tuple of rows (`add_unseen_from_gets`)
        self._rows: tuple[TbfRow, ...] | None = None
        self._slots = np.zeros(0, dtype=np.int64)
        self._signatures = np.zeros((0, 3), dtype=np.uint64)
        self._unseen = np.zeros(0, dtype=np.uint64)

    def leaf(self, dev: str, classid: int, tbf_drops: int, class_drops: int) -> int:
        """What this leaf hid from its root so far, given its counters just read: their difference
        at its first read, then what it hid between reads (`unseen_leaf_drops_since`), so that a
        TBF that restarts from zero under a class that keeps its count loses nothing."""
        key, now = (dev, classid), (tbf_drops, class_drops)
        seen = self._leaves.get(key)
        total = unseen_leaf_drops([now]) if seen is None else seen[2] + unseen_leaf_drops_since(seen[:2], now)
        self._leaves[key] = (tbf_drops, class_drops, total)
        return total

    def known(self, dev: str, signature: Signature) -> int | None:
        """The leaves' unseen drops, if the root has not moved since they were read; else None."""
        seen = self._seen.get(dev)
        if seen is None or signature[2] != 0 or seen[0] != signature:
            return None
        return seen[1]

    def remember(self, dev: str, signature: Signature, unseen: int) -> None:
        self._seen[dev] = (signature, unseen)

    def clear(self) -> None:
        """Forget every device (one came or went: a name may now be another device)."""
        self._seen.clear()
        self._leaves.clear()
        self._rows = None

    def unmoved(self, rows: tuple[TbfRow, ...], qs: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Per row of `rows`: its root (in `qs`, the roots just read, one per slot) was read, holds
        nothing and has the signature it had when its leaves were last read here; `known` in one go."""
        if self._rows is not rows:
            self._rows = rows
            self._slots = np.array([row[0] for row in rows], dtype=np.int64)
            self._signatures = np.full((len(rows), 3), np.iinfo(np.uint64).max, dtype=np.uint64)
            self._unseen = np.zeros(len(rows), dtype=np.uint64)
        now = qs[self._slots][:, _SIGNATURE]
        return np.asarray((qs[self._slots, 0] != 0) & (now[:, 2] == 0) & (now == self._signatures).all(axis=1),
                          dtype=bool)

    def keep(self, row: int, signature: Signature, unseen: int) -> None:
        """Row `row` of the rows `unmoved` was last given: its leaves were read (or known) at this signature."""
        self._signatures[row] = signature
        self._unseen[row] = unseen

    def add_kept(self, qs: npt.NDArray[np.uint64], unmoved: npt.NDArray[np.bool_]) -> None:
        """Add to the drops of the `unmoved` rows' roots (in `qs`) what their leaves hid when last read."""
        if unmoved.any():
            qs[self._slots[unmoved], 7] += self._unseen[unmoved]


def tbf_rows(ports: Sequence[str], tbf: Mapping[str, tuple[TbfLeaf, ...]], index: Mapping[str, int]) -> tuple[TbfRow, ...]:
    """The arrays path's rows of the devices with TBF leaves; the sampler's layout puts the root
    qdisc of the i-th port at slot 2i and its IFB's at 2i + 1."""
    return tuple((slot, dev, index[dev], tbf[dev]) for i, port in enumerate(ports)
                 for slot, dev in ((2 * i, port), (2 * i + 1, ifb_name(port))) if dev in tbf and dev in index)


def add_unseen_from_gets(reader: ArrayReader, memo: LeafMemo, rows: tuple[TbfRow, ...], q: array) -> None:
    """The arrays path: each root qdisc of `q` (the roots just read, at their slots) gets the drops
    its TBF leaves counted and it did not, read with one get per leaf and class (decoded in C), only
    for roots that moved since their leaves were read. The roots that did not move are found with
    numpy (`LeafMemo.unmoved`): at 10,000 ports a loop over them cost ~15 ms a pass."""
    if not rows:
        return
    qs = np.frombuffer(q, dtype=np.uint64).reshape(-1, QDISC_FIELDS)
    unmoved = memo.unmoved(rows, qs)
    unseen: dict[int, int] = {}
    todo: list[tuple[int, int, str, Signature, tuple[TbfLeaf, ...]]] = []
    for r in np.flatnonzero(~unmoved).tolist():
        qslot, dev, _ifindex, leaves = rows[r]
        b = qslot * QDISC_FIELDS
        if not q[b]:
            continue  # no root: no queued flow to correct
        signature = (q[b + 6], q[b + 7], q[b + 10])
        known = memo.known(dev, signature)
        if known is None:
            todo.append((r, qslot, dev, signature, leaves))
            continue
        memo.keep(r, signature, known)
        if known:
            unseen[qslot] = known
    if todo:
        ifindex = {dev: idx for _, dev, idx, _ in rows}
        got = reader.leaves_by_get([(ifindex[dev], leaf.classid) for _, _, dev, _, leaves in todo for leaf in leaves])
        k = 0
        for r, qslot, dev, signature, leaves in todo:
            n = 0
            for leaf in leaves:
                t, c = 2 * k * QDISC_FIELDS, (2 * k + 1) * QDISC_FIELDS
                k += 1
                if got[t] and got[t + 3] == _TBF_WORDS[0] and got[t + 4] == _TBF_WORDS[1] and got[c]:
                    n += memo.leaf(dev, leaf.classid, got[t + 7], got[c + 7])
            memo.remember(dev, signature, n)
            memo.keep(r, signature, n)
            if n:
                unseen[qslot] = n
    for qslot, n in unseen.items():
        q[qslot * QDISC_FIELDS + 7] += n
    memo.add_kept(qs, unmoved)


def add_unseen_from_dumps(reader: CounterReader, memo: LeafMemo, tbf: Mapping[str, tuple[TbfLeaf, ...]],
                          tc: dict[str, dict[tuple[object, ...], TcStats]], qdiscs: Sequence[QdiscCounters],
                          index: Mapping[str, int]) -> None:
    """The Python path: the roots of `tc` (device -> key -> stats) get the drops their TBF leaves
    counted and they did not; the leaves' stats from the qdisc dump (`qdiscs`, read with
    `leaf_parents`), their classes from a class dump of the device, only for roots that moved since."""
    leaf_stats = {(q.ifindex, q.parent): q.stats for q in qdiscs if q.kind == TBF_KIND}
    for dev, leaves in tbf.items():
        key = ("qdisc", dev, "root")
        root = tc.get(dev, {}).get(key)
        if root is None or dev not in index:
            continue
        signature = (root.packets, root.drops, root.qlen)
        n = memo.known(dev, signature)
        if n is None:
            idx = index[dev]
            classes = {c.handle: c.stats for c in reader.classes(idx)}
            n = sum(memo.leaf(dev, leaf.classid, leaf_stats[idx, leaf.classid].drops, classes[leaf.classid].drops)
                    for leaf in leaves if (idx, leaf.classid) in leaf_stats and leaf.classid in classes)
            memo.remember(dev, signature, n)
        if n:
            tc[dev][key] = replace(root, drops=root.drops + n)
