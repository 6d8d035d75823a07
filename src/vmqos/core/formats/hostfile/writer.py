"""Writing a host file: the dumped data as YAML an operator can read and edit.

Small leaves go on one line, the structure above them in blocks, with a header saying what the
units mean; `write` is the format API (one document as a one-instance host file).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import yaml

from vmqos.core.errors import InvalidValue, UnsupportedError
from vmqos.core.formats.hostfile.dump import dump_flavor, dump_instance, dump_policy
from vmqos.core.formats.hostfile.wire import VERSION
from vmqos.core.model.document import Note, QosDocument
from vmqos.core.units import format_rate
from vmqos.core.model.host import Flavor, HostState, InstanceSpec, PortSpec


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



_HEADER = (
    "# vmqos host file: rates are tc rates (100mbit; 12500kbps is 100 Mbit/s) or bit/s,\n"
    "# sizes are tc sizes (64kb = 65536 bytes) or bytes. `vmqos schema` prints its JSON Schema.\n"
)


def write_host(state: HostState, *, notes: tuple[Note, ...] = ()) -> str:
    """A HostState as a host file (YAML, vmqos style); `read_host` reads it back equal."""
    data: dict[str, Any] = {"version": VERSION}
    if state.policies:
        data["policies"] = {name: dump_policy(p) for name, p in state.policies.items()}
    if state.flavors:
        data["flavors"] = {name: dump_flavor(f) for name, f in state.flavors.items()}
    if state.networks:
        data["networks"] = {name: ({"policy": n.policy} if n.policy is not None else {})
                            for name, n in state.networks.items()}
    if state.instances:
        data["instances"] = {name: dump_instance(i) for name, i in state.instances.items()}
    if state.uplink is not None:
        data["uplink"] = {"device": state.uplink.device, "capacity": format_rate(state.uplink.capacity_bps),
                          **({"oversubscribe": True} if state.uplink.oversubscribe else {})}
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
