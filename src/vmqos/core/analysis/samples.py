"""A pass of the sampler as plain values: per port, its flows, its device's and nft counters, its limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Mapping

from vmqos.core.analysis.flows import Flow
from vmqos.core.analysis.rates import FlowRate
from vmqos.core.observed import CounterValue, LinkCounters
from vmqos.core.plan.objects import Qdisc
from vmqos.core.plan.planner import PortPlan

if TYPE_CHECKING:
    from vmqos.core.analysis.columns import SampleColumns


@dataclass(frozen=True)
class PortLimits:
    """What a port is limited to, per direction (None: not limited)."""

    ingress_bps: int | None = None
    egress_bps: int | None = None
    ingress_pps: int | None = None
    egress_pps: int | None = None

    @classmethod
    def of(cls, plan: PortPlan) -> "PortLimits":
        return cls(plan.ingress.rate_bps, plan.egress.rate_bps, plan.ingress.pps, plan.egress.pps)

    def bps(self, direction: str) -> int | None:
        return self.ingress_bps if direction == "ingress" else self.egress_bps

    def pps(self, direction: str) -> int | None:
        return self.ingress_pps if direction == "ingress" else self.egress_pps


@dataclass(frozen=True)
class PortSample:
    port: str
    flows: dict[str, Flow]
    link: LinkCounters | None  # None: the device is gone
    counters: dict[str, CounterValue]  # vmqos's nft counters of this port
    limits: PortLimits = PortLimits()
    instance: str | None = None


@dataclass(frozen=True)
class Sample:
    """One pass. `ports` is a dict, or for the sampler's columnar path a read-only mapping
    (`columns.LazyPorts`) that builds a port's record when asked; `columns` then holds the counters
    of every port as columns (`rates` and the readers that walk all ports use those)."""

    monotonic: float
    at: datetime
    ports: Mapping[str, PortSample] = field(default_factory=dict)
    columns: "SampleColumns | None" = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class PortRates:
    port: str
    instance: str | None
    rates: dict[str, FlowRate]  # per direction
    link: LinkCounters | None
    syn_pps: float | None = None  # TCP SYNs sent by the instance, when its chain counts them

    def as_json(self) -> dict[str, Any]:
        return {"port": self.port, "instance": self.instance,
                "directions": {d: r.as_json() for d, r in self.rates.items()}, "syn_pps": self.syn_pps}


def planned_qdiscs(plans: Mapping[str, PortPlan]) -> dict[tuple[object, ...], str]:
    """Key -> kind of the root and ingress qdiscs the plans put on their ports and IFBs.

    Only these are the limiters' counters: a port limited by nft alone still has the kernel's
    default root qdisc (a veth's `noqueue`, which counts nothing), and reading it as the port's
    HTB would report that nothing was delivered.
    """
    return {o.key: o.qdisc_kind for plan in plans.values() for o in plan.objects
            if isinstance(o, Qdisc) and o.parent in ("root", "ingress")}
