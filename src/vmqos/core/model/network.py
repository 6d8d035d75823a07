"""Network QoS of one port, per direction, from the instance's point of view (as Neutron).

`ingress` is traffic towards the instance, `egress` is traffic sent by it; libvirt's
`inbound`/`outbound` are aliases. Limits count Ethernet frames as the port device sees them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

from vmqos.core.errors import ConflictError, InvalidValue

# The two directions of a port, in the order every table and report lists them.
DIRECTIONS = ("ingress", "egress")

# Neutron's VALID_DSCP_MARKS (neutron-lib): even values 0..56 except 2-6, 42 and 50-54.
VALID_DSCP_MARKS: frozenset[int] = frozenset(
    (0, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 44, 46, 48, 56)
)

# IP protocols a traffic class may match, by name, with their IANA numbers.
PROTOCOLS: dict[str, int] = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132, "icmpv6": 58}


class Direction(str, Enum):
    INGRESS = "ingress"
    EGRESS = "egress"

    @classmethod
    def parse(cls, text: str) -> "Direction":
        """Accept Neutron's and libvirt's names for a direction."""
        aliases = {"ingress": cls.INGRESS, "inbound": cls.INGRESS, "egress": cls.EGRESS, "outbound": cls.EGRESS}
        try:
            return aliases[text.strip().lower()]
        except (KeyError, AttributeError):
            raise InvalidValue(
                "direction", text, "use ingress (towards the instance, libvirt inbound) or egress (sent by it, outbound)"
            ) from None

    @property
    def libvirt(self) -> str:
        return "inbound" if self is Direction.INGRESS else "outbound"


def _positive(name: str, value: int | None, fix: str, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidValue(name, value, fix)


def check_dscp(mark: int, name: str = "dscp") -> None:
    if isinstance(mark, bool) or not isinstance(mark, int) or mark not in VALID_DSCP_MARKS:
        valid = ", ".join(str(m) for m in sorted(VALID_DSCP_MARKS))
        raise InvalidValue(name, mark, f"use one of Neutron's valid DSCP marks: {valid}")


@dataclass(frozen=True)
class BandwidthLimit:
    """A token bucket: a long-term `rate`, short bursts up to `peak` for `burst` bytes."""

    rate_bps: int
    peak_bps: int | None = None
    burst_bytes: int | None = None

    def __post_init__(self) -> None:
        _positive("rate", self.rate_bps, "a bandwidth limit needs a rate above 0 bit/s (omit the limit for none)",
                  allow_none=False)
        _positive("peak", self.peak_bps, "peak must be above 0 bit/s, or left out")
        _positive("burst", self.burst_bytes, "burst must be above 0 bytes, or left out for vmqos's default")
        if self.peak_bps is not None and self.peak_bps < self.rate_bps:
            raise InvalidValue(
                "peak", self.peak_bps,
                f"peak must be at least the average rate ({self.rate_bps} bit/s); raise peak or lower the rate",
            )

    @property
    def ceil_bps(self) -> int:
        """The highest rate the port may ever reach: peak if set, else the rate."""
        return self.peak_bps if self.peak_bps is not None else self.rate_bps


@dataclass(frozen=True)
class PacketRateLimit:
    pps: int
    burst_packets: int | None = None

    def __post_init__(self) -> None:
        _positive("pps", self.pps, "a packet-rate limit needs a rate above 0 packet/s (omit it for none)",
                  allow_none=False)
        _positive("pps_burst", self.burst_packets, "a packet burst must be above 0 packets, or left out")


@dataclass(frozen=True)
class TrafficMatch:
    """What puts a packet in a class: an IP protocol, a port on either side, a DSCP mark."""

    protocol: str | None = None
    ports: tuple[int, ...] = ()
    dscp: int | None = None

    def __post_init__(self) -> None:
        if self.protocol is not None and self.protocol not in PROTOCOLS:
            raise InvalidValue("match.protocol", self.protocol, f"use one of {', '.join(PROTOCOLS)}")
        for port in self.ports:
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise InvalidValue("match.ports", port, "ports are integers from 1 to 65535")
        if self.ports and self.protocol not in ("tcp", "udp", "sctp"):
            raise InvalidValue("match.protocol", self.protocol, "matching ports needs protocol tcp, udp or sctp")
        if self.dscp is not None:
            check_dscp(self.dscp, "match.dscp")
        if self.protocol is None and not self.ports and self.dscp is None:
            raise InvalidValue("match", "{}", "a class match needs a protocol, ports or a dscp mark")


@dataclass(frozen=True)
class TrafficClass:
    """A share of the direction's limit; the class without a match takes what nothing else matches."""

    name: str
    share_percent: int
    match: TrafficMatch | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise InvalidValue("class.name", self.name, "use letters, digits, '-' and '_'")
        if isinstance(self.share_percent, bool) or not isinstance(self.share_percent, int) \
                or not 1 <= self.share_percent <= 100:
            raise InvalidValue(f"class {self.name}.share", self.share_percent, "a share is a percentage from 1 to 100")


@dataclass(frozen=True)
class DirectionQos:
    bandwidth: BandwidthLimit | None = None
    packet_rate: PacketRateLimit | None = None
    dscp: int | None = None
    min_bps: int | None = None
    min_pps: int | None = None
    classes: tuple[TrafficClass, ...] = ()

    def __post_init__(self) -> None:
        if self.dscp is not None:
            check_dscp(self.dscp)
        _positive("min_bps", self.min_bps, "a guaranteed minimum must be above 0 bit/s, or left out")
        _positive("min_pps", self.min_pps, "a guaranteed minimum packet rate must be above 0, or left out")
        if self.min_bps is not None and self.bandwidth is not None and self.min_bps > self.bandwidth.rate_bps:
            raise ConflictError(
                f"min_bps: the guaranteed minimum {self.min_bps} bit/s exceeds the limit "
                f"{self.bandwidth.rate_bps} bit/s in the same direction; lower the minimum or raise the limit"
            )
        if self.min_pps is not None and self.packet_rate is not None and self.min_pps > self.packet_rate.pps:
            raise ConflictError(
                f"min_pps: the guaranteed minimum {self.min_pps} packet/s exceeds the limit "
                f"{self.packet_rate.pps} packet/s; lower the minimum or raise the limit"
            )
        if self.classes:
            self._check_classes()

    def _check_classes(self) -> None:
        if self.bandwidth is None:
            raise ConflictError("classes: traffic classes share a bandwidth limit; set one in the same direction")
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ConflictError(f"classes: class names must be unique, got {names}")
        defaults = [c.name for c in self.classes if c.match is None]
        if len(defaults) > 1:
            raise ConflictError(f"classes: only one class may have no match (the default), got {defaults}")
        total = sum(c.share_percent for c in self.classes)
        if total > 100:
            raise ConflictError(f"classes: shares add up to {total} %; they must not exceed 100 %")
        if total < 100 and not defaults:
            raise ConflictError(
                f"classes: shares add up to {total} % and no class takes the rest; add a class without a match"
            )
        if len(self.classes) > 250:
            raise ConflictError("classes: at most 250 classes per direction")

    @property
    def is_empty(self) -> bool:
        return self == DirectionQos()


@dataclass(frozen=True)
class NetworkQos:
    ingress: DirectionQos = field(default_factory=DirectionQos)
    egress: DirectionQos = field(default_factory=DirectionQos)
    min_pps_any: int | None = None

    def __post_init__(self) -> None:
        _positive("min_pps_any", self.min_pps_any, "a guaranteed minimum packet rate must be above 0, or left out")
        if self.min_pps_any is not None and (self.ingress.min_pps or self.egress.min_pps):
            raise ConflictError(
                "minimum_packet_rate: a rule for direction 'any' cannot be mixed with directional ones "
                "(Neutron's rule); keep one or the other"
            )
        if self.ingress.dscp is not None:
            raise ConflictError(
                "dscp: DSCP marking applies to traffic sent by the instance (egress), as in Neutron; "
                "move the mark to egress"
            )

    def direction(self, direction: Direction) -> DirectionQos:
        return self.ingress if direction is Direction.INGRESS else self.egress

    def with_direction(self, direction: Direction, value: DirectionQos) -> "NetworkQos":
        if direction is Direction.INGRESS:
            return replace(self, ingress=value)
        return replace(self, egress=value)

    @property
    def is_empty(self) -> bool:
        return self.ingress.is_empty and self.egress.is_empty and self.min_pps_any is None
