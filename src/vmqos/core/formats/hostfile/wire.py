"""The wire models of vmqos's host file (version 1): its structure, as pydantic checks it.

These models only check the *shape* of the file: which keys exist, which are required, and
whether a value is a string, an integer or a mapping. Quantities stay as written (`100mbit`,
`64kb`, `20ms` or plain integers) and are converted by `vmqos.core.units` when `hostfile` builds the
domain model, so that `vmqos.core.units` remains the only place that knows what a unit means.

Every model forbids unknown keys; `keys_at(loc)` tells the reader which keys were allowed where
a pydantic error points, so that it can suggest the one the operator meant.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    create_model,
)
from pydantic_core import PydanticCustomError

from vmqos.core.model.disk import DISK_KEYS
from vmqos.core.model.network import DIRECTIONS

VERSION = 1

_RATE_PATTERN = r"^\s*[0-9]*\.?[0-9]+([eE][+-]?[0-9]+)?\s*[A-Za-z/]*\s*$"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _quantity(kind: str, example: str, bare: str) -> Any:
    def check(value: Any) -> int | str:
        if isinstance(value, str):
            return value
        if _is_int(value):
            return int(value)
        raise PydanticCustomError(f"{kind}_type", f"expected a {kind} such as {example}, or a whole number of {bare}")

    schema = {
        "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": _RATE_PATTERN}],
        "description": f"a {kind} with a tc unit ({example}) or an integer in {bare}",
    }
    return Annotated[Union[int, str], PlainValidator(check), WithJsonSchema(schema)]


def _version(value: Any) -> int:
    if _is_int(value) and value == VERSION:
        return VERSION
    raise PydanticCustomError(
        "version", f"this vmqos reads host files of version {VERSION}; write 'version: {VERSION}'")


def _spec_value(value: Any) -> str:
    # Nova stores every extra spec as a string; a YAML integer is the same spec.
    if isinstance(value, str):
        return value
    if _is_int(value):
        return str(value)
    raise PydanticCustomError("spec_type", "an extra spec's value is a string or an integer")


if typing.TYPE_CHECKING:  # what the validators let through; pydantic reads the annotated form below
    Rate = Union[int, str]
    Size = Union[int, str]
    Time = Union[int, str]
else:
    Rate = _quantity("rate", "100mbit, 12500kbps or 1gibit", "bit/s")
    Size = _quantity("size", "64kb, 1.5mb or 1500", "bytes")
    Time = _quantity("time", "100ms or 1s", "microseconds")
Version = Annotated[int, PlainValidator(_version), WithJsonSchema({"const": VERSION, "type": "integer"})]
SpecValue = Annotated[str, PlainValidator(_spec_value), WithJsonSchema({"type": ["string", "integer"]})]


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class MatchWire(Wire):
    """What puts a packet in a traffic class."""

    protocol: str | None = Field(default=None, description="tcp, udp, icmp, sctp or icmpv6")
    ports: list[int] | None = None
    dscp: int | None = None


class ClassWire(Wire):
    """A share of its direction's rate; the class without `match` takes the rest."""

    name: str
    share: int = Field(description="percent of the direction's rate, 1 to 100")
    match: MatchWire | None = None


class DirectionWire(Wire):
    """The limits of one direction (ingress = towards the instance, egress = sent by it)."""

    rate: Rate | None = None
    peak: Rate | None = None
    burst: Size | None = None
    pps: int | None = Field(default=None, description="packets per second")
    pps_burst: int | None = Field(default=None, description="packets")
    dscp: int | None = None
    min: Rate | None = Field(default=None, description="guaranteed minimum rate")
    min_pps: int | None = None
    classes: list[ClassWire] | None = None


class QosWire(Wire):
    """A port's network QoS in vmqos's own terms."""

    ingress: DirectionWire | None = None
    egress: DirectionWire | None = None
    min_pps_any: int | None = Field(default=None, description="guaranteed packets per second, either direction")


QOS_KEYS = (*DIRECTIONS, "min_pps_any")  # the keys of a QosWire, in its order


class NeutronPolicyWire(Wire):
    """A policy exactly as the Neutron API returns it; the rules are checked by vmqos.core.formats.neutron."""

    rules: list[dict[str, Any]]
    id: Any = None
    name: Any = None
    description: Any = None
    shared: Any = None
    is_default: Any = None
    project_id: Any = None
    tenant_id: Any = None
    tags: Any = None
    created_at: Any = None
    updated_at: Any = None
    revision_number: Any = None


class PolicyWire(QosWire):
    """A named policy: either `neutron: {rules: [...]}` or vmqos's ingress/egress."""

    neutron: NeutronPolicyWire | None = None
    origin: str | None = Field(default=None, description="where the policy came from; vmqos unless neutron")


class CpuWire(Wire):
    shares: int | None = None
    period_us: Time | None = None
    quota_us: Time | None = None


def is_byte_key(key: str) -> bool:
    """Disk keys whose value is a number of bytes (a size with a unit is accepted)."""
    return ("_bytes_" in key and not key.endswith("_length")) or key == "size_iops_sec"


DiskWire: type[Wire] = create_model(  # type: ignore[call-overload]
    "DiskWire",
    __base__=Wire,
    __doc__="QEMU's throttling of one disk, with libvirt's <iotune> names; *_bytes_* values accept sizes.",
    **{key: ((Size if is_byte_key(key) else int) | None, None) for key in DISK_KEYS},
    group_name=(str | None, None),
)


class FlavorWire(Wire):
    """A Nova flavor: its extra specs as Nova has them, or vmqos's canonical cpu/disk/network."""

    extra_specs: dict[str, SpecValue] | None = None
    cpu: CpuWire | None = None
    disk: DiskWire | None = None  # type: ignore[valid-type]
    disks: dict[str, DiskWire] | None = None  # type: ignore[valid-type]
    network: QosWire | None = None
    interfaces: dict[str, QosWire] | None = None


class NetworkWire(Wire):
    policy: str | None = None


class PortWire(Wire):
    device: str
    network: str | None = None
    policy: str | None = Field(default=None, description="the port's own policy; wins over its network's")
    egress_mode: Literal["shape", "police"] | None = None
    window_clamp: bool | None = Field(default=None, description="opt-in: lower the TCP window in the ACKs the port "
                                                                "forwards, for a short queue (shape mode only)")
    mtu: int | None = None
    limits: QosWire | None = Field(default=None, description="limits set on the port itself")
    addresses: list[str] | None = Field(default=None, description="the instance's IPv4/IPv6 addresses on this port "
                                                                   "(how the uplink finds traffic towards it)")


class UplinkWire(Wire):
    device: str = Field(description="the host's shared link: its physical or bond device")
    capacity: int | str = Field(description="what the link carries (a tc rate, `10gbit`, or bit/s)")
    oversubscribe: bool | None = Field(default=None, description="guarantees above the capacity are scaled down "
                                                                 "with a warning instead of refused")


class InstanceWire(Wire):
    flavor: str | None = None
    cpu: CpuWire | None = Field(default=None, description="overrides the flavor's cpu")
    disks: dict[str, DiskWire | None] | None = None  # type: ignore[valid-type]
    ports: list[PortWire] | None = None


class HostFileWire(Wire):
    """vmqos host file: the desired QoS state of one host."""

    model_config = ConfigDict(title="vmqos host file")

    version: Version
    policies: dict[str, PolicyWire | None] | None = None
    flavors: dict[str, FlavorWire | None] | None = None
    networks: dict[str, NetworkWire | None] | None = None
    instances: dict[str, InstanceWire | None] | None = None
    uplink: UplinkWire | None = Field(default=None, description="the link whose capacity the ports' guaranteed "
                                                                 "minimums share (issue 16)")


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a host file."""
    result = HostFileWire.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **result}


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def keys_at(loc: tuple[str | int, ...], root: type[BaseModel] = HostFileWire) -> list[str] | None:
    """The keys a mapping at `loc` may have, or None where any key is allowed or loc is not a mapping."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            tp = field.annotation
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin is list:
            tp = typing.get_args(tp)[0]
        else:
            return None
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return None
