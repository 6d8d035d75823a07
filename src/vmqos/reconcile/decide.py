"""The reconciler's decisions, pure: what to read back, what to change, in which order."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from vmqos.core.observed import NftState
from vmqos.core.plan.names import chain_owners, counter_port
from vmqos.core.plan.objects import KernelObject, NftCounter


def _parts(fp: str | None) -> tuple[str | None, str | None, str | None]:
    """(the port's queues, its IFB's, its nft chains) of a fingerprint; None: unknown, read it back."""
    if not fp or ";" not in fp:
        return None, None, None
    tc, nft = fp.split(";", 1)
    own, comma, ifb = tc.partition(",")
    return (own, ifb, nft) if comma else (None, None, nft)  # recorded before the tc part was split


def nft_by_port(ports: Iterable[str], state: NftState) -> dict[str, list[KernelObject]]:
    """vmqos's chains and counters grouped by the port they belong to, in one pass over each."""
    owner = chain_owners(ports)
    out: dict[str, list[KernelObject]] = {port: [] for port in ports}
    for name in state.counters:
        port = counter_port(name, owner)
        if port is not None:
            out[port].append(NftCounter(name))
    for name, chain in state.chains.items():
        port = owner.get(name)
        if port is not None:
            out[port].append(chain if chain.dev else replace(chain, dev=port))
    for shared in state.sets.values():  # every port's chains may feed the table's sets
        for objs in out.values():
            objs.append(shared)
    return out
