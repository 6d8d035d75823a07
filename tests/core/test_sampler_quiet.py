"""Core tier: a port whose instance sent nothing has its side carried, not read, and the samples do not change.

The sampler's arrays path runs over arrays filled in advance (what the C decoder writes), with its
reads replaced by ones that honour a selection of slots and record it. Two samplers read the same
ticks: one leaves out the quiet ports' side (`skip_quiet`, the monitor's default), one reads
everything by name. Their samples must be equal on every pass, and the first must have asked
for neither the IFB root nor the instance-side counters of a port whose `rx_packets` stood still
over its last two passes, but for all of a port that sends, an IFB that holds packets, a whole pass.
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np
import pytest

from tests.core.test_columns import FakeReads, _patch, _sampler, _state
from vmqos.core.plan.host import plan_host
from vmqos.drivers import counter_arrays
from vmqos.drivers.counter_arrays import NFT_FIELDS, QDISC_FIELDS
from vmqos.monitor.sample_layout import Slots
from vmqos.monitor.sampler import Sampler

pytestmark = pytest.mark.skipif(not counter_arrays.available(), reason="the compiled decoder is not built (make)")

PORTS = 30


class SelectiveReads(FakeReads):
    """`FakeReads` whose gets read only the slots asked for (the others "not seen"), and remember them."""

    def __init__(self, slots: Slots, devices: tuple[int, int]) -> None:
        kinds = [k for row in slots.rows for k in (row[3], row[5])]
        super().__init__(slots.layout.sizes(), devices, kinds)
        self.slots = slots
        self.asked_q: list[int] = []
        self.asked_c: list[int] = []
        self.gen = 1  # the ruleset's generation
        self.dumps = 0

    def generation(self) -> int:
        return self.gen

    def counters(self, layout: Any, table: str = "vmqos", names: Any = None) -> tuple[array, list[Any]]:
        self.dumps += 1
        return super().counters(layout, table, names)

    def qdiscs(self, layout: Any, by_get: bool = False, slots: Any = None) -> array:
        chosen = list(range(self.q.shape[0])) if slots is None else list(slots)
        self.asked_q = chosen
        out = np.zeros_like(self.q)
        out[chosen] = self.q[chosen]
        return array("Q", out.tobytes())

    def counters_at(self, layout: Any, slots: Any, table: str = "vmqos") -> array:
        self.asked_c = list(slots)
        out = np.zeros_like(self.c)
        out[self.asked_c] = self.c[self.asked_c]
        return array("Q", out.tobytes())

    def tick(self, sending: set[int]) -> None:
        """Every port receives (its HTB, its own counters move); only the rows in `sending` send: their
        device's rx, their IFB's queue and their instance-side counters move. A quiet row's IFB holds nothing."""
        before_q, before_c, before_rx = self.q.copy(), self.c.copy(), self.links[:, 1].copy()
        self.advance()
        quiet = [i for i in range(PORTS) if i not in sending]
        self.links[quiet, 1] = before_rx[quiet]
        ifb = [2 * i + 1 for i in quiet]
        self.q[ifb] = before_q[ifb]
        self.q[ifb, 9] = self.q[ifb, 10] = 0
        side = sorted(_side(self.slots, set(quiet)))
        self.c[side] = before_c[side]


def _pair() -> tuple[Sampler, Sampler, SelectiveReads, SelectiveReads, dict[str, Any]]:
    plans = plan_host(_state(PORTS))
    skipping, slots = _sampler(plans, True)
    reading, _ = _sampler(plans, True)
    fakes = []
    for sampler, skip in ((skipping, True), (reading, False)):
        sampler.nft_reads, sampler.skip_quiet, sampler.full_every, sampler.reread_every = "needed", skip, 6, 1000
        fake = SelectiveReads(slots, sampler._devices)
        _patch(sampler, fake)
        reader = sampler._arrays
        assert reader is not None
        reader.counters_at = fake.counters_at  # type: ignore[method-assign]
        reader.generation = fake.generation  # type: ignore[method-assign]
        fakes.append(fake)
    return skipping, reading, fakes[0], fakes[1], plans


def _side(slots: Slots, rows: set[int]) -> set[int]:
    """Every named counter slot of these rows' instance side (what `flows` and `rates` read, or not)."""
    return {slot for row in rows for name, slot in slots.rows[row][7] if name.startswith(f"from_{slots.rows[row][0]}_")}


def test_a_quiet_port_is_carried_and_the_samples_stay_the_same():
    skipping, reading, fake, twin, plans = _pair()
    slots = skipping._slots_of(skipping._watch(plans))
    assert all(_side(slots, {i}) for i in range(PORTS))  # every port has its SYN counter at least
    busy = {0, 1, 2}
    script = [set(range(PORTS))] * 2 + [busy] + [busy | {5}] + [busy] * 2 + [busy | {7}] + [busy] * 4
    with skipping, reading:
        for n, sending in enumerate(script):
            if n:
                fake.tick(sending)
            if n in (3, 4, 5):  # row 5 sent at pass 3 and its IFB holds a packet since: the queue may still send
                fake.q[11, 9], fake.q[11, 10] = 1500, 1
            twin.q, twin.c, twin.links = fake.q.copy(), fake.c.copy(), fake.links.copy()
            got, want = skipping.sample(plans), reading.sample(plans)
            assert got.ports == want.ports, n
            # quiet: sent nothing in this interval and the one before; less the row read in turn this pass
            # (`reread_every`: the k-th pass after a whole one reads row k - 1's side all the same)
            quiet = set(range(PORTS)) - sending - (script[n - 1] if n else set()) - {n - (7 if n > 6 else 1)}
            left_out_q = set(range(2 * PORTS)) - set(fake.asked_q)
            if n in (0, 1, 6):  # the first pass, the second (no two intervals yet), every sixth (full_every)
                assert left_out_q == set(), n
                continue
            assert left_out_q == {2 * i + 1 for i in quiet} - ({11} if n == 5 else set()), n
            assert not set(fake.asked_c) & _side(slots, quiet), n
            assert _side(slots, set(range(PORTS)) - quiet) & set(twin.asked_c) <= set(fake.asked_c), n
        assert len(quiet) == PORTS - 4  # the last pass left out all but the busy ports and the one read in turn


def test_a_row_that_starts_sending_is_read_at_once():
    skipping, reading, fake, twin, plans = _pair()
    slots = skipping._slots_of(skipping._watch(plans))
    with skipping, reading:
        for n in range(5):
            sending = set(range(PORTS)) if n < 1 else ({9} if n == 4 else set())
            if n:
                fake.tick(sending)
                twin.q, twin.c, twin.links = fake.q.copy(), fake.c.copy(), fake.links.copy()
            got, want = skipping.sample(plans), reading.sample(plans)
            assert got.ports == want.ports, n
        assert 19 in fake.asked_q and _side(slots, {9}) & set(twin.asked_c) <= set(fake.asked_c)
        assert 21 not in fake.asked_q  # row 10 stays quiet


def test_a_counter_that_moves_without_a_frame_would_be_missed():
    """The premise the carry rests on, shown to matter: if an instance-side counter moved while its
    device's rx stood still, the skipping sampler would not see it (so the kernel tier checks the
    premise on real traffic: tests/kernel/test_sampler_paths.py)."""
    skipping, reading, fake, twin, plans = _pair()
    slots = skipping._slots_of(skipping._watch(plans))
    with skipping, reading:
        for n in range(5):
            if n:
                fake.tick(set())
            if n == 4:
                syn = dict(slots.rows[13][7])[f"from_{slots.rows[13][0]}_syn"]  # not the row read in turn
                fake.c[syn, 1] += np.uint64(50)
            twin.q, twin.c, twin.links = fake.q.copy(), fake.c.copy(), fake.links.copy()
            got, want = skipping.sample(plans), reading.sample(plans)
        assert got.ports != want.ports
    assert NFT_FIELDS == 3 and QDISC_FIELDS == 11


def test_the_whole_table_is_read_again_when_the_rulesets_generation_moves_not_before():
    skipping, reading, fake, twin, plans = _pair()
    skipping.full_every = 1000
    with skipping, reading:
        for n in range(8):
            if n:
                fake.tick(set())
            if n == 5:  # an nft commit in the namespace (a re-apply, a quarantine, anyone's)
                fake.gen += 1
            dumps = fake.dumps
            skipping.sample(plans)
            assert fake.dumps - dumps == (1 if n in (0, 5) else 0), n
            assert (set(fake.asked_q) == set(range(2 * PORTS))) == (n in (0, 1, 5)), n  # the second: no history yet


def test_each_quiet_port_is_read_in_turn_within_reread_every_passes():
    skipping, reading, fake, twin, plans = _pair()
    skipping.full_every, skipping.reread_every, reading.full_every = 1000, 7, 1000
    slots = skipping._slots_of(skipping._watch(plans))
    read: dict[int, list[int]] = {i: [] for i in range(PORTS)}
    with skipping, reading:
        for n in range(3 + 2 * 7):
            if n:
                fake.tick(set())
            twin.q, twin.c, twin.links = fake.q.copy(), fake.c.copy(), fake.links.copy()
            assert skipping.sample(plans).ports == reading.sample(plans).ports
            if n >= 3:
                for i in range(PORTS):
                    if 2 * i + 1 in fake.asked_q:
                        read[i].append(n)
                        assert _side(slots, {i}) & set(twin.asked_c) <= set(fake.asked_c)
    assert all(len(ns) == 2 and ns[1] - ns[0] == 7 for ns in read.values()), read
