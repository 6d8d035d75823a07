"""The domain model as the plain data a host file has for it (before any YAML styling).

Quantities are written back in tc units (`100mbit`, `64kb`) and defaults are left out, so that
reading the data back gives the same objects; the file writer and the store codec both use it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from vmqos.core.errors import VmqosError
from vmqos.core.formats import nova
from vmqos.core.formats.hostfile.wire import is_byte_key
from vmqos.core.model.checks import DEFAULT_MTU
from vmqos.core.model.cpu import CPU_FIELDS, CpuQos
from vmqos.core.model.disk import DiskQos
from vmqos.core.model.document import QosDocument
from vmqos.core.model.host import EgressMode, Flavor, InstanceSpec, Policy, PortSpec
from vmqos.core.model.network import DIRECTIONS, DirectionQos, NetworkQos, TrafficClass
from vmqos.core.units import format_rate, format_size


def dump_direction(qos: DirectionQos) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if qos.bandwidth is not None:
        out["rate"] = format_rate(qos.bandwidth.rate_bps)
        if qos.bandwidth.peak_bps is not None:
            out["peak"] = format_rate(qos.bandwidth.peak_bps)
        if qos.bandwidth.burst_bytes is not None:
            out["burst"] = format_size(qos.bandwidth.burst_bytes)
    if qos.packet_rate is not None:
        out["pps"] = qos.packet_rate.pps
        if qos.packet_rate.burst_packets is not None:
            out["pps_burst"] = qos.packet_rate.burst_packets
    if qos.min_bps is not None:
        out["min"] = format_rate(qos.min_bps)
    if qos.min_pps is not None:
        out["min_pps"] = qos.min_pps
    if qos.dscp is not None:
        out["dscp"] = qos.dscp
    if qos.classes:
        out["classes"] = [dump_class(c) for c in qos.classes]
    return out


def dump_class(item: TrafficClass) -> dict[str, Any]:
    out: dict[str, Any] = {"name": item.name, "share": item.share_percent}
    if item.match is not None:
        match: dict[str, Any] = {}
        if item.match.protocol is not None:
            match["protocol"] = item.match.protocol
        if item.match.ports:
            match["ports"] = list(item.match.ports)
        if item.match.dscp is not None:
            match["dscp"] = item.match.dscp
        out["match"] = match
    return out


def dump_network(qos: NetworkQos) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in DIRECTIONS:
        side = getattr(qos, key)
        if not side.is_empty:
            out[key] = dump_direction(side)
    if qos.min_pps_any is not None:
        out["min_pps_any"] = qos.min_pps_any
    return out


def dump_cpu(cpu: CpuQos) -> dict[str, Any]:
    return {key: getattr(cpu, key) for key in CPU_FIELDS if getattr(cpu, key) is not None}


def dump_disk(disk: DiskQos) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in disk.items().items():
        if is_byte_key(key) and isinstance(value, int) and value % 1024 == 0:
            out[key] = format_size(value)
        else:
            out[key] = value
    return out


def dump_document(doc: QosDocument) -> dict[str, Any]:
    """A flavor's QoS in canonical form (what its extra specs could not say exactly)."""
    out: dict[str, Any] = {}
    if doc.cpu is not None:
        out["cpu"] = dump_cpu(doc.cpu)
    if doc.disk is not None:
        out["disk"] = dump_disk(doc.disk)
    if doc.disks:
        out["disks"] = {name: dump_disk(d) for name, d in doc.disks.items()}
    if doc.network is not None:
        out["network"] = dump_network(doc.network)
    if doc.interfaces:
        out["interfaces"] = {name: dump_network(q) for name, q in doc.interfaces.items()}
    return out


def dump_flavor(flavor: Flavor) -> dict[str, Any]:
    """Nova extra specs when they read back to exactly this flavor, else the canonical form."""
    try:
        specs = json.loads(nova.write(flavor.qos, json=True))
        if isinstance(specs, dict) and set(specs) == {"extra_specs"}:
            specs = specs["extra_specs"]
        if (isinstance(specs, dict) and specs and all(isinstance(v, str) for v in specs.values())
                and replace(nova.read(json.dumps(specs)), name=flavor.name) == flavor.qos):
            return {"extra_specs": specs}
    except (VmqosError, ValueError, TypeError):
        pass
    return dump_document(flavor.qos)


def dump_policy(policy: Policy) -> dict[str, Any]:
    out = dump_network(policy.qos)
    if policy.origin != "vmqos":
        out["origin"] = policy.origin
    return out


def dump_port(port: PortSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"device": port.device}
    if port.network is not None:
        out["network"] = port.network
    if port.policy is not None:
        out["policy"] = port.policy
    if port.egress_mode is not EgressMode.SHAPE:
        out["egress_mode"] = EgressMode(port.egress_mode).value
    if port.window_clamp:
        out["window_clamp"] = True
    if port.mtu != DEFAULT_MTU:
        out["mtu"] = port.mtu
    if port.limits is not None:
        out["limits"] = dump_network(port.limits)
    if port.addresses:
        out["addresses"] = list(port.addresses)
    return out


def dump_instance(spec: InstanceSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.flavor is not None:
        out["flavor"] = spec.flavor
    if spec.cpu is not None:
        out["cpu"] = dump_cpu(spec.cpu)
    if spec.disks:
        out["disks"] = {name: dump_disk(d) for name, d in spec.disks.items()}
    if spec.ports:
        out["ports"] = [dump_port(p) for p in spec.ports]
    return out
