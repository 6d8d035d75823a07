"""Links of a network namespace as they come and go: netlink's RTMGRP_LINK, read on a raw socket.

The agent must put a port's limits on its device as soon as the device exists: libvirt deletes
and creates a VM's tap on every start, reboot and migration, and the new tap has no qdisc. The
kernel says so on the link multicast group at once (RTM_NEWLINK); a socket bound to it inside the
namespace hears every link that appears, is renamed or is moved in (all three are an RTM_NEWLINK
of a name or an index not seen before) and every one that goes (RTM_DELLINK).

A raw socket, not pyroute2's IPRoute: IPRoute.get() blocks in its own event loop and neither a
timeout nor closing the socket wakes it, so a watcher thread could never be stopped. Here `events`
waits in select() with a timeout and decodes the few fields it needs (ifinfomsg, IFLA_IFNAME,
IFLA_ADDRESS, IFLA_LINKINFO/IFLA_INFO_KIND). A link's other news (up, down, MTU, a qdisc) comes
as RTM_NEWLINK of the same name and index and is not reported: it would wake the agent for the
changes it makes itself.
"""

from __future__ import annotations

import errno as errnos
import itertools
import os
import select
import socket
import struct
from dataclasses import dataclass
from typing import Iterator

from vmqos.drivers.counters import netlink_socket
from vmqos.drivers.process import check_netns
from vmqos.drivers.tc_netlink import kernel_error

NETLINK_ROUTE, RTMGRP_LINK = 0, 1
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINKINFO, IFLA_INFO_KIND = 1, 3, 18, 1
NLA_TYPE_MASK = 0x3FFF
_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_NLA = struct.Struct("=HH")


@dataclass(frozen=True)
class Link:
    """A link as the kernel announced it: its index, name, kind (tun, veth, ifb, bridge...; "" for a
    physical one) and MAC address."""

    index: int
    name: str
    kind: str = ""
    mac: str | None = None


@dataclass(frozen=True)
class LinkEvent:
    """`appeared` (created, renamed to this name, or moved into the namespace) or `gone`."""

    what: str
    link: Link


def _attrs(data: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, start of payload, end of payload) of each attribute in data[pos:end]."""
    while pos + 4 <= end:
        length, kind = _NLA.unpack_from(data, pos)
        if length < 4:
            return
        yield kind & NLA_TYPE_MASK, pos + 4, pos + length
        pos += (length + 3) & ~3


def decode_link(data: bytes, offset: int, end: int) -> Link:
    """The Link of one RTM_NEWLINK / RTM_DELLINK message at data[offset:end] (offset: its header)."""
    _family, _type, index, _flags, _change = _IFINFOMSG.unpack_from(data, offset + 16)
    name, kind, mac = "", "", None
    for attr, start, stop in _attrs(data, offset + 16 + _IFINFOMSG.size, end):
        if attr == IFLA_IFNAME:
            name = data[start:stop].split(b"\0", 1)[0].decode(errors="replace")
        elif attr == IFLA_ADDRESS and stop - start == 6:
            mac = ":".join(f"{b:02x}" for b in data[start:stop])
        elif attr == IFLA_LINKINFO:
            for inner, s2, e2 in _attrs(data, start, stop):
                if inner == IFLA_INFO_KIND:
                    kind = data[s2:e2].split(b"\0", 1)[0].decode(errors="replace")
    return Link(index, name, kind, mac)


def _messages(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(type, sequence, offset, end) of each netlink message in one datagram."""
    offset = 0
    while offset + 16 <= len(data):
        length, mtype, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < 16:
            return
        yield mtype, seq, offset, offset + length
        offset += (length + 3) & ~3


class LinkWatcher:
    """A netlink socket in one namespace, on the link group; `links()` lists, `events()` follows.

    Open it before listing what exists, so that nothing created in between is missed."""

    def __init__(self, netns: str | None = None) -> None:
        check_netns(netns)
        self.netns = netns
        self._sock = netlink_socket(netns, NETLINK_ROUTE, groups=RTMGRP_LINK, rcvbuf=1 << 22)  # 1,000 new taps
        self._dumper = netlink_socket(netns, NETLINK_ROUTE)
        self._seq = itertools.count(1)
        self._known: dict[str, int] = {}  # name -> index, of the links seen
        self.overflows = 0  # times the kernel dropped events (ENOBUFS): the caller should resync

    def close(self) -> None:
        self._sock.close()
        self._dumper.close()

    def __enter__(self) -> LinkWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def links(self, *, remember: bool = True) -> list[Link]:
        """Every link of the namespace now (one RTM_GETLINK dump); `remember`: they count as seen (an
        event for one of them is news only when its name or index changes)."""
        seq = next(self._seq)
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        self._dumper.send(_NLMSGHDR.pack(16 + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
        found: list[Link] = []
        while True:
            data = self._dumper.recv(1 << 18)
            for mtype, rseq, offset, end in _messages(data):
                if rseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    for link in found if remember else ():
                        self._known[link.name] = link.index
                    return found
                if mtype == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, offset + 16)
                    if code:
                        raise kernel_error("listing links", -code, os.strerror(-code))
                    return found
                if mtype == RTM_NEWLINK:
                    found.append(decode_link(data, offset, end))

    def events(self, timeout: float) -> list[LinkEvent]:
        """What happened since the last call, waiting up to `timeout` s for something; [] if nothing."""
        ready, _, _ = select.select([self._sock], [], [], timeout)
        out: list[LinkEvent] = []
        while ready:
            try:
                data = self._sock.recv(1 << 18, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errnos.ENOBUFS:  # the kernel dropped events: say so, go on
                    self.overflows += 1
                    continue
                raise
            for mtype, _seq, offset, end in _messages(data):
                if mtype not in (RTM_NEWLINK, RTM_DELLINK):
                    continue
                link = decode_link(data, offset, end)
                if mtype == RTM_DELLINK:
                    if self._known.get(link.name) == link.index:
                        del self._known[link.name]
                    out.append(LinkEvent("gone", link))
                    continue
                renamed = [name for name, index in self._known.items() if index == link.index and name != link.name]
                for old in renamed:
                    del self._known[old]
                    out.append(LinkEvent("gone", Link(link.index, old, link.kind, link.mac)))
                if self._known.get(link.name) != link.index:
                    self._known[link.name] = link.index
                    out.append(LinkEvent("appeared", link))
        return out
