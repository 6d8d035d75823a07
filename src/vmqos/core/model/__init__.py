"""The typed QoS model in canonical integer units (bit/s, bytes, packet/s, microseconds)."""

from vmqos.core.model.cpu import CpuQos, shares_to_weight, weight_to_shares
from vmqos.core.model.disk import DISK_FRONTEND_KEYS, DISK_KEYS, DiskQos
from vmqos.core.model.document import Note, QosDocument
from vmqos.core.model.network import (
    VALID_DSCP_MARKS,
    BandwidthLimit,
    Direction,
    DirectionQos,
    NetworkQos,
    PacketRateLimit,
    TrafficClass,
    TrafficMatch,
)

__all__ = [
    "DISK_FRONTEND_KEYS",
    "DISK_KEYS",
    "VALID_DSCP_MARKS",
    "BandwidthLimit",
    "CpuQos",
    "Direction",
    "DirectionQos",
    "DiskQos",
    "NetworkQos",
    "Note",
    "PacketRateLimit",
    "QosDocument",
    "TrafficClass",
    "TrafficMatch",
    "shares_to_weight",
    "weight_to_shares",
]
