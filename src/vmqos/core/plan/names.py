"""Stable names derived from the port, so that a later run recognises and adopts what exists."""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Iterable, Mapping

_NFT_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HASHED = re.compile(r"_[0-9a-f]{6}$")  # how a mangled name ends: a port's own name may not look so


@functools.lru_cache(maxsize=1 << 16)  # every pass of the monitor names every port's IFB and chains
def _digest(port: str) -> str:
    return hashlib.sha256(port.encode()).hexdigest()


def ifb_name(port: str) -> str:
    """The IFB device for a port: `vqi` + 12 hex digits of its name's hash (15 bytes, IFNAMSIZ-safe)."""
    return "vqi" + _digest(port)[:12]


@functools.lru_cache(maxsize=1 << 16)
def nft_ident(port: str) -> str:
    """The port's name as an nft identifier; a hash suffix keeps `tap-a` and `tap_a` apart.

    One port, one identifier: a name kept as it is never ends like a mangled one (`_` and six hex
    digits), else port `tap_a_<hash of tap-a>` would share `tap-a`'s chains and replace them."""
    if _NFT_IDENT.match(port) and not _HASHED.search(port):
        return port
    return re.sub(r"[^A-Za-z0-9_]", "_", port) + "_" + _digest(port)[:6]


def chain_to(port: str) -> str:
    """The chain on the port's egress hook: traffic towards the instance."""
    return "to_" + nft_ident(port)


def chain_from(port: str) -> str:
    """The chain on the port's ingress hook: traffic sent by the instance."""
    return "from_" + nft_ident(port)


def chain_owners(ports: Iterable[str]) -> dict[str, str]:
    """Chain name -> the port it belongs to, for `counter_port`."""
    return {chain: port for port in ports for chain in (chain_to(port), chain_from(port))}


def counter_port(name: str, owners: Mapping[str, str]) -> str | None:
    """The port a named counter belongs to: the counter is its chain's name, `_`, and what it counts
    (`to_tap1_offered`). Port identifiers may hold `_` themselves, so each `_` is tried as the
    split, longest chain first; one dictionary lookup per `_`, whatever the number of ports."""
    cut = name.rfind("_")
    while cut > 0:
        port = owners.get(name[:cut])
        if port is not None:
            return port
        cut = name.rfind("_", 0, cut)
    return None
