"""What an agent finds on its host, for `PUT /v1/hosts/{host}` (pure values and parsing).

Ports are the host's (or --netns's) tap, tun and veth devices; domains are libvirt's, each with
its interfaces and disks and, for a domain Nova started, what its `<nova:instance>` metadata says
(the flavor's name and the Neutron port ids: the server can tell which of its ports run here);
instances are the lab's, from the agent's store.

Nova writes the metadata in its own XML namespace, http://openstack.org/xmlns/libvirt/nova/1.0
(1.1 since Nova added `<nova:ports>`); both are read. The domain's `<uuid>` is Nova's instance id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vmqos.core.errors import FormatError
from vmqos.core.formats.libvirt import _parse

NOVA_NS_PREFIX = "http://openstack.org/xmlns/libvirt/nova/"
PORT_KINDS = ("tun", "veth")  # a tap is a tun device in IFF_TAP mode: the kernel calls both "tun"


@dataclass(frozen=True)
class HostPort:
    device: str
    kind: str
    mac: str | None = None


@dataclass(frozen=True)
class DomainInterface:
    device: str | None  # libvirt's <target dev>, None until libvirt names one
    mac: str | None = None


@dataclass(frozen=True)
class DomainDisk:
    target: str
    source: str | None = None


@dataclass(frozen=True)
class NovaInstance:
    instance_uuid: str
    flavor: str | None = None
    port_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Domain:
    name: str
    uuid: str
    state: str
    interfaces: tuple[DomainInterface, ...] = ()
    disks: tuple[DomainDisk, ...] = ()
    nova: NovaInstance | None = None


@dataclass(frozen=True)
class LabInstance:
    name: str
    ports: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostInventory:
    ports: tuple[HostPort, ...] = ()
    domains: tuple[Domain, ...] = ()
    instances: tuple[LabInstance, ...] = ()


def _local(tag: str) -> tuple[str, str]:
    """(namespace, local name) of an ElementTree tag."""
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


def _nova(root: Any, uuid: str) -> NovaInstance | None:
    metadata = root.find("metadata")
    if metadata is None:
        return None
    for element in metadata:
        ns, name = _local(element.tag)
        if name != "instance" or not ns.startswith(NOVA_NS_PREFIX):
            continue
        flavor = element.find(f"{{{ns}}}flavor")
        ports = element.find(f"{{{ns}}}ports")
        port_ids = tuple(p.get("uuid") for p in (ports if ports is not None else ()) if _local(p.tag)[1] == "port"
                         and p.get("uuid"))
        return NovaInstance(uuid, flavor.get("name") if flavor is not None else None, port_ids)
    return None


def read_domain(xml: str, state: str) -> Domain:
    """A libvirt domain XML (`virsh dumpxml`) as an inventory entry; FormatError when it is not one."""
    root = _parse(xml)
    if root.tag != "domain":
        raise FormatError("libvirt", f"a domain XML has root <domain>, not <{root.tag}>")
    name = (root.findtext("name") or "").strip()
    uuid = (root.findtext("uuid") or "").strip()
    interfaces = []
    for iface in root.findall("devices/interface"):
        target, mac = iface.find("target"), iface.find("mac")
        interfaces.append(DomainInterface(target.get("dev") if target is not None else None,
                                          mac.get("address") if mac is not None else None))
    disks = []
    for disk in root.findall("devices/disk"):
        target, source = disk.find("target"), disk.find("source")
        if target is None or not target.get("dev"):
            continue
        src = None if source is None else source.get("file") or source.get("dev") or source.get("name")
        disks.append(DomainDisk(target.get("dev"), src))
    return Domain(name, uuid, state, tuple(interfaces), tuple(disks), _nova(root, uuid))


def to_wire(inventory: HostInventory) -> dict[str, Any]:
    """The `inventory` object of `PUT /v1/hosts/{host}`."""
    return {
        "ports": [{"device": p.device, "kind": p.kind, "mac": p.mac} for p in inventory.ports],
        "domains": [{"name": d.name, "uuid": d.uuid, "state": d.state,
                     "interfaces": [{"device": i.device, "mac": i.mac} for i in d.interfaces],
                     "disks": [{"target": k.target, "source": k.source} for k in d.disks],
                     "nova": None if d.nova is None else {"instance_uuid": d.nova.instance_uuid,
                                                          "flavor": d.nova.flavor,
                                                          "port_ids": list(d.nova.port_ids)}}
                    for d in inventory.domains],
        "instances": [{"name": i.name, "ports": list(i.ports)} for i in inventory.instances],
    }
