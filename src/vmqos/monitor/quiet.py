"""The reads a pass can leave out for a port whose instance sent nothing: its side of the counters stands still.

Everything vmqos counts of what an instance sends moves only after the port's device received a
frame from it: its nft ingress chain's counters (SYNs, packet-rate drops; offered, passed and
dropped where that direction has no queue) and its IFB's root queue, which only that chain's
redirect feeds. The device's `rx_packets` counts each such frame, within microseconds of the
chain seeing it, and it is in the link dump every pass reads anyway (one dump, linear in the
devices). So while a port's `rx_packets` stands still, what was read of its instance's side is
still what it is, and the pass copies it instead of reading it again: at 10,000 ports most of the
20,000 qdisc gets and up to 30,000 nft gets of a pass are of that side (docs/benchmarks.md, section 6).

Two intervals, not one: a veth counts a frame when its peer hands it over, and the ingress hook
sees it later, from the CPU's backlog (vhost-net's batched path into a tap likewise); a tap written
by `write()` counts it after its receive ran. A frame counted just before a pass's link dump may so
reach the chain after that pass's nft reads, so a port is quiet only when its counter stood still
over the last two passes: its side was read at least once after its last frame arrived (a frame
the other way round, counted just after the link dump, is seen by the next pass: as if it came
then). An IFB whose queue held something (backlog or packets) when last
read is read again: a queue sends without new frames. Nothing is left out on the sampler's whole
passes (the first over a layout, and one after every nft commit in the namespace: a counter made
anew by a re-apply is read at once), and each pass reads the side of a tenth of the quiet ports all
the same, in turn (`reread_every`): a queue made anew by hand, or a counter reset without a commit,
is seen within ten passes, as a counter that stepped back (`counter_delta`'s rules).
"""

from __future__ import annotations

from array import array
from typing import Sequence

import numpy as np
import numpy.typing as npt

from vmqos.drivers.counter_arrays import LINK_FIELDS, QDISC_FIELDS

Rows = npt.NDArray[np.bool_]
_ABSENT = np.iinfo(np.uint64).max  # rx of a device the link dump did not list: never equal to a real count


class QuietPorts:
    """Per layout of the sampler: each port's `rx_packets` at the last two passes."""

    def __init__(self) -> None:
        self._for: object | None = None
        self._rx: list[npt.NDArray[np.uint64]] = []

    def observe(self, layout: object, links: array, rows: int) -> Rows:
        """This pass's link counters (row i at link slot i); returns the rows that are quiet now:
        their device listed and its `rx_packets` equal at this pass and the two before, over the
        same layout. Call it on every pass, whole ones included, so that the history is kept."""
        table = np.frombuffer(links, dtype=np.uint64).reshape(-1, LINK_FIELDS)[:rows]
        rx = np.where(table[:, 0] != 0, table[:, 1], _ABSENT)
        if self._for is not layout:
            self._for, self._rx = layout, []
        quiet = np.zeros(rows, dtype=bool)
        if len(self._rx) == 2:
            quiet = (rx != _ABSENT) & (rx == self._rx[0]) & (rx == self._rx[1])
        self._rx = [rx.copy(), *self._rx[:1]]
        return quiet


def ifb_slots_to_keep(quiet: Rows, previous: array) -> npt.NDArray[np.int64]:
    """The IFB root slots (2i + 1) of the quiet rows whose queue held nothing when last read: their
    previous values stand for this pass."""
    n = len(quiet)
    q = np.frombuffer(previous, dtype=np.uint64).reshape(-1, QDISC_FIELDS)[:2 * n].reshape(n, 2, QDISC_FIELDS)
    empty = (q[:, 1, 9] == 0) & (q[:, 1, 10] == 0)
    return 2 * np.flatnonzero(quiet & empty) + 1


def without(slots: Sequence[int] | array, left_out: npt.NDArray[np.int64], size: int) -> list[int]:
    """`slots` (ascending) less those `left_out`, as a list for the requests' batches."""
    if not len(left_out):
        return list(slots)
    keep = np.ones(size, dtype=bool)
    keep[left_out] = False
    chosen = np.asarray(slots, dtype=np.int64)
    return chosen[keep[chosen]].tolist()


def carry(current: array, previous: array, slots: npt.NDArray[np.int64], fields: int) -> None:
    """Copy the objects at `slots` of the previous pass's array into this pass's (present word included)."""
    if len(slots):
        now = np.frombuffer(current, dtype=np.uint64).reshape(-1, fields)
        now[slots] = np.frombuffer(previous, dtype=np.uint64).reshape(-1, fields)[slots]


def counters_to_carry(quiet: Rows, needed: npt.NDArray[np.int64], needed_from: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The counter slots a pass reads by name (`needed`, each of the row `needed_from` on the instance's
    side, -1 on the other) that it leaves out for the quiet rows: their previous values stand."""
    if not len(needed):
        return needed
    return needed[(needed_from >= 0) & quiet[np.maximum(needed_from, 0)]]
