"""The monitor's three dumps decoded by a compiled helper into flat arrays: the path for thousands of ports.

The same three netlink dumps as `CounterReader.qdiscs/links/nft_counters` (one each per pass,
whatever the number of ports), but decoded by `_nlstats` (C) straight into arrays of 64-bit
counters, at the slots a `Layout` gave the objects the monitor watches: the root qdisc of each
port and of its IFB, each port's link counters, and each named nft counter of the ports' plans.
Nothing else is decoded and no object is built per message; decoding the 130,000 messages of a
10,000-port pass in Python cost about 300 ms of CPU, three times the whole pass's budget
(docs/benchmarks.md, section 6).

The qdisc and nft dumps cost the kernel the square of the objects (it resumes a dump from the
head of its list once per 32 KiB chunk); `qdiscs_by_get` and `counters_at` read the same
counters with one get per object instead (batches of 256 a send, the answers received and decoded
in C by `_nlstats.qdisc_receive/nft_receive`), linear in what is read.

`available()` says whether the helper was built (`make`, or `pip install -e .`, compiles it);
without it the sampler reads the dumps with `CounterReader`, as before.
"""

from __future__ import annotations

import errno as errnos
import os
from array import array
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Mapping, Sequence

from vmqos.core.errors import KernelError
from vmqos.core.plan.handles import TC_H_ROOT
from vmqos.drivers.counters import (
    _NLMSGHDR,
    _TCMSG,
    LINK_STATS_REQUEST,
    NLM_F_REQUEST,
    QDISC_REQUEST,
    RTM_GETQDISC,
    RTM_GETSTATS,
    RTM_GETTCLASS,
    CounterReader,
    nft_counter_get,
    nft_counter_request_body,
    nft_counters_request,
)
from vmqos.drivers.tc_netlink import kernel_error

NLM_F_ACK = 0x4


GET_SEQ_BASE = 1 << 30  # the gets' sequence numbers: above any dump's (CounterReader counts from 1)


NLM_F_ECHO = 0x8


def _batches(requests: Sequence[tuple[int, bytes]], flags: int, batch: int) -> list[tuple[bytes, int, int]]:
    """(the requests of one send, its first and last sequence number) per `batch` gets, each request a
    (message type, body); the last request of each asks for an acknowledgement, which ends the batch's
    answers."""
    out = []
    for start in range(0, len(requests), batch):
        chunk = requests[start:start + batch]
        first = GET_SEQ_BASE + start
        out.append((b"".join(_NLMSGHDR.pack(16 + len(body), mtype, NLM_F_REQUEST | flags |
                                            (NLM_F_ACK if i == len(chunk) - 1 else 0), first + i, 0) + body
                             for i, (mtype, body) in enumerate(chunk)), first, first + len(chunk) - 1))
    return out


class SlotRequests:
    """One get request per slot, packed once (lazily, by `make(slot)` -> (message type, body)) with
    the sequence number GET_SEQ_BASE + slot, with and without the acknowledgement flag; a pass's
    batches are any ascending selection of slots, joined. The helpers' receivers take the answers
    whose sequence numbers lie in a batch's first..last and stop at the last one's acknowledgement,
    so a selection with gaps reads as a whole one. The last two selections' batches are kept: a pass
    that asks for the same slots again (the steady state, or everything) builds nothing."""

    def __init__(self, make: Callable[[int], tuple[int, bytes]], flags: int = 0, batch: int = 256) -> None:
        self._make, self._flags, self._batch = make, flags, batch
        self._plain: list[bytes] = []  # per slot, b"" until packed
        self._acked: list[bytes] = []
        self._kept: dict[bytes, list[tuple[bytes, int, int]]] = {}

    def _pack(self, slot: int) -> None:
        mtype, body = self._make(slot)
        seq, size = GET_SEQ_BASE + slot, 16 + len(body)
        self._plain[slot] = _NLMSGHDR.pack(size, mtype, NLM_F_REQUEST | self._flags, seq, 0) + body
        self._acked[slot] = _NLMSGHDR.pack(size, mtype, NLM_F_REQUEST | self._flags | NLM_F_ACK, seq, 0) + body

    def batches(self, slots: Sequence[int]) -> list[tuple[bytes, int, int]]:
        """(the requests of one send, its first and last sequence number) per `batch` of `slots` (ascending)."""
        if not slots:
            return []
        key = array("q", slots).tobytes()
        kept = self._kept.get(key)
        if kept is not None:
            return kept
        plain, acked = self._plain, self._acked
        if slots[-1] >= len(plain):
            grow = slots[-1] + 1 - len(plain)
            plain += [b""] * grow
            acked += [b""] * grow
        for s in [s for s in slots if not plain[s]]:
            self._pack(s)
        out = []
        for start in range(0, len(slots), self._batch):
            chunk = slots[start:start + self._batch]
            msgs = [plain[s] for s in chunk[:-1]]
            msgs.append(acked[chunk[-1]])
            out.append((b"".join(msgs), GET_SEQ_BASE + chunk[0], GET_SEQ_BASE + chunk[-1]))
        if len(self._kept) >= 2:  # a pass that reads everything, and the steady one
            del self._kept[next(iter(self._kept))]
        self._kept[key] = out
        return out


def _exchange(sock: Any, batches: Sequence[tuple[bytes, int, int]], receive: Callable[[int, int], int], what: str,
              reset: Callable[[], None]) -> None:
    """Send each batch and have the helper receive and decode its answers (`receive(first, last)`: its
    status, negative an errno); on any failure `reset` the socket, since answers may be left unread: the
    next pass starts afresh."""
    try:
        for request, first, last in batches:
            sock.send(request)
            status = receive(first, last)
            if status < 0:
                raise kernel_error(what, -status, os.strerror(-status))
    except BaseException:
        reset()
        raise


_helper: ModuleType | None
try:
    from vmqos.drivers import _nlstats as _helper  # type: ignore[attr-defined,no-redef]
except ImportError:  # not built: the sampler falls back to CounterReader's Python decoding
    _helper = None
if _helper is not None and not hasattr(_helper, "tc_receive"):  # built from an older _nlstats.c: `make` rebuilds it
    _helper = None

# Fields of one slot, as _nlstats.c writes them (its *_FIELDS constants say the same).
QDISC_FIELDS = 11  # present, handle, parent, kind (16 bytes as 2 words), bytes, packets, drops, overlimits, backlog, qlen
LINK_FIELDS = 7  # present, rx_packets, tx_packets, rx_bytes, tx_bytes, rx_dropped, tx_dropped
NFT_FIELDS = 3  # present, packets, bytes


def available() -> bool:
    """Whether the compiled decoder is there."""
    return _helper is not None


def kind_words(kind: str) -> tuple[int, int]:
    """A qdisc kind as the two 64-bit words the decoder stores it in (16 bytes, NUL-padded)."""
    raw = kind.encode()[:16].ljust(16, b"\0")
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


def _slot_table(slots: Mapping[int, int]) -> array:
    """int32 per ifindex: its slot, or -1."""
    table = array("i", [-1]) * ((max(slots) + 1) if slots else 1)
    for ifindex, slot in slots.items():
        table[ifindex] = slot
    return table


@dataclass(frozen=True)
class Layout:
    """Where the decoder puts each watched object's counters: slot numbers chosen by the caller.

    `qdiscs`: ifindex -> slot of its root qdisc; `links`: ifindex -> slot of its counters;
    `counters`: named nft counter -> slot; `slots`: the number of slots of each (at least one
    more than the highest slot given: a slot with no object stays "not seen")."""

    qdiscs: Mapping[int, int]
    links: Mapping[int, int]
    counters: Mapping[str, int]
    slots: tuple[int, int, int] = (0, 0, 0)
    qdisc_table: array = field(init=False, repr=False, compare=False)
    link_table: array = field(init=False, repr=False, compare=False)
    counter_table: dict[bytes, int] = field(init=False, repr=False, compare=False)
    sized: tuple[int, int, int] = field(init=False, repr=False, compare=False)
    qdisc_slots: array = field(init=False, repr=False, compare=False)  # the root qdiscs' slots, ascending

    def __post_init__(self) -> None:
        object.__setattr__(self, "qdisc_table", _slot_table(self.qdiscs))
        object.__setattr__(self, "link_table", _slot_table(self.links))
        object.__setattr__(self, "counter_table", {name.encode(): slot for name, slot in self.counters.items()})

        def size(given: int, slots: Mapping[Any, int]) -> int:
            return max(given, max(slots.values(), default=-1) + 1)

        object.__setattr__(self, "sized", (size(self.slots[0], self.qdiscs), size(self.slots[1], self.links),
                                           size(self.slots[2], self.counters)))
        object.__setattr__(self, "qdisc_slots", array("q", sorted(self.qdiscs.values())))

    def sizes(self) -> tuple[int, int, int]:
        """The number of slots of each kind (computed once: a pass asks several times)."""
        return self.sized


@dataclass
class Arrays:
    """One pass's counters, at the layout's slots; a slot whose `present` word is 0 was not seen."""

    qdiscs: Sequence[int]
    links: Sequence[int]
    counters: Sequence[int]
    unknown: list[tuple[str, int, int]]  # named counters of the table the layout has no slot for: name, packets, bytes
    devices: tuple[int, int]  # the number of devices the link dump listed and the sum of their indexes


class ArrayReader:
    """Reads the three dumps of a `CounterReader`'s namespace into `Arrays`, on its sockets."""

    def __init__(self, reader: CounterReader) -> None:
        if _helper is None:
            raise KernelError("the compiled counter decoder (vmqos.drivers._nlstats) is not built: run `make` "
                              "or `pip install -e .`")
        self.reader = reader
        self.helper = _helper
        self._counter_requests = SlotRequests(lambda slot: (0, b""))
        self._counter_requests_for: Layout | None = None
        self._counter_table = ""
        self._qdisc_requests = SlotRequests(lambda slot: (0, b""))
        self._qdisc_requests_for: Layout | None = None

    def links(self, layout: Layout) -> tuple[array, tuple[int, int]]:
        """Link counters at their slots, and (devices listed, sum of their ifindexes): a change of the
        latter means a device came or went."""
        out = array("Q", bytes(8 * LINK_FIELDS * layout.sizes()[1]))
        seen = [0, 0]

        def decode(chunk: memoryview, seq: int) -> int:
            status, messages, checksum = self.helper.link_stats(chunk, seq, layout.link_table, out, seen[1])
            seen[0] += messages
            seen[1] = checksum
            return int(status)

        self.reader.dump_into("link counters", RTM_GETSTATS, LINK_STATS_REQUEST, decode)
        return out, (seen[0], seen[1])

    def qdiscs(self, layout: Layout, *, by_get: bool = False, slots: Sequence[int] | None = None) -> array:
        """The root qdisc of each device of the layout, at its slot: from the dump, or (`by_get`)
        with one get per device, or per device at `slots` (`qdiscs_by_get`)."""
        if by_get:
            return self.qdiscs_by_get(layout, slots)
        out = array("Q", bytes(8 * QDISC_FIELDS * layout.sizes()[0]))
        self.reader.dump_into("qdisc counters", RTM_GETQDISC, QDISC_REQUEST,
                              lambda chunk, seq: int(self.helper.qdisc_roots(chunk, seq, layout.qdisc_table, out)[0]))
        return out

    def generation(self) -> int:
        """The namespace's nftables ruleset generation (`CounterReader.nft_generation`)."""
        return self.reader.nft_generation()

    def counters(self, layout: Layout, table: str = "vmqos") -> tuple[array, list[tuple[str, int, int]]]:
        """Every named counter of `table` (one dump) at its slot, and those the layout has no slot for;
        `counters_at` reads only some, by name."""
        out = array("Q", bytes(8 * NFT_FIELDS * layout.sizes()[2]))
        unknown: list[tuple[bytes, int, int]] = []
        body, mtype = nft_counters_request(table)
        raw = table.encode()
        try:
            self.reader.dump_into("nft counters", mtype, body, lambda chunk, seq: int(self.helper.nft_counters(
                chunk, seq, raw, layout.counter_table, unknown, out)[0]), self.reader.nf_socket())
        except KernelError as exc:
            if exc.errno != errnos.ENOENT:  # ENOENT: no such table yet, so no counter
                raise
            out = array("Q", bytes(len(out) * 8))
            unknown.clear()
        return out, [(name.decode(errors="replace"), packets, nbytes) for name, packets, nbytes in unknown]

    def counters_at(self, layout: Layout, slots: Sequence[int], table: str = "vmqos") -> array:
        """The named counters of `table` at these slots of the layout (ascending), at their slots:
        one NFT_MSG_GETOBJ request per counter, 256 a send, the answers received and decoded in C.
        Linear in the counters asked for (about 2 us each), where the dump of every counter walks
        the table from its head once per 32 KiB chunk and grows with the square of the counters
        (docs/benchmarks.md, section 6). A counter that no longer exists stays "not seen"."""
        out = array("Q", bytes(8 * NFT_FIELDS * layout.sizes()[2]))
        if not slots:
            return out
        if self._counter_requests_for is not layout or self._counter_table != table:
            names = {slot: name for name, slot in layout.counters.items()}
            mtype = nft_counter_get(table)
            self._counter_requests = SlotRequests(lambda slot: (mtype, nft_counter_request_body(table, names[slot])))
            self._counter_requests_for, self._counter_table = layout, table
        unknown: list[tuple[bytes, int, int]] = []
        sock = self.reader.nf_socket()
        raw, table_slots, fd, buf = table.encode(), layout.counter_table, sock.fileno(), self.reader._buf
        _exchange(sock, self._counter_requests.batches(slots),
                  lambda first, last: self.helper.nft_receive(fd, buf, first, last, raw, table_slots, unknown, out)[0],
                  "reading nft counters by name", self.reader.reset_nf_socket)
        return out

    def qdiscs_by_get(self, layout: Layout, slots: Sequence[int] | None = None) -> array:
        """The same as `qdiscs`, read with one RTM_GETQDISC get per device of the layout (its root
        qdisc) instead of the dump, the answers received and decoded in C: linear in the devices,
        where the dump resumes from the head of the namespace's device list once per 32 KiB chunk
        (docs/benchmarks.md, section 6). `slots` (ascending): only the devices at these slots, the
        others left "not seen". A device that is gone stays "not seen", as in the dump."""
        out = array("Q", bytes(8 * QDISC_FIELDS * layout.sizes()[0]))
        if self._qdisc_requests_for is not layout:
            ifindex = {slot: idx for idx, slot in layout.qdiscs.items()}
            self._qdisc_requests = SlotRequests(lambda slot: (RTM_GETQDISC, _TCMSG.pack(0, ifindex[slot], 0, TC_H_ROOT, 0)),
                                                NLM_F_ECHO)
            self._qdisc_requests_for = layout
        if slots is None:
            slots = layout.qdisc_slots
        if not slots:
            return out
        sock, buf = self.reader._sock, self.reader._buf
        _exchange(sock, self._qdisc_requests.batches(slots),
                  lambda first, last: self.helper.qdisc_receive(sock.fileno(), buf, first, last, layout.qdisc_table,
                                                                out)[0],
                  "reading qdisc counters", self.reader.reset_route_socket)
        return out

    def leaves_by_get(self, leaves: Sequence[tuple[int, int]], batch: int = 256) -> array:
        """For each (ifindex, HTB leaf classid): the qdisc under that class (slot 2k) and the class
        itself (slot 2k+1), QDISC_FIELDS words each, with one get per object (RTM_GETQDISC by
        parent, RTM_GETTCLASS by classid). An object that is not there stays "not seen"."""
        out = array("Q", bytes(8 * QDISC_FIELDS * 2 * len(leaves)))
        if not leaves:
            return out
        requests = [(mtype, _TCMSG.pack(0, ifindex, handle, parent, 0)) for ifindex, classid in leaves
                    for mtype, handle, parent in ((RTM_GETQDISC, 0, classid), (RTM_GETTCLASS, classid, 0))]
        sock, buf = self.reader._sock, self.reader._buf
        _exchange(sock, _batches(requests, NLM_F_ECHO, batch),
                  lambda first, last: self.helper.tc_receive(sock.fileno(), buf, first, last, GET_SEQ_BASE, out)[0],
                  "reading leaf qdisc and class counters", self.reader.reset_route_socket)
        return out

    def read(self, layout: Layout, table: str = "vmqos") -> Arrays:
        links, devices = self.links(layout)
        counters, unknown = self.counters(layout, table)
        return Arrays(self.qdiscs(layout), links, counters, unknown, devices)
