"""vmqos's own file format (version 1): a whole host's desired QoS state, in YAML or JSON.

    version: 1
    policies:                    # named network QoS policies
      bw-limiter:                # Neutron style: the rules exactly as the Neutron API has them
        neutron:
          rules: [{type: bandwidth_limit, direction: egress, max_kbps: 3000, max_burst_kbps: 300}]
      gold:                      # vmqos style, with tc units
        ingress: {rate: 100mbit, peak: 200mbit, burst: 1mb, pps: 20000, pps_burst: 2000, min: 10mbit}
        egress: {rate: 50mbit, dscp: 26, classes: [{name: web, share: 60, match: {protocol: tcp, ports: [443]}},
                                                   {name: rest, share: 40}]}
    flavors:
      m1.small: {extra_specs: {"quota:cpu_shares": "512"}}   # or canonical: {cpu: ..., disk: ..., network: ...}
    networks:
      private: {policy: gold}
    instances:
      vm1:
        flavor: m1.small
        cpu: {shares: 512, period_us: 100000, quota_us: 20000}   # overrides the flavor's
        disks: {vda: {read_bytes_sec: 10mb, read_iops_sec: 500}}
        ports:
          - {device: tap-vm1, network: private, policy: bw-limiter, egress_mode: shape, mtu: 1500,
             limits: {egress: {rate: 100mbit}}}

Rates are tc rates (`100mbit`, `12500kbps` = 100 Mbit/s) or integers in bit/s; sizes are tc
sizes (`64kb` = 65536 bytes) or integers in bytes; `period_us`/`quota_us` accept tc times. A
port's own policy wins over its network's, as in Neutron. JSON is read by the same parser (JSON
is YAML). Every error is a FormatError with the line of the offending key or element.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import yaml
from pydantic import ValidationError

from vmqos.core.errors import FormatError, InvalidValue, UnsupportedError, VmqosError
from vmqos.core.formats.hostfile_schema import (
    VERSION,
    CpuWire,
    DirectionWire,
    DiskWire,
    FlavorWire,
    HostFileWire,
    InstanceWire,
    NeutronPolicyWire,
    PolicyWire,
    QosWire,
    is_byte_key,
    keys_at,
)
from vmqos.core.formats.hostfile_schema import schema as _schema
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
)
from vmqos.core.model.network import (
    BandwidthLimit,
    DirectionQos,
    NetworkQos,
    PacketRateLimit,
    TrafficClass,
    TrafficMatch,
)
from vmqos.core.units import (
    format_rate,
    format_size,
    parse_rate,
    parse_size,
    parse_time,
)

FMT = "vmqos"
Path = tuple[str | int, ...]

# Aliases let a small file expand to a huge one ("billion laughs"); no host needs this many values.
MAX_NODES = 200_000


def schema() -> dict[str, Any]:
    """The JSON Schema of a host file, as `vmqos schema` prints it."""
    return _schema()


# ------------------------------------------------------------------------------------- YAML nodes


def where(path: Path) -> str:
    """A path as the operator reads it: `instances.vm1.ports[0].limits.egress`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "the top level"


_SEQ, _MAP = "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"


class _Composer:
    """Plain Python data from YAML nodes, with the 1-based line of every key and list item."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}
        self.nodes = 0
        self.active: set[int] = set()
        self.constructor = yaml.constructor.SafeConstructor()

    def value(self, node: yaml.Node, path: Path) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise FormatError(FMT, f"the file expands to more than {MAX_NODES} values (aliases?)", line=_line(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                return self.constructor.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                raise FormatError(FMT, f"{where(path)}: {getattr(exc, 'problem', exc)}", line=_line(node)) from None
        if id(node) in self.active:
            raise FormatError(FMT, f"{where(path)}: an alias refers to a mapping that contains it", line=_line(node))
        if node.tag not in (_SEQ, _MAP):
            raise FormatError(FMT, f"{where(path)}: the YAML tag {node.tag!r} is not allowed in a host file",
                              line=_line(node))
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                items = []
                for index, item in enumerate(node.value):
                    self.lines[(*path, index)] = _line(item)
                    items.append(self.value(item, (*path, index)))
                return items
            return self.mapping(node, path, {})
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.Node, path: Path, into: dict[str, Any]) -> dict[str, Any]:
        """Fill `into` with the mapping's keys; YAML merge keys (`<<: *anchor`) add the keys not set."""
        if not isinstance(node, yaml.MappingNode):
            raise FormatError(FMT, f"{where(path)}: a merge key (<<) needs a mapping or a list of mappings",
                              line=_line(node))
        seen: dict[str, int] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise FormatError(FMT, f"{where(path)}: keys must be plain strings", line=_line(key_node))
            key = str(key_node.value)  # as written: `on:` stays "on", `101:` stays "101"
            if key in seen:
                raise FormatError(FMT, f"duplicate key {key!r} {_in(path)} (first at line {seen[key]})",
                                  line=_line(key_node))
            seen[key] = _line(key_node)
            if key in into:  # set by the mapping that merges this one
                continue
            self.lines[(*path, key)] = _line(key_node)
            into[key] = self.value(value_node, (*path, key))
        for merge in merges:
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for source in sources:
                if id(source) in self.active:
                    raise FormatError(FMT, f"{where(path)}: a merge key refers to a mapping that contains it",
                                      line=_line(source))
                self.active.add(id(source))
                try:
                    self.mapping(source, path, into)
                finally:
                    self.active.discard(id(source))
        return into


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _load(text: str) -> tuple[Any, dict[Path, int]]:
    """The document as plain data, and the line of every path in it."""
    try:
        root = _compose(text)
    except yaml.YAMLError as first:
        if "\t" in text and text.lstrip().startswith(("{", "[")):
            # JSON indented with tabs: tabs are whitespace in JSON and invalid inside its strings.
            try:
                root = _compose(text.replace("\t", " "))
            except yaml.YAMLError:
                raise _yaml_error(text, first) from None
        else:
            raise _yaml_error(text, first) from None
    if root is None:
        raise FormatError(FMT, f"the file is empty; a host file starts with 'version: {VERSION}'", line=1)
    composer = _Composer()
    data = composer.value(root, ())
    composer.lines[()] = _line(root)
    if not isinstance(data, dict):
        raise FormatError(FMT, f"expected a mapping with 'version: {VERSION}' at the top, not a "
                               f"{type(data).__name__}", line=_line(root))
    return data, composer.lines


def _compose(text: str) -> yaml.Node | None:
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _yaml_error(text: str, exc: yaml.YAMLError) -> FormatError:
    line = None
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        message = "; ".join(part for part in (exc.context, exc.problem) if part)
        if exc.context_mark is not None and exc.problem_mark is not None \
                and exc.context_mark.line != exc.problem_mark.line:
            message += f" (the construct opened at line {exc.context_mark.line + 1})"
    elif isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        message = f"character {exc.character!r} is not allowed ({exc.reason})"
    else:
        message = str(exc)
    return FormatError(FMT, f"not valid YAML or JSON: {message}", line=line)


# ------------------------------------------------------------------------------------ validation

_TYPES = {
    "int_type": "expected an integer",
    "string_type": "expected a string",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "list_type": "expected a list",
}


class _Lines:
    def __init__(self, lines: dict[Path, int]) -> None:
        self.lines = lines

    def __call__(self, path: Path) -> int | None:
        """The line of `path`, or of the nearest enclosing element the file has."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None

    def fail(self, path: Path, message: str) -> FormatError:
        return FormatError(FMT, message, line=self(path))

    @contextmanager
    def at(self, path: Path) -> Iterator[None]:
        """Turn what the model refuses into a FormatError at the line of the element being built."""
        try:
            yield
        except FormatError:
            raise
        except VmqosError as exc:
            raise FormatError(FMT, f"{where(path)}: {exc}", line=self(path)) from None


def _in(path: Path) -> str:
    return f"in {where(path)}" if path else "at the top level"


def _validate(data: dict[str, Any], lines: _Lines) -> HostFileWire:
    try:
        return HostFileWire.model_validate(data)
    except ValidationError as exc:
        errors = [(lines(tuple(e["loc"])) or 0, i, e) for i, e in enumerate(exc.errors())]
        errors.sort(key=lambda item: item[:2])
        line, _, first = errors[0]
        message = _message(first)
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        raise FormatError(FMT, message, line=line or None) from None


def _message(error: Any) -> str:
    loc: Path = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        parent, key = loc[:-1], str(loc[-1])
        allowed = keys_at(parent) or []
        text = f"unknown key {key!r} {_in(parent)}"
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            return f"{text}; did you mean {close[0]!r}?"
        return f"{text}; expected one of: {', '.join(allowed)}" if allowed else text
    if kind == "missing":
        return f"missing key {str(loc[-1])!r} {_in(loc[:-1])}"
    message = _TYPES.get(kind) or str(error["msg"]).replace("Input should be", "expected")
    value = error.get("input")
    if not isinstance(value, (dict, list)):
        message += f", got {value!r}"
    return f"{where(loc)}: {message}"


# -------------------------------------------------------------------------------------- building


class _Builder:
    def __init__(self, lines: _Lines) -> None:
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
        own = [key for key in ("ingress", "egress", "min_pps_any") if getattr(wire, key) is not None]
        if own:
            raise self.lines.fail((*path, own[0]), f"{where(path)}: a policy is either neutron: {{rules: [...]}} "
                                                   f"or vmqos's ingress/egress, not both; move {own[0]} into one")
        policy, notes = self.neutron((*path, "neutron"), name, wire.neutron)
        self.policy_notes[name] = notes
        self.notes.extend(notes)
        return replace(policy, name=name, origin=wire.origin or policy.origin)

    def neutron(self, path: Path, name: str, wire: NeutronPolicyWire) -> tuple[Policy, tuple[Note, ...]]:
        try:
            from vmqos.core.formats import neutron
        except ImportError:
            raise self.lines.fail(path, f"{where(path)}: reading Neutron policies needs vmqos.core.formats.neutron, "
                                        "which this installation lacks") from None
        if wire.name is not None and wire.name != name:
            raise self.lines.fail((*path, "name"), f"{where(path)}.name: {wire.name!r} differs from the policy's "
                                                   f"key {name!r}; remove it or make them equal")
        known = getattr(neutron, "_FIELDS", None)
        metadata = getattr(neutron, "_METADATA", frozenset())
        if isinstance(known, dict):  # the host file is strict where the API output is lenient
            allowed = sorted(set(metadata) | {field for fields in known.values() for field in fields})
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
        nova = _nova()
        if nova is None:
            raise self.lines.fail(specs_path, f"{where(specs_path)}: reading Nova extra specs needs "
                                              "vmqos.core.formats.nova, which this installation lacks")
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
                            mtu=1500 if wire.mtu is None else wire.mtu)

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
        return HostState(**state)


def _undefined(kind: str, ref: str, path: Path, key: str, table: dict[str, Any]) -> str:
    section = {"policy": "policies", "network": "networks", "flavor": "flavors"}[kind]
    message = f"{where((*path, key))}: {kind} {ref!r} is not defined under {section}"
    close = difflib.get_close_matches(ref, list(table), n=1)
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    return f"{message} (defined: {', '.join(table)})" if table else f"{message} (the file defines none)"


def _nova() -> Any:
    try:
        from vmqos.core.formats import nova
    except ImportError:
        return None
    return nova


# ------------------------------------------------------------------------------------ public read


def read_host_with_notes(text: str) -> tuple[HostState, tuple[Note, ...]]:
    """A host file as a HostState, and the notes of converting its Neutron policies and Nova flavors."""
    state, builder = _read(text)
    return state, tuple(builder.notes)


def read_host(text: str) -> HostState:
    """A host file (YAML or JSON) as a HostState; FormatError with the line of any mistake."""
    return _read(text)[0]


def _read(text: str) -> tuple[HostState, _Builder]:
    data, lines = _load(text)
    finder = _Lines(lines)
    wire = _validate(data, finder)
    builder = _Builder(finder)
    return builder.host(wire), builder


def read(text: str, instance: str | None = None, **options: Any) -> QosDocument:
    """The QoS of ONE instance of a host file, without working out what is effective.

    The document is named after the instance; `cpu` is the instance's cpu, else its flavor's;
    `network` and `disk` are the flavor's (they apply to every port and disk the instance does
    not list otherwise); `disks` are the instance's own; `interfaces` maps each port device to
    the port's own policy, else its explicit `limits`, else its network's policy (ports with
    none of these are left out). How a flavor's quota and a port's policy combine on a real host
    is `vmqos.core.desired.effective`'s business, not this view's.

    `instance` names the instance when the file has several. A file without instances but with
    exactly one policy (or `instance` naming a policy) reads as that policy's network QoS.
    """
    state, builder = _read(text)
    if not state.instances:
        return _policy_document(state, builder, instance)
    if instance is None:
        if len(state.instances) > 1:
            raise FormatError(FMT, f"the file has {len(state.instances)} instances ({', '.join(state.instances)}); "
                                   "choose one of them")
        instance = next(iter(state.instances))
    spec = state.instances.get(instance)
    if spec is None:
        raise FormatError(FMT, f"no instance {instance!r} in the file; it has {', '.join(state.instances)}")
    flavor = None if spec.flavor is None else state.flavors[spec.flavor].qos
    notes: list[Note] = list(flavor.notes) if flavor is not None else []
    interfaces: dict[str, NetworkQos] = {}
    for port in spec.ports:
        policy = port.policy
        if policy is None and port.limits is None and port.network is not None:
            policy = state.networks[port.network].policy
        if port.policy is None and port.limits is not None:
            interfaces[port.device] = port.limits
        elif policy is not None:
            interfaces[port.device] = state.policies[policy].qos
            notes.extend(n for n in builder.policy_notes.get(policy, ()) if n not in notes)
    return QosDocument(
        name=spec.name,
        network=None if flavor is None else flavor.network,
        cpu=spec.cpu if spec.cpu is not None else (None if flavor is None else flavor.cpu),
        disk=None if flavor is None else flavor.disk,
        interfaces=interfaces,
        disks=dict(spec.disks),
        notes=tuple(notes),
    )


def _policy_document(state: HostState, builder: _Builder, name: str | None) -> QosDocument:
    if not state.policies:
        raise FormatError(FMT, "the file has no instances and no policies; there is nothing to convert")
    if name is None:
        if len(state.policies) > 1:
            raise FormatError(FMT, f"the file has no instances and {len(state.policies)} policies "
                                   f"({', '.join(state.policies)}); choose one of them")
        name = next(iter(state.policies))
    policy = state.policies.get(name)
    if policy is None:
        raise FormatError(FMT, f"no instance or policy {name!r} in the file; its policies are "
                               f"{', '.join(state.policies)}")
    return QosDocument(name=policy.name, network=policy.qos, notes=builder.policy_notes.get(name, ()))


# ----------------------------------------------------------------------------------- public write


class _Flow(dict):  # type: ignore[type-arg]
    """A mapping written on one line: `{rate: 100mbit, burst: 64kb}`."""


class _FlowList(list):  # type: ignore[type-arg]
    """A list written on one line: `[80, 443]`."""


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


_Dumper.add_representer(_Flow, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True))
_Dumper.add_representer(_FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))

_FLOW_WIDTH = 80


def _styled(value: Any, depth: int = 0) -> Any:
    """Small leaves on one line, the structure above them as blocks."""
    if isinstance(value, dict):
        items = {k: _styled(v, depth + 1) for k, v in value.items()}
        leafy = all(not isinstance(v, (dict, list)) or isinstance(v, (_Flow, _FlowList)) for v in items.values())
        if depth >= 2 and leafy and len(json.dumps(items)) <= _FLOW_WIDTH:
            return _Flow(items)
        return items
    if isinstance(value, list):
        items_list = [_styled(v, depth + 1) for v in value]
        if all(not isinstance(v, (dict, list)) for v in items_list):
            return _FlowList(items_list)
        return items_list
    return value


def _dump_direction(qos: DirectionQos) -> dict[str, Any]:
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
        out["classes"] = [_dump_class(c) for c in qos.classes]
    return out


def _dump_class(item: TrafficClass) -> dict[str, Any]:
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


def _dump_network(qos: NetworkQos) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("ingress", "egress"):
        side = getattr(qos, key)
        if not side.is_empty:
            out[key] = _dump_direction(side)
    if qos.min_pps_any is not None:
        out["min_pps_any"] = qos.min_pps_any
    return out


def _dump_cpu(cpu: CpuQos) -> dict[str, Any]:
    return {key: getattr(cpu, key) for key in ("shares", "period_us", "quota_us") if getattr(cpu, key) is not None}


def _dump_disk(disk: DiskQos) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in disk.items().items():
        if is_byte_key(key) and isinstance(value, int) and value % 1024 == 0:
            out[key] = format_size(value)
        else:
            out[key] = value
    return out


def _dump_document(doc: QosDocument) -> dict[str, Any]:
    """A flavor's QoS in canonical form (what its extra specs could not say exactly)."""
    out: dict[str, Any] = {}
    if doc.cpu is not None:
        out["cpu"] = _dump_cpu(doc.cpu)
    if doc.disk is not None:
        out["disk"] = _dump_disk(doc.disk)
    if doc.disks:
        out["disks"] = {name: _dump_disk(d) for name, d in doc.disks.items()}
    if doc.network is not None:
        out["network"] = _dump_network(doc.network)
    if doc.interfaces:
        out["interfaces"] = {name: _dump_network(q) for name, q in doc.interfaces.items()}
    return out


def _dump_flavor(flavor: Flavor) -> dict[str, Any]:
    """Nova extra specs when they read back to exactly this flavor, else the canonical form."""
    nova = _nova()
    if nova is not None:
        try:
            specs = json.loads(nova.write(flavor.qos, json=True))
            if isinstance(specs, dict) and set(specs) == {"extra_specs"}:
                specs = specs["extra_specs"]
            if (isinstance(specs, dict) and specs and all(isinstance(v, str) for v in specs.values())
                    and replace(nova.read(json.dumps(specs)), name=flavor.name) == flavor.qos):
                return {"extra_specs": specs}
        except (VmqosError, ValueError, TypeError):
            pass
    return _dump_document(flavor.qos)


def _dump_policy(policy: Policy) -> dict[str, Any]:
    out = _dump_network(policy.qos)
    if policy.origin != "vmqos":
        out["origin"] = policy.origin
    return out


def _dump_port(port: PortSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"device": port.device}
    if port.network is not None:
        out["network"] = port.network
    if port.policy is not None:
        out["policy"] = port.policy
    if port.egress_mode is not EgressMode.SHAPE:
        out["egress_mode"] = EgressMode(port.egress_mode).value
    if port.mtu != 1500:
        out["mtu"] = port.mtu
    if port.limits is not None:
        out["limits"] = _dump_network(port.limits)
    return out


def _dump_instance(spec: InstanceSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.flavor is not None:
        out["flavor"] = spec.flavor
    if spec.cpu is not None:
        out["cpu"] = _dump_cpu(spec.cpu)
    if spec.disks:
        out["disks"] = {name: _dump_disk(d) for name, d in spec.disks.items()}
    if spec.ports:
        out["ports"] = [_dump_port(p) for p in spec.ports]
    return out


_HEADER = (
    "# vmqos host file: rates are tc rates (100mbit; 12500kbps is 100 Mbit/s) or bit/s,\n"
    "# sizes are tc sizes (64kb = 65536 bytes) or bytes. `vmqos schema` prints its JSON Schema.\n"
)


def write_host(state: HostState, *, notes: tuple[Note, ...] = ()) -> str:
    """A HostState as a host file (YAML, vmqos style); `read_host` reads it back equal."""
    data: dict[str, Any] = {"version": VERSION}
    if state.policies:
        data["policies"] = {name: _dump_policy(p) for name, p in state.policies.items()}
    if state.flavors:
        data["flavors"] = {name: _dump_flavor(f) for name, f in state.flavors.items()}
    if state.networks:
        data["networks"] = {name: ({"policy": n.policy} if n.policy is not None else {})
                            for name, n in state.networks.items()}
    if state.instances:
        data["instances"] = {name: _dump_instance(i) for name, i in state.instances.items()}
    comments = "".join("# " + str(note).replace("\n", " ") + "\n" for note in notes)
    body = yaml.dump(_styled(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return _HEADER + comments + body


def write(doc: QosDocument, **options: Any) -> str:
    """A document as a host file with one instance (named after the document, else "instance").

    The instance's ports are `doc.interfaces` (each with explicit `limits`), or one port `port0`
    carrying `doc.network` when there are no interfaces; its disks are `doc.disks`, or `vda`
    carrying `doc.disk` when there are none; its cpu is `doc.cpu`. When a document has both a
    default and per-device values, the default goes to a flavor named like the instance, whose
    network and disk apply to every port and disk. The document's notes become comments.
    """
    name = doc.name or "instance"
    interfaces = dict(doc.interfaces)
    disks = dict(doc.disks)
    flavor = None
    if doc.network is not None and not interfaces:
        interfaces = {"port0": doc.network}
    elif doc.network is not None:
        flavor = QosDocument(name=name, network=doc.network)
    if doc.disk is not None and not disks:
        disks = {"vda": doc.disk}
    elif doc.disk is not None:
        flavor = replace(flavor or QosDocument(name=name), disk=doc.disk)
    ports = []
    for device, qos in interfaces.items():
        try:
            ports.append(PortSpec(device=device, limits=qos))
        except InvalidValue as exc:
            raise UnsupportedError(f"vmqos: interface {device!r} cannot be a port of a host file: {exc}") from None
    state = HostState(
        flavors={} if flavor is None else {name: Flavor(name=name, qos=flavor)},
        instances={name: InstanceSpec(name=name, flavor=None if flavor is None else name, cpu=doc.cpu,
                                      ports=tuple(ports), disks=disks)},
    )
    return write_host(state, notes=doc.notes)


# ---------------------------------------------------------------------------- one object at a time
# The desired-state store keeps each object as JSON of the shape it has in a host file; going
# through these two functions keeps the file and the database from drifting apart.

Part = NetworkQos | CpuQos | DiskQos | Flavor


def to_data(obj: Part) -> dict[str, Any]:
    """One object as the plain data a host file has for it (a Flavor without its name)."""
    if isinstance(obj, NetworkQos):
        return _dump_network(obj)
    if isinstance(obj, CpuQos):
        return _dump_cpu(obj)
    if isinstance(obj, DiskQos):
        return _dump_disk(obj)
    if isinstance(obj, Flavor):
        return _dump_flavor(obj)
    raise TypeError(f"to_data: not a host file object: {type(obj).__name__}")


_QUICK_DIRECTION = frozenset(("rate", "peak", "burst", "pps", "pps_burst", "dscp", "min", "min_pps"))
_QUICK_COUNTS = frozenset(("pps", "pps_burst", "dscp", "min_pps"))  # integers only, as their wire fields


def _quick_network(data: Any) -> NetworkQos | None:
    """What the checked path builds from `data`, when `data` is what `_dump_network` writes without
    traffic classes; None for anything else, which then takes the checked path (and gets its errors).

    The checked path costs ~30 us per port, too much for a store of 10,000 ports; this one builds
    the same model objects from the same parsed values, so the two agree wherever this one answers.
    """
    if type(data) is not dict or not data.keys() <= {"ingress", "egress", "min_pps_any"}:
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
    wire_type = {NetworkQos: QosWire, CpuQos: CpuWire, DiskQos: DiskWire, Flavor: FlavorWire}[kind]
    try:
        wire: Any = wire_type.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise FormatError(FMT, _message({**first, "loc": (*path, *first["loc"])})) from None
    builder = _Builder(_Lines({}))
    if kind is Flavor:
        return builder.flavor(name, wire)
    return {NetworkQos: builder.network, CpuQos: builder.cpu, DiskQos: builder.disk}[kind](path, wire)


__all__ = ["from_data", "read", "read_host", "read_host_with_notes", "schema", "to_data", "where", "write",
           "write_host"]
