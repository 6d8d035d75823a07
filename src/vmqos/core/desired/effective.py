"""Effective QoS of a port: every source combined per direction, each value with its source.

Precedence follows Neutron: the port's own policy, else its network's policy. Limits from all
sources (flavor, the port's explicit limits, that policy) are combined field by field and the
most restrictive wins, so an operator can always see *why* a port is limited. Markings and
guarantees are not limits: they come from the first source (in precedence order) that sets them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Sequence, TypeVar

from vmqos.core.model.checks import check_network
from vmqos.core.model.document import Note
from vmqos.core.model.host import HostState, InstanceSpec, PortSpec
from vmqos.core.model.network import (
    BandwidthLimit,
    Direction,
    DirectionQos,
    NetworkQos,
    PacketRateLimit,
    TrafficClass,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Sourced(Generic[T]):
    value: T
    source: str


@dataclass(frozen=True)
class QosSource:
    """One place QoS comes from, in precedence order (`flavor m1.resquota`, `port policy bw-limiter`)."""

    label: str
    qos: NetworkQos


@dataclass(frozen=True)
class EffectiveDirection:
    rate_bps: Sourced[int] | None = None
    peak_bps: Sourced[int] | None = None
    burst_bytes: Sourced[int] | None = None
    pps: Sourced[int] | None = None
    pps_burst: Sourced[int] | None = None
    dscp: Sourced[int] | None = None
    min_bps: Sourced[int] | None = None
    classes: Sourced[tuple[TrafficClass, ...]] | None = None

    def qos(self) -> DirectionQos:
        """The combined values as a plain model object (sources dropped)."""
        bandwidth = None
        if self.rate_bps is not None:
            bandwidth = BandwidthLimit(
                self.rate_bps.value, _v(self.peak_bps), _v(self.burst_bytes))
        packet_rate = PacketRateLimit(self.pps.value, _v(self.pps_burst)) if self.pps is not None else None
        return DirectionQos(
            bandwidth=bandwidth, packet_rate=packet_rate, dscp=_v(self.dscp), min_bps=_v(self.min_bps),
            classes=self.classes.value if self.classes is not None and bandwidth is not None else (),
        )

    def sources(self) -> dict[str, str]:
        return {name: value.source for name, value in self._fields().items() if value is not None}

    def _fields(self) -> dict[str, Sourced[Any] | None]:
        return {
            "rate_bps": self.rate_bps, "peak_bps": self.peak_bps, "burst_bytes": self.burst_bytes,
            "pps": self.pps, "pps_burst": self.pps_burst, "dscp": self.dscp, "min_bps": self.min_bps,
            "classes": self.classes,
        }


@dataclass(frozen=True)
class EffectiveNetwork:
    ingress: EffectiveDirection = field(default_factory=EffectiveDirection)
    egress: EffectiveDirection = field(default_factory=EffectiveDirection)
    notes: tuple[Note, ...] = ()

    def direction(self, direction: Direction) -> EffectiveDirection:
        return self.ingress if direction is Direction.INGRESS else self.egress

    def qos(self) -> NetworkQos:
        return NetworkQos(ingress=self.ingress.qos(), egress=self.egress.qos())


def _v(item: Sourced[T] | None) -> T | None:
    return None if item is None else item.value


def _lowest(candidates: list[Sourced[int]]) -> Sourced[int] | None:
    """The most restrictive value; on a tie the first source in precedence order keeps the credit."""
    best: Sourced[int] | None = None
    for candidate in candidates:
        if best is None or candidate.value < best.value:
            best = candidate
    return best


def _first(candidates: list[Sourced[T]]) -> Sourced[T] | None:
    return candidates[0] if candidates else None


def combine_direction(sources: Sequence[tuple[str, DirectionQos]]) -> EffectiveDirection:
    with_bw = [(label, q.bandwidth) for label, q in sources if q.bandwidth is not None]
    rate = _lowest([Sourced(bw.rate_bps, label) for label, bw in with_bw])
    # A source without peak caps the port at its rate, so the ceiling is the lowest of every
    # source's own ceiling; it is a peak only where it lies above the effective rate.
    ceil = _lowest([Sourced(bw.ceil_bps, label) for label, bw in with_bw])
    peak = ceil if ceil is not None and rate is not None and ceil.value > rate.value else None
    burst = _lowest([Sourced(bw.burst_bytes, label) for label, bw in with_bw if bw.burst_bytes is not None])
    with_pps = [(label, q.packet_rate) for label, q in sources if q.packet_rate is not None]
    pps = _lowest([Sourced(p.pps, label) for label, p in with_pps])
    pps_burst = _lowest([Sourced(p.burst_packets, label) for label, p in with_pps if p.burst_packets is not None])
    return EffectiveDirection(
        rate_bps=rate, peak_bps=peak, burst_bytes=burst, pps=pps, pps_burst=pps_burst,
        dscp=_first([Sourced(q.dscp, label) for label, q in sources if q.dscp is not None]),
        min_bps=_first([Sourced(q.min_bps, label) for label, q in sources if q.min_bps is not None]),
        classes=_first([Sourced(q.classes, label) for label, q in sources if q.classes]),
    )


def combine(sources: Sequence[QosSource], *, mtu: int = 1500) -> EffectiveNetwork:
    """Combine sources given in precedence order; raises what cannot work, notes what works badly."""
    ingress = combine_direction([(s.label, s.qos.ingress) for s in sources])
    egress = combine_direction([(s.label, s.qos.egress) for s in sources])
    effective = EffectiveNetwork(ingress=ingress, egress=egress)
    notes = check_network(effective.qos(), mtu)
    return EffectiveNetwork(ingress=ingress, egress=egress, notes=tuple(notes))


def port_sources(state: HostState, instance: InstanceSpec, port: PortSpec) -> list[QosSource]:
    """Where a port's QoS comes from, in precedence order."""
    sources: list[QosSource] = []
    if port.limits is not None:
        sources.append(QosSource(f"port {port.device} limits", port.limits))
    if port.policy is not None:
        sources.append(QosSource(f"port policy {port.policy}", state.policies[port.policy].qos))
    elif port.network is not None and (name := state.networks[port.network].policy) is not None:
        sources.append(QosSource(f"network {port.network} policy {name}", state.policies[name].qos))
    if instance.flavor is not None:
        flavor = state.flavors[instance.flavor]
        if flavor.qos.network is not None:
            sources.append(QosSource(f"flavor {flavor.name}", flavor.qos.network))
    return sources


def effective_for_port(state: HostState, instance: InstanceSpec, port: PortSpec) -> EffectiveNetwork:
    return combine(port_sources(state, instance, port), mtu=port.mtu)
