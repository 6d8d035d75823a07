"""Where a container's interface comes out on the host: its veth peer, found as the `bandwidth` plugin finds it.

containernetworking/plugins' bandwidth plugin (`getHostInterface`) reads the peer's ifindex of the
container's interface inside the container's namespace (IFLA_LINK of a veth), looks that index up in
its own namespace, and accepts the name only if `prevResult` lists it as a host interface. vmqos does
the same over netlink (pyroute2), so a network plugin that reports several host interfaces (a bridge
and a veth) or none in the right order still gets the right one limited.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vmqos.core.errors import KernelError, NotFound
from vmqos.drivers.privileges import open_in_netns

NETNS_DIR = Path("/run/netns")


def _iproute(netns: str | None) -> Any:
    from pyroute2 import IPRoute  # lazy: pyroute2 costs ~65 ms at import

    return open_in_netns(netns, IPRoute)


def peer_index(netns_path: str, ifname: str) -> int:
    """The ifindex, in the namespace that made it, of the veth peer of `ifname` in `netns_path`."""
    if not os.path.exists(netns_path):
        raise NotFound(f"the container's network namespace {netns_path} does not exist")
    try:
        with _iproute(netns_path) as ipr:
            links = ipr.link("get", ifname=ifname)
    except NotFound:
        raise
    except Exception as exc:  # pyroute2's NetlinkError (ENODEV) and OSError alike: one line
        raise NotFound(f"interface {ifname} is not in the container's namespace {netns_path} ({exc})") from None
    info = links[0].get("IFLA_LINKINFO")
    kind = info.get("IFLA_INFO_KIND") if info is not None else None
    index = links[0].get("IFLA_LINK")
    if kind != "veth" or not index:
        raise NotFound(f"container interface {ifname} has no veth peer (it is a {kind or 'device of no kind'}); "
                       "vmqos-cni limits the host side of a veth, as the bandwidth plugin does")
    return int(index)


def name_of_index(index: int, netns: str | None) -> str | None:
    """The name of link `index` in `netns` (None: this namespace), or None when it has no such link."""
    try:
        with _iproute(netns) as ipr:
            links = ipr.link("get", index=index)
    except NotFound:
        raise
    except Exception:
        return None
    name = links[0].get("IFLA_IFNAME")
    return str(name) if name else None


def current_netns_name() -> str | None:
    """The name under /run/netns of the namespace this process runs in; None when it has none (the
    host's own, or an unnamed one). A runtime run with `ip netns exec NAME` runs its plugins there, and
    the ports they make belong to that namespace's scope."""
    try:
        own = os.stat("/proc/self/ns/net")
    except OSError as exc:
        raise KernelError(f"cannot read this process's network namespace: {exc}") from None
    try:
        entries = sorted(NETNS_DIR.iterdir())
    except OSError:
        return None
    init = _init_netns()
    if init is not None and (own.st_dev, own.st_ino) == init:
        return None
    for entry in entries:
        try:
            found = entry.stat()
        except OSError:
            continue
        if (found.st_dev, found.st_ino) == (own.st_dev, own.st_ino):
            return entry.name
    return None


def _init_netns() -> tuple[int, int] | None:
    try:
        found = os.stat("/proc/1/ns/net")
    except OSError:
        return None
    return found.st_dev, found.st_ino
