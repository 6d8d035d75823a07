"""Every counter the monitor samples, in one netlink dump per kind, for a whole namespace.

pyroute2 creates the netlink sockets inside the namespace; the three dumps read on them each
second are then decoded here, only as far as the monitor needs: a qdisc's device, handle, parent,
kind and TCA_STATS2 counters; a link's rtnl_link_stats64; a named nft counter's packets and bytes.
pyroute2's generic decoding costs about 20 us a message even with a trimmed message class (its
per-message machinery), and `nft -j list counters` about 70 ms of CPU for 5,000 counters: 1,000
shaped ports (6,000 qdiscs, 3,000 links, 5,000 counters) would cost over 250 ms of CPU per
sample against a budget of 100 ms. This reader takes a few microseconds a message.
"""

from __future__ import annotations

import errno as errnos
import itertools
import os
import socket
import struct
from typing import AbstractSet, Callable, Iterator

from pyroute2.netns import create_socket

from vmqos.core.errors import KernelError
from vmqos.core.observed import CounterValue, LinkCounters, QdiscCounters, TcStats
from vmqos.drivers.privileges import open_in_netns
from vmqos.drivers.process import check_netns
from vmqos.core.plan.handles import TC_H_INGRESS, TC_H_ROOT
from vmqos.drivers.tc_netlink import kernel_error

_NLMSGHDR = struct.Struct("=IHHII")
_TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info
_NLA = struct.Struct("=HH")
_BASIC = struct.Struct("=QI")  # gnet_stats_basic: bytes, packets (u32: see TCA_STATS_PKT64)
_QUEUE = struct.Struct("=IIIII")  # gnet_stats_queue: qlen, backlog, drops, requeues, overlimits
_U64 = struct.Struct("=Q")
_U32 = struct.Struct("=I")
_STATS64 = struct.Struct("=8Q")  # rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped
_IFSTATSMSG = 12  # family, pad1, pad2, ifindex, filter_mask

TCA_KIND, TCA_STATS2 = 1, 7
TCA_STATS_BASIC, TCA_STATS_QUEUE, TCA_STATS_PKT64 = 1, 3, 8
IFLA_STATS_LINK_64 = 1
NLA_TYPE_MASK = 0x3FFF
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTM_NEWQDISC, RTM_GETQDISC, RTM_NEWSTATS, RTM_GETSTATS = 36, 38, 92, 94
RTM_NEWTCLASS, RTM_GETTCLASS = 40, 42
NETLINK_ROUTE, NETLINK_NETFILTER = 0, 12
# nf_tables over nfnetlink: objects (named counters) of one table.
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWOBJ, NFT_MSG_GETOBJ = 18, 19
NFT_MSG_NEWGEN, NFT_MSG_GETGEN = 15, 16
NFTA_GEN_ID = 1
NFPROTO_NETDEV = 5
NFT_OBJECT_COUNTER = 1
NFTA_OBJ_TABLE, NFTA_OBJ_NAME, NFTA_OBJ_TYPE, NFTA_OBJ_DATA = 1, 2, 3, 4
NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS = 1, 2
_NFGEN = struct.Struct("=BBH")  # family, version, res_id (big-endian, 0 here)
_BE32 = struct.Struct(">I")
_BE64 = struct.Struct(">Q")


def _nla(kind: int, payload: bytes) -> bytes:
    data = _NLA.pack(4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


# The three decoders below walk their attributes inline: they run once per message, 13,000 times
# a pass at 1,000 ports, where a generator of attributes per message was the largest single cost.

_KINDS: dict[bytes, str] = {}


def _kind(raw: bytes) -> str:
    kind = _KINDS.get(raw)
    if kind is None:
        kind = _KINDS[raw] = raw.rstrip(b"\0").decode(errors="replace")
    return kind


_NO_QUEUE = (0, 0, 0, 0, 0)


def _qdisc(data: bytes, offset: int, end: int, top_only: bool, devices: AbstractSet[int] | None,
           leaves: AbstractSet[tuple[int, int]] = frozenset()) -> QdiscCounters | None:
    _, ifindex, handle, parent, _ = _TCMSG.unpack_from(data, offset + 16)
    if top_only and parent != TC_H_ROOT and parent != TC_H_INGRESS and (ifindex, parent) not in leaves or \
            devices is not None and ifindex not in devices:
        return None
    nla = _NLA.unpack_from
    kind, nbytes, packets, queue = "?", 0, 0, _NO_QUEUE
    pos = offset + 16 + _TCMSG.size
    while pos + 4 <= end:
        length, atype = nla(data, pos)
        if length < 4:
            break
        atype &= NLA_TYPE_MASK
        if atype == TCA_KIND:
            kind = _kind(data[pos + 4:pos + length])
        elif atype == TCA_STATS2:
            sub, stop = pos + 4, pos + length
            while sub + 4 <= stop:
                slen, stype = nla(data, sub)
                if slen < 4:
                    break
                stype &= NLA_TYPE_MASK
                if stype == TCA_STATS_BASIC:
                    nbytes, packets32 = _BASIC.unpack_from(data, sub + 4)
                    packets = max(packets, packets32)
                elif stype == TCA_STATS_PKT64:  # sent when the packet count does not fit in 32 bits
                    packets = _U64.unpack_from(data, sub + 4)[0]
                elif stype == TCA_STATS_QUEUE:
                    queue = _QUEUE.unpack_from(data, sub + 4)
                sub += (slen + 3) & ~3
        pos += (length + 3) & ~3
    qlen, backlog, drops, _requeues, overlimits = queue
    return QdiscCounters(ifindex, handle, parent, kind, TcStats(nbytes, packets, drops, overlimits, backlog, qlen))


def _link(data: bytes, offset: int, end: int) -> tuple[int, LinkCounters]:
    (ifindex,) = _U32.unpack_from(data, offset + 16 + 4)
    pos = offset + 16 + _IFSTATSMSG
    while pos + 4 <= end:
        length, atype = _NLA.unpack_from(data, pos)
        if length < 4:
            break
        if atype & NLA_TYPE_MASK == IFLA_STATS_LINK_64:
            rxp, txp, rxb, txb, _rxe, _txe, rxd, txd = _STATS64.unpack_from(data, pos + 4)
            return ifindex, LinkCounters(rxp, txp, rxb, txb, rxd, txd)
        pos += (length + 3) & ~3
    return ifindex, LinkCounters()


def _nft_counter(data: bytes, offset: int, end: int, table: bytes) -> tuple[str, CounterValue] | None:
    nla = _NLA.unpack_from
    name, nbytes, packets, ok = "", 0, 0, False
    pos = offset + 16 + _NFGEN.size
    while pos + 4 <= end:
        length, atype = nla(data, pos)
        if length < 4:
            break
        atype &= NLA_TYPE_MASK
        if atype == NFTA_OBJ_TABLE:
            ok = data[pos + 4:pos + length].rstrip(b"\0") == table
        elif atype == NFTA_OBJ_NAME:
            name = data[pos + 4:pos + length].rstrip(b"\0").decode(errors="replace")
        elif atype == NFTA_OBJ_DATA:
            sub, stop = pos + 4, pos + length
            while sub + 4 <= stop:
                clen, ctype = nla(data, sub)
                if clen < 4:
                    break
                ctype &= NLA_TYPE_MASK
                if ctype == NFTA_COUNTER_BYTES:
                    nbytes = _BE64.unpack_from(data, sub + 4)[0]
                elif ctype == NFTA_COUNTER_PACKETS:
                    packets = _BE64.unpack_from(data, sub + 4)[0]
                sub += (clen + 3) & ~3
        pos += (length + 3) & ~3
    return (name, CounterValue(packets, nbytes)) if ok and name else None


def netlink_socket(netns: str | None, proto: int, *, groups: int = 0, rcvbuf: int = 1 << 20) -> socket.socket:
    """A raw netlink socket made inside `netns` (pyroute2 enters the namespace for it), bound to the
    multicast `groups` (0: none), with a receive buffer of `rcvbuf` bytes."""
    sock = open_in_netns(netns, lambda **ns: create_socket(family=socket.AF_NETLINK, socket_type=socket.SOCK_RAW,
                                                           proto=proto, **ns))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((0, groups))
    return sock


QDISC_REQUEST = _TCMSG.pack(0, 0, 0, 0, 0)
LINK_STATS_REQUEST = struct.pack("=BBHII", 0, 0, 0, 0, 1 << (IFLA_STATS_LINK_64 - 1))


def nft_counters_request(table: str, family: int = NFPROTO_NETDEV) -> tuple[bytes, int]:
    """(body, message type) of the dump of one table's named counters."""
    body = _NFGEN.pack(family, 0, 0) + _nla(NFTA_OBJ_TABLE, table.encode() + b"\0") + _nla(
        NFTA_OBJ_TYPE, _BE32.pack(NFT_OBJECT_COUNTER))
    return body, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETOBJ


def nft_counter_get(table: str = "vmqos") -> int:
    """The message type of one named counter's get (NFT_MSG_GETOBJ, not a dump)."""
    return (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETOBJ


def nft_counter_request_body(table: str, name: str, family: int = NFPROTO_NETDEV) -> bytes:
    """The body of the get of one named counter of `table`."""
    return _NFGEN.pack(family, 0, 0) + _nla(NFTA_OBJ_TABLE, table.encode() + b"\0") + _nla(
        NFTA_OBJ_NAME, name.encode() + b"\0") + _nla(NFTA_OBJ_TYPE, _BE32.pack(NFT_OBJECT_COUNTER))


class CounterReader:
    """Netlink sockets in one namespace that dump every qdisc's, link's and named nft counter's values."""

    def __init__(self, netns: str | None = None) -> None:
        check_netns(netns)
        self.netns = netns
        self._sock = netlink_socket(netns, NETLINK_ROUTE)
        self._nfsock: socket.socket | None = None
        self._seq = itertools.count(1)
        self._buf = bytearray(1 << 16)  # a dump's chunk is at most 32 KiB (the kernel's cap)

    def close(self) -> None:
        self._sock.close()
        if self._nfsock is not None:
            self._nfsock.close()

    def __enter__(self) -> "CounterReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dump(self, what: str, mtype: int, body: bytes,
              sock: socket.socket | None = None) -> Iterator[tuple[int, bytes, int, int]]:
        """(message type, buffer, offset, end) of every message of one dump."""
        sock = sock or self._sock
        seq = next(self._seq)
        sock.send(_NLMSGHDR.pack(16 + len(body), mtype, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
        return self._answers(what, sock, seq)

    @staticmethod
    def _answers(what: str, sock: socket.socket, seq: int) -> Iterator[tuple[int, bytes, int, int]]:
        """(message type, buffer, offset, end) of every answer to the request `seq`, until its end (a
        dump's DONE, an acknowledgement) or its error (raised)."""
        while True:
            data = sock.recv(1 << 18)
            offset = 0
            while offset + 16 <= len(data):
                length, rtype, _flags, rseq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < 16:
                    raise kernel_error(f"reading {what}", errnos.EPROTO, "a truncated netlink message")
                if rseq == seq:
                    if rtype == NLMSG_DONE:
                        return
                    if rtype == NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", data, offset + 16)
                        if code:
                            raise kernel_error(f"reading {what}", -code, os.strerror(-code))
                        return
                    yield rtype, data, offset, offset + length
                offset += (length + 3) & ~3

    def dump_into(self, what: str, mtype: int, body: bytes, decode: Callable[[memoryview, int], int],
                  sock: socket.socket | None = None) -> None:
        """One dump whose chunks `decode(chunk, seq)` takes as they come (vmqos.drivers.counter_arrays):
        it returns 1 when the dump ended in that chunk, 0 when more follow, -errno for an error."""
        sock = sock or self._sock
        seq = next(self._seq)
        buf = self._buf
        view = memoryview(buf)
        sock.send(_NLMSGHDR.pack(16 + len(body), mtype, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
        while True:
            status = decode(view[:sock.recv_into(buf)], seq)
            if status > 0:
                return
            if status < 0:
                raise kernel_error(f"reading {what}", -status, os.strerror(-status))

    def qdiscs(self, *, top_only: bool = False, devices: AbstractSet[int] | None = None,
               leaves: AbstractSet[tuple[int, int]] = frozenset()) -> list[QdiscCounters]:
        """Every qdisc of the namespace; `top_only`: only root and ingress ones (what a port's flow
        needs), and those under the (ifindex, parent class) of `leaves`; `devices`: only those of
        these ifindexes (the kernel dumps them all, they are not decoded)."""
        found = (_qdisc(data, off, end, top_only, devices, leaves) for rtype, data, off, end in
                 self._dump("qdisc counters", RTM_GETQDISC, QDISC_REQUEST) if rtype == RTM_NEWQDISC)
        return [q for q in found if q is not None]

    def classes(self, ifindex: int) -> list[QdiscCounters]:
        """Every class of one device (a class dump is per device), as qdiscs are decoded: the
        handle is the classid, the kind its qdisc's."""
        found = (_qdisc(data, off, end, False, None) for rtype, data, off, end in
                 self._dump("class counters", RTM_GETTCLASS, _TCMSG.pack(0, ifindex, 0, 0, 0))
                 if rtype == RTM_NEWTCLASS)
        return [c for c in found if c is not None]

    def links(self) -> dict[int, LinkCounters]:
        return dict(_link(data, off, end) for rtype, data, off, end in
                    self._dump("link counters", RTM_GETSTATS, LINK_STATS_REQUEST) if rtype == RTM_NEWSTATS)

    def nf_socket(self) -> socket.socket:
        """The nfnetlink socket of the namespace, opened at its first use."""
        if self._nfsock is None:
            self._nfsock = netlink_socket(self.netns, NETLINK_NETFILTER)
        return self._nfsock

    def reset_route_socket(self) -> None:
        """A new rtnetlink socket in place of this one (a read that failed may have left answers in it)."""
        self._sock.close()
        self._sock = netlink_socket(self.netns, NETLINK_ROUTE)

    def reset_nf_socket(self) -> None:
        """Close the nfnetlink socket (a read that failed may have left answers in it); the next
        use opens a new one."""
        if self._nfsock is not None:
            self._nfsock.close()
            self._nfsock = None

    def nft_generation(self) -> int:
        """The namespace's nftables ruleset generation (NFT_MSG_GETGEN): the kernel moves it on every
        commit, so while it stays, no named counter was added, deleted or made anew (a sampler reads
        the whole table again only when it moved: vmqos.monitor.sampler)."""
        sock = self.nf_socket()
        seq = next(self._seq)
        body = _NFGEN.pack(socket.AF_UNSPEC, 0, 0)
        sock.send(_NLMSGHDR.pack(16 + len(body), (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN, NLM_F_REQUEST, seq, 0)
                  + body)
        newgen = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN
        for rtype, data, offset, end in self._answers("the nftables generation", sock, seq):
            pos = offset + 16 + _NFGEN.size
            while rtype == newgen and pos + 4 <= end:
                alen, akind = struct.unpack_from("=HH", data, pos)
                if alen < 4:
                    break
                if akind & NLA_TYPE_MASK == NFTA_GEN_ID and alen >= 8:
                    return int(_BE32.unpack_from(data, pos + 4)[0])
                pos += (alen + 3) & ~3
        raise kernel_error("reading the nftables generation", errnos.EPROTO, "an answer without its id")

    def nft_counters(self, table: str = "vmqos", family: int = NFPROTO_NETDEV) -> dict[str, CounterValue]:
        """Named counter -> its value, of one nft table (empty when the table does not exist)."""
        body, mtype = nft_counters_request(table, family)
        newobj = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWOBJ
        raw = table.encode()
        try:
            found = (_nft_counter(data, off, end, raw) for rtype, data, off, end in
                     self._dump("nft counters", mtype, body, self.nf_socket()) if rtype == newobj)
            return dict(f for f in found if f is not None)
        except KernelError as exc:
            if exc.errno == errnos.ENOENT:  # no such table yet
                return {}
            raise
