"""Kernel objects of vmqos's naming that belong to no port vmqos knows: what a crash leaves behind.

A process killed in the middle of an apply has created IFBs, queues and chains for ports it
never recorded. `check` must name them and `apply --prune` remove them, or a namespace holds
objects nobody answers for (and a later port of that name adopts stale queues). vmqos's objects
are recognisable by their names alone: IFBs `vqi` + 12 hex digits (`names.ifb_name`), the chains
and counters of its own nft table, and its HTB root (handle 1:, default class 10) on a device.

A device that holds any of them and is no known port is an orphan port: it is cleared as a port
(the reconciler removes all of it, read back). What belongs to no existing device (an IFB whose
port is gone, a chain of a deleted tap) is loose: removed object by object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from vmqos.core.plan.names import chain_from, chain_owners, chain_to, counter_port, ifb_name

IFB_NAME = re.compile(r"^vqi[0-9a-f]{12}$")
ROOT_HANDLE = "1:"  # vmqos's HTB root, with its default class
DEFAULT_MINOR = 0x10


@dataclass(frozen=True)
class Inventory:
    """Every object of vmqos's naming in a namespace, as the drivers list it."""

    links: frozenset[str] = frozenset()  # every link
    ifbs: frozenset[str] = frozenset()  # IFB links named as vmqos names them
    htb_roots: frozenset[str] = frozenset()  # devices whose root qdisc is vmqos's HTB
    chains: frozenset[str] = frozenset()  # chains of vmqos's nft table
    counters: frozenset[str] = frozenset()  # named counters of vmqos's nft table


@dataclass(frozen=True)
class Orphans:
    ports: tuple[str, ...] = ()  # devices holding vmqos's objects that are no known port
    ifbs: tuple[str, ...] = ()  # IFBs of no known or existing port
    chains: tuple[str, ...] = ()
    counters: tuple[str, ...] = ()

    def loose(self) -> list[tuple[str, str]]:
        """(object, what it is) of every object that belongs to no device, for `check`."""
        why = "belongs to no port vmqos manages (left by an interrupted apply?); `vmqos apply --prune` removes it"
        return ([(name, f"delete link {name}: an IFB that {why}") for name in self.ifbs]
                + [(name, f"delete nft-chain vmqos {name}: a chain that {why}") for name in self.chains]
                + [(name, f"delete nft-counter vmqos {name}: a counter that {why}") for name in self.counters])

    def __bool__(self) -> bool:
        return bool(self.ports or self.ifbs or self.chains or self.counters)


def find_orphans(found: Inventory, known: Iterable[str]) -> Orphans:
    """What of `found` belongs to none of the `known` ports (desired, applied or pending)."""
    known = set(known)
    devices = {d for d in found.links if not IFB_NAME.match(d)} - known
    ports = sorted(d for d in devices if ifb_name(d) in found.ifbs or d in found.htb_roots
                   or chain_to(d) in found.chains or chain_from(d) in found.chains)
    owned = known | set(ports)
    owners = chain_owners(owned)
    return Orphans(
        ports=tuple(ports),
        ifbs=tuple(sorted(found.ifbs - {ifb_name(p) for p in owned})),
        chains=tuple(sorted(c for c in found.chains if c not in owners)),
        counters=tuple(sorted(c for c in found.counters if counter_port(c, owners) is None)),
    )
