"""The store codec: one object at a time to and from the data a host file has for it.

The desired-state store keeps each object as JSON of the shape it has in a host file; going
through these two functions keeps the file and the database from drifting apart. A fast path
reads the common shape of a port's limits without pydantic, for stores of many ports.
"""

from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from vmqos.core.errors import FormatError, VmqosError
from vmqos.core.formats.hostfile.build import Builder
from vmqos.core.formats.hostfile.dump import (
    dump_cpu,
    dump_disk,
    dump_flavor,
    dump_network,
    dump_policy,
)
from vmqos.core.formats.hostfile.messages import shape_message
from vmqos.core.formats.hostfile.places import FMT, Lines, Path
from vmqos.core.formats.hostfile.wire import (
    QOS_KEYS,
    CpuWire,
    DiskWire,
    FlavorWire,
    PolicyWire,
    QosWire,
)
from vmqos.core.model.cpu import CpuQos
from vmqos.core.model.disk import DiskQos
from vmqos.core.model.host import Flavor, Policy
from vmqos.core.model.network import (
    BandwidthLimit,
    DirectionQos,
    NetworkQos,
    PacketRateLimit,
)
from vmqos.core.units import parse_rate, parse_size

Part = NetworkQos | CpuQos | DiskQos | Flavor


def to_data(obj: Part) -> dict[str, Any]:
    """One object as the plain data a host file has for it (a Flavor without its name)."""
    if isinstance(obj, NetworkQos):
        return dump_network(obj)
    if isinstance(obj, CpuQos):
        return dump_cpu(obj)
    if isinstance(obj, DiskQos):
        return dump_disk(obj)
    if isinstance(obj, Flavor):
        return dump_flavor(obj)
    raise TypeError(f"to_data: not a host file object: {type(obj).__name__}")


_QUICK_NETWORK = frozenset(QOS_KEYS)
_QUICK_DIRECTION = frozenset(("rate", "peak", "burst", "pps", "pps_burst", "dscp", "min", "min_pps"))
_QUICK_COUNTS = frozenset(("pps", "pps_burst", "dscp", "min_pps"))  # integers only, as their wire fields


def _quick_network(data: Any) -> NetworkQos | None:
    """What the checked path builds from `data`, when `data` is what `dump_network` writes without
    traffic classes; None for anything else, which then takes the checked path (and gets its errors).

    The checked path costs ~30 us per port, too much for a store of 10,000 ports; this one builds
    the same model objects from the same parsed values, so the two agree wherever this one answers.
    """
    if type(data) is not dict or not data.keys() <= _QUICK_NETWORK:
        return None
    any_pps = data.get("min_pps_any")
    try:
        ingress, egress = _quick_direction(data.get("ingress")), _quick_direction(data.get("egress"))
        if ingress is None or egress is None or not (any_pps is None or type(any_pps) is int):
            return None
        return NetworkQos(ingress=ingress, egress=egress, min_pps_any=any_pps)
    except VmqosError:
        return None


def _quick_direction(data: Any) -> DirectionQos | None:
    if data is None:
        return DirectionQos()
    if type(data) is not dict or not data.keys() <= _QUICK_DIRECTION:
        return None
    for key, value in data.items():
        if type(value) is not int and (type(value) is not str or key in _QUICK_COUNTS):
            return None
    rate, pps = data.get("rate"), data.get("pps")
    if (rate is None and ("peak" in data or "burst" in data)) or (pps is None and "pps_burst" in data):
        return None
    bandwidth = None if rate is None else BandwidthLimit(
        rate_bps=parse_rate(rate), peak_bps=None if "peak" not in data else parse_rate(data["peak"]),
        burst_bytes=None if "burst" not in data else parse_size(data["burst"]))
    return DirectionQos(
        bandwidth=bandwidth, packet_rate=None if pps is None else PacketRateLimit(pps, data.get("pps_burst")),
        dscp=data.get("dscp"), min_bps=None if "min" not in data else parse_rate(data["min"]),
        min_pps=data.get("min_pps"))


def from_data(kind: type[Part], data: Any, *, path: Path = (), name: str = "") -> Any:
    """The `kind` object that `to_data` gave `data` for, checked as a host file is.

    `path` says where the object would be in a host file (`("policies", "gold")`) for the
    FormatError of a mistake; a Flavor takes its `name` separately, as the file's key.
    """
    if kind is NetworkQos:
        quick = _quick_network(data)
        if quick is not None:
            return quick
    wires: dict[type, type[BaseModel]] = {NetworkQos: QosWire, CpuQos: CpuWire, DiskQos: DiskWire, Flavor: FlavorWire}
    wire_type = wires[kind]
    try:
        wire: Any = wire_type.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise FormatError(FMT, shape_message({**first, "loc": (*path, *first["loc"])})) from None
    builder = Builder(Lines({}))
    if kind is Flavor:
        return builder.flavor(name, wire)
    build: dict[type, Callable[[Path, Any], Any]] = {NetworkQos: builder.network, CpuQos: builder.cpu,
                                                     DiskQos: builder.disk}
    return build[kind](path, wire)



def policy_to_data(policy: Policy) -> dict[str, Any]:
    """A named policy as a host file's `policies:` holds it under its name (its QoS, and its origin
    unless it is vmqos's own); the name is the key, not in the data."""
    return dump_policy(policy)


def policy_from_data(name: str, data: Any, *, path: Path = ()) -> Policy:
    """The Policy named `name` that `policy_to_data` gave `data` for, checked as a host file's policy is:
    vmqos's ingress/egress, or `neutron: {rules: [...]}`, with an optional `origin`."""
    if type(data) is dict and "neutron" not in data and (origin := data.get("origin", "vmqos")) and \
            type(origin) is str:
        quick = _quick_network({k: v for k, v in data.items() if k != "origin"})
        if quick is not None:
            return Policy(name=name, qos=quick, origin=origin)
    try:
        wire = PolicyWire.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise FormatError(FMT, shape_message({**first, "loc": (*path, *first["loc"])})) from None
    return Builder(Lines({})).policy(name, wire)
