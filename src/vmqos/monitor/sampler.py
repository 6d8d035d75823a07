"""One pass over every managed port of a namespace: three reads, whatever the number of ports.

A pass is three netlink dumps: the root and ingress qdiscs, the links' counters, and vmqos's named
nft counters; nothing is read per port. `rates` turns two passes into
per-port, per-direction rates.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Mapping

from vmqos.core.analysis.flows import Flow, flows
from vmqos.core.analysis.rates import counter_delta, flow_rate
from vmqos.core.analysis.samples import (
    PortLimits,
    PortRates,
    PortSample,
    Sample,
    planned_qdiscs,
)
from vmqos.core.errors import KernelError
from vmqos.core.model.network import DIRECTIONS
from vmqos.core.observed import CounterValue, TcStats
from vmqos.core.plan.names import chain_from, chain_owners, counter_port, ifb_name
from vmqos.core.plan.planner import PortPlan
from vmqos.drivers.counters import CounterReader
from vmqos.drivers.process import run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Watched:
    """What a pass needs from the plans, derived once per set of plans rather than once per pass."""

    plans: Mapping[str, PortPlan]
    wanted: frozenset[str]  # the ports and their IFBs
    planned: dict[tuple[object, ...], str]
    owners: dict[str, str]
    limits: dict[str, PortLimits]
    counter_owners: dict[str, str | None] = field(default_factory=dict)  # filled as counters are seen

    @classmethod
    def of(cls, plans: Mapping[str, PortPlan]) -> "_Watched":
        return cls(plans, frozenset(d for port in plans for d in (port, ifb_name(port))), planned_qdiscs(plans),
                   chain_owners(plans), {port: PortLimits.of(plan) for port, plan in plans.items()})


class Sampler:
    """Samples the ports it is given, in one network namespace; use as a context manager."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._reader = CounterReader(netns)
        self._names: dict[int, str] = {}
        self._watched: _Watched | None = None

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> "Sampler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refresh_names(self) -> None:
        argv = ["ip", *(("-n", self.netns) if self.netns else ()), "-j", "link", "show"]
        done = run(argv, None, check=False)
        if done.returncode != 0:
            raise KernelError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
        self._names = {link["ifindex"]: link["ifname"] for link in json.loads(done.stdout or "[]")}
        log.debug("sampler: a device came or went; %d link names re-read", len(self._names))

    def _watch(self, plans: Mapping[str, PortPlan]) -> _Watched:
        if self._watched is None or self._watched.plans is not plans:
            self._watched = _Watched.of(plans)
        return self._watched

    def sample(self, plans: Mapping[str, PortPlan], instances: Mapping[str, str] | None = None) -> Sample:
        """Counters of every port of `plans` (port -> plan), read in one pass.

        What is derived from the plans is kept while the same mapping comes back: pass a new one
        when they change, never the same one changed in place."""
        at, mono = datetime.now(UTC), time.monotonic()
        links = self._reader.links()
        watched = self._watch(plans)
        if any(i not in self._names for i in links) or not watched.wanted <= set(self._names.values()):
            self._refresh_names()  # a device came or went (an index is reused only after a new name)
        names = self._names
        index = {name: idx for idx, name in names.items()}
        planned = watched.planned
        qdiscs = self._reader.qdiscs(top_only=True, devices={index[d] for d in watched.wanted if d in index})
        counters = self._reader.nft_counters()
        tc: dict[str, dict[tuple[object, ...], TcStats]] = {}
        for q in qdiscs:
            name = names[q.ifindex]
            key = ("qdisc", name, q.where)
            if planned.get(key) == q.kind:
                tc.setdefault(name, {})[key] = q.stats
        owner_of = watched.counter_owners
        by_port: dict[str, dict[str, CounterValue]] = {}
        for name, value in counters.items():
            if name not in owner_of:
                owner_of[name] = counter_port(name, watched.owners)
            owner = owner_of[name]
            if owner is not None:
                by_port.setdefault(owner, {})[name] = value
        instances = instances or {}
        ports: dict[str, PortSample] = {}
        for port, limits in watched.limits.items():
            stats = tc.get(port, {})
            ifb = tc.get(ifb_name(port))
            if ifb:
                stats = {**stats, **ifb}
            own = by_port.get(port, {})
            idx = index.get(port)
            ports[port] = PortSample(port, flows(port, stats, own), links.get(idx) if idx is not None else None,
                                     own, limits, instances.get(port))
        log.debug("sampler: %d ports, %d qdiscs, %d nft counters in %.3f s", len(ports), len(qdiscs), len(counters),
                  time.monotonic() - mono)
        return Sample(mono, at, ports)


def rates(previous: Sample, current: Sample) -> dict[str, PortRates]:
    """Per-port rates between two samples; ports present in both."""
    seconds = current.monotonic - previous.monotonic
    out: dict[str, PortRates] = {}
    for port, now in current.ports.items():
        before = previous.ports.get(port)
        if before is None or seconds <= 0:
            continue
        per_dir = {}
        for direction in DIRECTIONS:
            if direction in now.flows:
                per_dir[direction] = flow_rate(before.flows.get(direction, Flow()), now.flows[direction], seconds,
                                               limit_bps=now.limits.bps(direction),
                                               limit_pps=now.limits.pps(direction))
        syn_name = f"{chain_from(port)}_syn"
        syn = None
        if syn_name in now.counters:
            old = before.counters.get(syn_name, CounterValue(0, 0))
            syn = counter_delta(old.packets, now.counters[syn_name].packets) / seconds
        out[port] = PortRates(port, now.instance, per_dir, now.link, syn)
    return out
