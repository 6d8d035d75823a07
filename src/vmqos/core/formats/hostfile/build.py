"""Building the domain model (HostState, QosDocument parts) from a host file's checked wire models.

The wire models only know shapes; this turns quantities into canonical units, resolves names
(policies, networks, flavors), reads embedded Neutron rules and Nova extra specs, and reports
every refusal of the model at the line of the element being built.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import replace
from typing import Any

from vmqos.core.errors import FormatError, VmqosError
from vmqos.core.formats import neutron, nova
from vmqos.core.formats.hostfile.places import FMT, Lines, Path, where
from vmqos.core.formats.hostfile.wire import (
    QOS_KEYS,
    CpuWire,
    DirectionWire,
    FlavorWire,
    HostFileWire,
    InstanceWire,
    NeutronPolicyWire,
    PolicyWire,
    QosWire,
    is_byte_key,
)
from vmqos.core.formats.neutron_rules import FIELDS as NEUTRON_FIELDS
from vmqos.core.formats.neutron_rules import METADATA as NEUTRON_METADATA
from vmqos.core.model.checks import DEFAULT_MTU
from vmqos.core.model.cpu import CpuQos
from vmqos.core.model.disk import DISK_KEYS, DiskQos
from vmqos.core.model.document import Note, QosDocument
from vmqos.core.model.host import (
    EgressMode,
    Flavor,
    HostState,
    InstanceSpec,
    NetworkSpec,
    Policy,
    PortSpec,
    UplinkSpec,
)
from vmqos.core.model.network import (
    BandwidthLimit,
    DirectionQos,
    NetworkQos,
    PacketRateLimit,
    TrafficClass,
    TrafficMatch,
)
from vmqos.core.units import parse_rate, parse_size, parse_time


class Builder:
    def __init__(self, lines: Lines) -> None:
        self.lines = lines
        self.notes: list[Note] = []
        self.policy_notes: dict[str, tuple[Note, ...]] = {}

    # quantities ---------------------------------------------------------------------------------

    def rate(self, path: Path, value: int | str | None) -> int | None:
        if value is None:
            return None
        with self.lines.at(path):
            return parse_rate(value)

    def size(self, path: Path, value: int | str | None) -> int | None:
        if value is None:
            return None
        with self.lines.at(path):
            return parse_size(value)

    def time(self, path: Path, value: int | str | None) -> int | None:
        if value is None:
            return None
        with self.lines.at(path):
            return parse_time(value)

    # network ------------------------------------------------------------------------------------

    def direction(self, path: Path, wire: DirectionWire | None) -> DirectionQos:
        if wire is None:
            return DirectionQos()
        rate = self.rate((*path, "rate"), wire.rate)
        peak = self.rate((*path, "peak"), wire.peak)
        burst = self.size((*path, "burst"), wire.burst)
        bandwidth = None
        if rate is not None:
            with self.lines.at(path):
                bandwidth = BandwidthLimit(rate_bps=rate, peak_bps=peak, burst_bytes=burst)
        elif peak is not None or burst is not None:
            key = "peak" if peak is not None else "burst"
            raise self.lines.fail((*path, key), f"{where(path)}: {key} needs a rate in the same direction")
        packet_rate = None
        if wire.pps is not None:
            with self.lines.at(path):
                packet_rate = PacketRateLimit(pps=wire.pps, burst_packets=wire.pps_burst)
        elif wire.pps_burst is not None:
            raise self.lines.fail((*path, "pps_burst"), f"{where(path)}: pps_burst needs pps in the same direction")
        classes = []
        for index, item in enumerate(wire.classes or ()):
            here = (*path, "classes", index)
            match = None
            if item.match is not None:
                with self.lines.at((*here, "match")):
                    match = TrafficMatch(protocol=item.match.protocol, ports=tuple(item.match.ports or ()),
                                         dscp=item.match.dscp)
            with self.lines.at(here):
                classes.append(TrafficClass(name=item.name, share_percent=item.share, match=match))
        with self.lines.at(path):
            return DirectionQos(bandwidth=bandwidth, packet_rate=packet_rate, dscp=wire.dscp,
                                min_bps=self.rate((*path, "min"), wire.min), min_pps=wire.min_pps,
                                classes=tuple(classes))

    def network(self, path: Path, wire: QosWire | None) -> NetworkQos:
        if wire is None:
            return NetworkQos()
        ingress = self.direction((*path, "ingress"), wire.ingress)
        egress = self.direction((*path, "egress"), wire.egress)
        with self.lines.at(path):
            return NetworkQos(ingress=ingress, egress=egress, min_pps_any=wire.min_pps_any)

    def policy(self, name: str, wire: PolicyWire | None) -> Policy:
        path: Path = ("policies", name)
        if wire is None:
            return Policy(name=name, qos=NetworkQos())
        if wire.neutron is None:
            return Policy(name=name, qos=self.network(path, wire), origin=wire.origin or "vmqos")
        own = [key for key in QOS_KEYS if getattr(wire, key) is not None]
        if own:
            raise self.lines.fail((*path, own[0]), f"{where(path)}: a policy is either neutron: {{rules: [...]}} "
                                                   f"or vmqos's ingress/egress, not both; move {own[0]} into one")
        policy, notes = self.neutron((*path, "neutron"), name, wire.neutron)
        self.policy_notes[name] = notes
        self.notes.extend(notes)
        return replace(policy, name=name, origin=wire.origin or policy.origin)

    def neutron(self, path: Path, name: str, wire: NeutronPolicyWire) -> tuple[Policy, tuple[Note, ...]]:
        if wire.name is not None and wire.name != name:
            raise self.lines.fail((*path, "name"), f"{where(path)}.name: {wire.name!r} differs from the policy's "
                                                   f"key {name!r}; remove it or make them equal")
        # the host file is strict where the API output is lenient: any key of any rule type, no other
        allowed = sorted(NEUTRON_METADATA | {field for fields in NEUTRON_FIELDS.values() for field in fields})
        for index, rule in enumerate(wire.rules):
            for key in rule:
                if key not in allowed:
                    here = (*path, "rules", index)
                    close = difflib.get_close_matches(key, allowed, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of: {', '.join(allowed)}"
                    raise self.lines.fail((*here, key), f"unknown key {key!r} in {where(here)}{hint}")
        obj = wire.model_dump(exclude_none=True)
        try:
            return neutron.policy_from_obj(obj, name=name, where=where(path))
        except VmqosError as exc:
            found = re.search(r"rules\[(\d+)\]", str(exc))
            line_path = (*path, "rules", int(found.group(1))) if found else path
            message = str(exc) if str(exc).startswith(where(path)) else f"{where(path)}: {exc}"
            raise FormatError(FMT, message, line=self.lines(line_path)) from None

    # cpu and disks ------------------------------------------------------------------------------

    def cpu(self, path: Path, wire: CpuWire | None) -> CpuQos | None:
        if wire is None:
            return None
        period = self.time((*path, "period_us"), wire.period_us)
        quota = self.time((*path, "quota_us"), wire.quota_us)
        with self.lines.at(path):
            return CpuQos(shares=wire.shares, period_us=period, quota_us=quota)

    def disk(self, path: Path, wire: Any) -> DiskQos:
        if wire is None:
            return DiskQos()
        values: dict[str, Any] = {}
        for key in DISK_KEYS:
            value = getattr(wire, key)
            values[key] = self.size((*path, key), value) if is_byte_key(key) else value
        with self.lines.at(path):
            return DiskQos(group_name=wire.group_name, **values)

    def disks(self, path: Path, wires: dict[str, Any] | None) -> dict[str, DiskQos]:
        result = {}
        for name, wire in (wires or {}).items():
            self.name((*path, name), name, "disk")
            result[name] = self.disk((*path, name), wire)
        return result

    # flavors, networks, instances ---------------------------------------------------------------

    def flavor(self, name: str, wire: FlavorWire | None) -> Flavor:
        path: Path = ("flavors", name)
        if wire is None:
            return Flavor(name=name, qos=QosDocument(name=name))
        canonical = [key for key in ("cpu", "disk", "disks", "network", "interfaces") if getattr(wire, key) is not None]
        if wire.extra_specs is None:
            interfaces = {}
            for device, qos in (wire.interfaces or {}).items():
                interfaces[device] = self.network((*path, "interfaces", device), qos)
            doc = QosDocument(name=name, network=None if wire.network is None else self.network(
                (*path, "network"), wire.network), cpu=self.cpu((*path, "cpu"), wire.cpu),
                disk=None if wire.disk is None else self.disk((*path, "disk"), wire.disk),
                interfaces=interfaces, disks=self.disks((*path, "disks"), wire.disks))
            return Flavor(name=name, qos=doc)
        if canonical:
            raise self.lines.fail((*path, canonical[0]), f"{where(path)}: a flavor has either extra_specs or "
                                                         f"canonical cpu/disk/network, not both; move {canonical[0]}")
        specs_path = (*path, "extra_specs")
        try:
            doc = nova.read(json.dumps(wire.extra_specs))
        except VmqosError as exc:
            text = str(exc)
            keys = sorted((k for k in wire.extra_specs if k in text), key=len, reverse=True)
            raise FormatError(FMT, f"{where(specs_path)}: {text}",
                              line=self.lines((*specs_path, keys[0]) if keys else specs_path)) from None
        self.notes.extend(doc.notes)
        return Flavor(name=name, qos=replace(doc, name=name))

    def port(self, path: Path, wire: Any, state: dict[str, Any]) -> PortSpec:
        for key, table, kind in (("network", state["networks"], "network"), ("policy", state["policies"], "policy")):
            ref = getattr(wire, key)
            if ref is not None and ref not in table:
                raise self.lines.fail((*path, key), _undefined(kind, ref, path, key, table))
        limits = None if wire.limits is None else self.network((*path, "limits"), wire.limits)
        with self.lines.at(path):
            return PortSpec(device=wire.device, network=wire.network, policy=wire.policy, limits=limits,
                            egress_mode=EgressMode(wire.egress_mode or EgressMode.SHAPE.value),
                            window_clamp=bool(wire.window_clamp),
                            mtu=DEFAULT_MTU if wire.mtu is None else wire.mtu,
                            addresses=tuple(wire.addresses or ()))

    def instance(self, name: str, wire: InstanceWire | None, state: dict[str, Any],
                 devices: dict[str, tuple[str, int | None]]) -> InstanceSpec:
        path: Path = ("instances", name)
        if wire is None:
            return InstanceSpec(name=name)
        if wire.flavor is not None and wire.flavor not in state["flavors"]:
            raise self.lines.fail((*path, "flavor"), _undefined("flavor", wire.flavor, path, "flavor",
                                                                state["flavors"]))
        ports = []
        for index, item in enumerate(wire.ports or ()):
            here = (*path, "ports", index)
            port = self.port(here, item, state)
            if port.device in devices:
                owner, line = devices[port.device]
                raise self.lines.fail((*here, "device"), f"{where(here)}.device: {port.device!r} is already a port of "
                                                         f"instance {owner!r} (line {line}); device names are unique "
                                                         "on a host")
            devices[port.device] = (name, self.lines((*here, "device")))
            ports.append(port)
        return InstanceSpec(name=name, flavor=wire.flavor, cpu=self.cpu((*path, "cpu"), wire.cpu), ports=tuple(ports),
                            disks=self.disks((*path, "disks"), wire.disks))

    def name(self, path: Path, name: str, kind: str) -> None:
        if not name.strip():
            article = "an" if kind[0] in "aeiou" else "a"
            raise self.lines.fail(path, f"{where(path[:-1])}: {article} {kind} name cannot be empty")

    def host(self, wire: HostFileWire) -> HostState:
        state: dict[str, Any] = {"policies": {}, "flavors": {}, "networks": {}, "instances": {}}
        for name, policy in (wire.policies or {}).items():
            self.name(("policies", name), name, "policy")
            state["policies"][name] = self.policy(name, policy)
        for name, flavor in (wire.flavors or {}).items():
            self.name(("flavors", name), name, "flavor")
            state["flavors"][name] = self.flavor(name, flavor)
        for name, net in (wire.networks or {}).items():
            path: Path = ("networks", name)
            self.name(path, name, "network")
            ref = None if net is None else net.policy
            if ref is not None and ref not in state["policies"]:
                raise self.lines.fail((*path, "policy"), _undefined("policy", ref, path, "policy", state["policies"]))
            state["networks"][name] = NetworkSpec(name=name, policy=ref)
        devices: dict[str, tuple[str, int | None]] = {}
        for name, inst in (wire.instances or {}).items():
            self.name(("instances", name), name, "instance")
            state["instances"][name] = self.instance(name, inst, state, devices)
        if wire.uplink is not None:
            capacity = self.rate(("uplink", "capacity"), wire.uplink.capacity)
            with self.lines.at(("uplink",)):
                state["uplink"] = UplinkSpec(wire.uplink.device, capacity or 0, bool(wire.uplink.oversubscribe))
            if wire.uplink.device in devices:
                raise self.lines.fail(("uplink", "device"), f"uplink.device: {wire.uplink.device!r} is a port of "
                                      f"instance {devices[wire.uplink.device][0]!r}; the uplink is the host's own link")
        return HostState(**state)


def _undefined(kind: str, ref: str, path: Path, key: str, table: dict[str, Any]) -> str:
    section = {"policy": "policies", "network": "networks", "flavor": "flavors"}[kind]
    message = f"{where((*path, key))}: {kind} {ref!r} is not defined under {section}"
    close = difflib.get_close_matches(ref, list(table), n=1)
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    return f"{message} (defined: {', '.join(table)})" if table else f"{message} (the file defines none)"

