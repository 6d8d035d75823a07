"""libvirt domain XML: `<bandwidth>`, `<iotune>` and `<cputune>`, alone or inside a `<domain>`.

Units (qos-semantics.md §1.1): `average`, `peak` and `floor` are kB/s (1000 bytes, so 8000
bit/s, `LIBVIRT_RATE_BPS`) and `burst` is KiB (1024 bytes, `LIBVIRT_BURST_BYTES`), because
libvirt hands them to tc as `kbps` and `kb`. `inbound` is traffic towards the instance
(vmqos `ingress`), `outbound` traffic sent by it (`egress`). Every attribute is an unsigned
int; 0 or absent means unset.

The quantities live in `libvirt_units` (shared with the Nova and domiftune formats, which
state the same libvirt quantities with other spellings) and the single elements in
`libvirt_elements`; this module reads and writes whole documents.

Reading a `<domain>` gives one entry per interface in `doc.interfaces` (keyed by
`<target dev>`, or `interfaceN` when it has none) and one per disk in `doc.disks`
(CD-ROM and floppy drives without `<iotune>` are skipped). A bare `<bandwidth>`,
`<iotune>` or `<cputune>` fills `doc.network`, `doc.disk` or `doc.cpu`; any other root
element (e.g. `<qos>`) is read as a wrapper of such elements and may carry a `<name>`.

Writing a document without per-interface or per-disk entries gives the bare elements, in a
`<qos>` wrapper when there is more than one (the wrapper also keeps the document's name);
with such entries it gives a minimal `<domain type='kvm'>`. Rates that are not whole kB/s
and bursts that are not whole KiB are rounded to the nearest unit (at least 1).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from typing import Any

import defusedxml
import defusedxml.ElementTree as SafeET

from vmqos.core.errors import ConflictError, FormatError, UnsupportedError
from vmqos.core.formats._common import check_size
from vmqos.core.formats.libvirt_elements import (
    FORMAT,
    bandwidth_element,
    cputune_element,
    iotune_element,
    read_bandwidth,
    read_cputune,
    read_iotune,
    text_of,
)
from vmqos.core.formats.libvirt_units import shares_notes
from vmqos.core.model import DiskQos, NetworkQos, Note, QosDocument

_SKIPPED_DISK_DEVICES = ("cdrom", "floppy")
_PARTS = ("bandwidth", "iotune", "cputune")


def _parse(text: str) -> Any:
    check_size(FORMAT, text)  # a domain XML is a few KiB; a 44 MB one took 12 s and 966 MB to parse
    try:
        return SafeET.fromstring(text)
    except SafeET.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else None
        raise FormatError(FORMAT, f"not well-formed XML: {exc}", line=line) from None
    except defusedxml.DefusedXmlException as exc:
        raise FormatError(FORMAT, f"refused XML feature ({exc}); libvirt XML needs no DTD or entities") from None


def _devices(root: Any, kind: str) -> Iterator[tuple[str, Any]]:
    """(target dev, element) of each `<devices>/<kind>`; `kindN` (N = position) when it has no target."""
    seen: set[str] = set()
    for index, element in enumerate(root.findall(f"devices/{kind}")):
        target = element.find("target")
        dev = target.get("dev") if target is not None and target.get("dev") else f"{kind}{index}"
        if dev in seen:
            raise ConflictError(f"libvirt: two <{kind}> devices with target dev {dev!r}")
        seen.add(dev)
        yield dev, element


def _read_domain(root: Any) -> QosDocument:
    name = root.findtext("name")
    cputune = root.find("cputune")
    cpu = read_cputune(cputune) if cputune is not None else None
    interfaces: dict[str, NetworkQos] = {}
    disks: dict[str, DiskQos] = {}
    notes: list[Note] = shares_notes("cputune.shares", cpu)
    for dev, iface in _devices(root, "interface"):
        bandwidth = iface.find("bandwidth")
        if bandwidth is None:
            interfaces[dev] = NetworkQos()
        else:
            interfaces[dev], more = read_bandwidth(bandwidth, prefix=f"{dev}.")
            notes += more
    for dev, disk in _devices(root, "disk"):
        iotune = disk.find("iotune")
        if iotune is not None:
            disks[dev] = read_iotune(iotune, prefix=f"{dev}.")
        elif disk.get("device", "disk") not in _SKIPPED_DISK_DEVICES:
            disks[dev] = DiskQos()
    return QosDocument(name=name.strip() if name else None, cpu=cpu, interfaces=interfaces, disks=disks,
                       notes=tuple(notes))


def _read_parts(elements: Iterable[Any]) -> QosDocument:
    name = network = disk = cpu = None
    notes: list[Note] = []
    seen: set[str] = set()
    for element in elements:
        if element.tag in seen:
            raise ConflictError(f"libvirt: more than one <{element.tag}>; keep one")
        if element.tag in _PARTS:
            seen.add(element.tag)
        if element.tag == "bandwidth":
            network, more = read_bandwidth(element)
            notes += more
            network = None if network.is_empty else network
        elif element.tag == "iotune":
            disk = read_iotune(element)
            disk = None if disk.is_empty else disk
        elif element.tag == "cputune":
            cpu = read_cputune(element)
            notes += shares_notes("cputune.shares", cpu)
        elif element.tag == "name":
            name = text_of(element) or None
        else:
            notes.append(Note(element.tag, "ignored: not <bandwidth>, <iotune>, <cputune> or <name>", "info"))
    return QosDocument(name=name, network=network, cpu=cpu, disk=disk, notes=tuple(notes))


def read(text: str, **options: Any) -> QosDocument:
    """A libvirt `<domain>`, a bare `<bandwidth>`/`<iotune>`/`<cputune>`, or a wrapper of them."""
    root = _parse(text)
    if root.tag == "domain":
        return _read_domain(root)
    if root.tag in _PARTS:
        return _read_parts([root])
    children = list(root)
    if children and not any(child.tag in _PARTS + ("name",) for child in children):
        raise FormatError(FORMAT, f"<{root.tag}> is not a <domain> and contains no <bandwidth>, <iotune> "
                                  "or <cputune>")
    return _read_parts(children)


def _same_or_none(fmt: str, default: Any, per_device: dict[str, Any], what: str) -> None:
    """A document default that a domain cannot state beside per-device entries must match them all."""
    if default is None or default.is_empty:
        return
    if not per_device or any(value != default for value in per_device.values()):
        raise UnsupportedError(
            f"{fmt}: the document's {what} applies to every device not listed, but a domain XML states only "
            f"the listed ones; put it on each {what.split()[0]} instead"
        )


def _domain(doc: QosDocument) -> ET.Element:
    _same_or_none(FORMAT, doc.network, doc.interfaces, "interface default (network)")
    _same_or_none(FORMAT, doc.disk, doc.disks, "disk default (disk)")
    root = ET.Element("domain", {"type": "kvm"})
    if doc.name:
        ET.SubElement(root, "name").text = doc.name
    cputune = cputune_element(doc.cpu)
    if cputune is not None:
        root.append(cputune)
    devices = ET.SubElement(root, "devices")
    for dev, disk in doc.disks.items():
        element = ET.SubElement(devices, "disk", {"type": "file", "device": "disk"})
        ET.SubElement(element, "target", {"dev": dev})
        iotune = iotune_element(disk)
        if iotune is not None:
            element.append(iotune)
    for dev, qos in doc.interfaces.items():
        element = ET.SubElement(devices, "interface", {"type": "ethernet"})
        ET.SubElement(element, "target", {"dev": dev})
        bandwidth = bandwidth_element(qos)
        if bandwidth is not None:
            element.append(bandwidth)
    return root


def write(doc: QosDocument, **options: Any) -> str:
    """libvirt XML for the document (see the module docstring for the shapes), pretty-printed."""
    if doc.interfaces or doc.disks:
        root = _domain(doc)
    else:
        parts = [element for element in (
            bandwidth_element(doc.network), iotune_element(doc.disk or DiskQos()), cputune_element(doc.cpu),
        ) if element is not None]
        if len(parts) == 1:
            root = parts[0]
        else:
            root = ET.Element("qos")
            if doc.name:
                ET.SubElement(root, "name").text = doc.name
            root.extend(parts)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"
