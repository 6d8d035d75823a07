"""libvirt domain XML: `<bandwidth>`, `<iotune>` and `<cputune>`, alone or inside a `<domain>`.

Units (qos-semantics.md §1.1): `average`, `peak` and `floor` are kB/s (1000 bytes, so 8000
bit/s, `LIBVIRT_RATE_BPS`) and `burst` is KiB (1024 bytes, `LIBVIRT_BURST_BYTES`), because
libvirt hands them to tc as `kbps` and `kb`. `inbound` is traffic towards the instance
(vmqos `ingress`), `outbound` traffic sent by it (`egress`). Every attribute is an unsigned
int; 0 or absent means unset.

The helpers `direction_from_units`, `direction_to_units`, `cpu_from_values`,
`read_bandwidth` and `bandwidth_element` are shared with the Nova and domiftune formats,
which state the same libvirt quantities with other spellings.

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
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import defusedxml
import defusedxml.ElementTree as SafeET

from vmqos.core.errors import ConflictError, FormatError, InvalidValue, UnsupportedError
from vmqos.core.formats._common import strict_int
from vmqos.core.model import (
    BandwidthLimit,
    CpuQos,
    DirectionQos,
    DiskQos,
    NetworkQos,
    Note,
    QosDocument,
)
from vmqos.core.model.disk import DISK_KEYS
from vmqos.core.units import LIBVIRT_BURST_BYTES, LIBVIRT_RATE_BPS, to_unit

FORMAT = "libvirt"
# libvirt's bandwidth fields are C unsigned ints (virsh: "rate larger than maximum 4294967295").
UINT_MAX = 2**32 - 1
BANDWIDTH_ATTRS = ("average", "peak", "burst", "floor")
IOTUNE_KEYS: tuple[str, ...] = DISK_KEYS + ("group_name",)
UNITS_FIX = (
    f"libvirt takes an unsigned integer from 0 to {UINT_MAX}: average, peak and floor in kB/s "
    "(1 kB = 1000 bytes), burst in KiB; 0 or absent means unset"
)
# Unit tuples (average, peak, burst, floor) in libvirt units; 0 = unset.
Units = tuple[int, int, int, int]
NO_UNITS: Units = (0, 0, 0, 0)
_SKIPPED_DISK_DEVICES = ("cdrom", "floppy")
_PARTS = ("bandwidth", "iotune", "cputune")


# --------------------------------------------------------------------------------------------
# Shared with the nova and domiftune formats
# --------------------------------------------------------------------------------------------


def libvirt_uint(field: str, value: Any, fix: str = UNITS_FIX) -> int:
    """An unsigned int as libvirt's bandwidth fields take it (0..4294967295), or InvalidValue naming `field`."""
    try:
        return strict_int(field, value, minimum=0, maximum=UINT_MAX)
    except InvalidValue:
        raise InvalidValue(field, value, fix) from None


def direction_from_units(
    name: Callable[[str], str], *, outbound: bool, average: int = 0, peak: int = 0, burst: int = 0, floor: int = 0
) -> tuple[DirectionQos, list[Note]]:
    """One direction from libvirt units (kB/s, KiB; 0 = unset) in canonical units, with notes.

    `name(attr)` gives the field name used in errors and notes for `average`, `peak`, `burst`
    or `floor`. As libvirt: a floor is inbound only, and peak or burst need an average or a
    floor; with only a floor, libvirt installs no rate limit, so peak and burst are ignored.
    """
    notes: list[Note] = []
    if floor and outbound:
        raise InvalidValue(
            name("floor"), floor,
            "libvirt accepts floor only on inbound (a guaranteed minimum towards the instance); "
            "remove it, or use the neutron format for an egress minimum bandwidth",
        )
    if not average and (peak or burst):
        if not floor:
            raise InvalidValue(
                name("average"), average,
                "average or floor are mandatory: libvirt refuses peak or burst without an average rate",
            )
        notes.append(Note(name("peak" if peak else "burst"),
                          "ignored: without an average libvirt installs no rate limit, only the floor"))
        peak = burst = 0
    if peak and peak < average:
        raise InvalidValue(name("peak"), peak, f"peak must be at least average ({average} kB/s)")
    if floor and average and floor > average:
        raise InvalidValue(name("floor"), floor,
                           f"the floor (a guaranteed minimum) must not exceed average ({average} kB/s)")
    limit = None
    if average:
        limit = BandwidthLimit(
            rate_bps=average * LIBVIRT_RATE_BPS,
            peak_bps=peak * LIBVIRT_RATE_BPS or None,
            burst_bytes=burst * LIBVIRT_BURST_BYTES or None,
        )
        if outbound and peak:
            notes.append(Note(
                name("peak"),
                "libvirt's own tc policer drops peak on outbound (it polices at the average rate); "
                "vmqos enforces it", "info"))
    return DirectionQos(bandwidth=limit, min_bps=floor * LIBVIRT_RATE_BPS or None), notes


def _unsupported(fmt: str, field: str, what: str, fix: str) -> UnsupportedError:
    return UnsupportedError(f"{fmt}: {field}: {what}; {fix}")


def direction_to_units(fmt: str, where: str, qos: DirectionQos, *, floor_ok: bool) -> Units:
    """One direction as libvirt units (average, peak, burst, floor; 0 = unset), or UnsupportedError.

    `where` is `ingress` or `egress`; `floor_ok` says whether the target has a floor for it.
    Values that are not whole kB/s or KiB are rounded to the nearest unit (at least 1).
    """
    if qos.packet_rate is not None:
        raise _unsupported(fmt, f"{where}.packet_rate", f"{fmt} has no packet-rate limit",
                           "use the neutron format (packet_rate_limit rule) or the vmqos format")
    if qos.min_pps is not None:
        raise _unsupported(fmt, f"{where}.min_pps", f"{fmt} has no minimum packet rate",
                           "use the neutron format (minimum_packet_rate rule)")
    if qos.dscp is not None:
        raise _unsupported(fmt, f"{where}.dscp", f"{fmt} cannot mark DSCP",
                           "use the neutron format (dscp_marking rule) or the vmqos format")
    if qos.classes:
        raise _unsupported(fmt, f"{where}.classes", f"{fmt} has no traffic classes", "use the vmqos format")
    if qos.min_bps is not None and not floor_ok:
        side = "libvirt's floor is inbound only" if where == "egress" else f"{fmt} has no minimum bandwidth"
        raise _unsupported(fmt, f"{where}.min_bps", side,
                           "use the neutron format (minimum_bandwidth rule) for a guaranteed minimum")
    floor = to_unit(qos.min_bps, LIBVIRT_RATE_BPS)[0] if qos.min_bps else 0
    limit = qos.bandwidth
    if limit is None:
        return 0, 0, 0, floor
    return (
        to_unit(limit.rate_bps, LIBVIRT_RATE_BPS)[0],
        to_unit(limit.peak_bps, LIBVIRT_RATE_BPS)[0] if limit.peak_bps else 0,
        to_unit(limit.burst_bytes, LIBVIRT_BURST_BYTES)[0] if limit.burst_bytes else 0,
        floor,
    )


def network_to_units(fmt: str, qos: NetworkQos | None, *, inbound_floor_ok: bool) -> tuple[Units, Units]:
    """(inbound, outbound) libvirt units of a network QoS; all zero when there is none."""
    if qos is None:
        return NO_UNITS, NO_UNITS
    if qos.min_pps_any is not None:
        raise _unsupported(fmt, "min_pps_any", f"{fmt} has no minimum packet rate",
                           "use the neutron format (minimum_packet_rate rule)")
    return (direction_to_units(fmt, "ingress", qos.ingress, floor_ok=inbound_floor_ok),
            direction_to_units(fmt, "egress", qos.egress, floor_ok=False))


def cpu_from_values(names: dict[str, str], shares: int | None, period: int | None, quota: int | None) -> CpuQos | None:
    """CpuQos from libvirt's/Nova's integers: period 0 and quota <= 0 mean unset (quota -1 = no cap).

    `names` maps `shares`, `period` and `quota` to the field names used in errors.
    """
    if shares == 0:
        raise InvalidValue(
            names["shares"], 0,
            "libvirt and the kernel refuse 0 shares (the Nova API accepts it); use 2 to 262144 "
            "(at most 10000 on cgroup v2 hosts), or leave it out for the default weight",
        )
    try:
        cpu = CpuQos(shares=shares, period_us=period or None, quota_us=quota if quota and quota > 0 else None)
    except InvalidValue as exc:
        raise InvalidValue(names[exc.field.removeprefix("cpu_")], exc.value, exc.fix) from None
    return None if cpu.is_empty else cpu


def read_bandwidth(element: Any, prefix: str = "") -> tuple[NetworkQos, list[Note]]:
    """A `<bandwidth>` element as NetworkQos, with notes; `prefix` names the interface in errors."""
    found: dict[str, Any] = {}
    for child in element:
        if child.tag not in ("inbound", "outbound"):
            raise InvalidValue(f"{prefix}bandwidth.{child.tag}", child.tag,
                               "<bandwidth> takes only <inbound> and <outbound>")
        if child.tag in found:
            raise ConflictError(f"{prefix}bandwidth: more than one <{child.tag}>; keep one")
        found[child.tag] = child
    directions: dict[str, DirectionQos] = {}
    notes: list[Note] = []
    for tag, key in (("inbound", "ingress"), ("outbound", "egress")):
        child = found.get(tag)
        if child is None:
            directions[key] = DirectionQos()
            continue
        where = f"{prefix}{tag}"
        for attr in child.attrib:
            if attr not in BANDWIDTH_ATTRS:
                raise InvalidValue(f"{where}.{attr}", child.get(attr),
                                   f"<{tag}> takes only {', '.join(BANDWIDTH_ATTRS)}")
        values = {attr: libvirt_uint(f"{where}.{attr}", child.get(attr, "0")) for attr in BANDWIDTH_ATTRS}
        if not values["average"] and not values["floor"]:
            raise InvalidValue(f"{where}.average", child.get("average"),
                               "average or floor are mandatory in a libvirt <inbound>/<outbound>; "
                               "remove the element for no limit")
        directions[key], more = direction_from_units(
            lambda attr, where=where: f"{where}.{attr}", outbound=tag == "outbound", **values)
        notes += more
    return NetworkQos(ingress=directions["ingress"], egress=directions["egress"]), notes


def bandwidth_element(qos: NetworkQos | None, fmt: str = FORMAT) -> ET.Element | None:
    """A `<bandwidth>` element for a network QoS, or None when it sets nothing."""
    inbound, outbound = network_to_units(fmt, qos, inbound_floor_ok=True)
    if inbound == NO_UNITS and outbound == NO_UNITS:
        return None
    element = ET.Element("bandwidth")
    for tag, units in (("inbound", inbound), ("outbound", outbound)):
        if units != NO_UNITS:
            attrs = {attr: str(value) for attr, value in zip(BANDWIDTH_ATTRS, units) if value}
            ET.SubElement(element, tag, attrs)
    return element


# --------------------------------------------------------------------------------------------
# iotune and cputune
# --------------------------------------------------------------------------------------------


def _text(element: Any) -> str:
    return (element.text or "").strip()


def _children(element: Any, valid: Iterable[str], where: str) -> dict[str, Any]:
    valid = tuple(valid)
    found: dict[str, Any] = {}
    for child in element:
        if child.tag in found:
            raise ConflictError(f"{where}: more than one <{child.tag}>; keep one")
        if child.tag in valid:
            found[child.tag] = child
    return found


def read_iotune(element: Any, prefix: str = "") -> DiskQos:
    """An `<iotune>` element as DiskQos; 0 means unset, as in QEMU."""
    where = f"{prefix}iotune"
    for child in element:
        if child.tag not in IOTUNE_KEYS:
            raise InvalidValue(f"{where}.{child.tag}", _text(child),
                               f"not an <iotune> key; use one of {', '.join(IOTUNE_KEYS)}")
    found = _children(element, IOTUNE_KEYS, where)
    values: dict[str, Any] = {}
    for key, child in found.items():
        if key == "group_name":
            values[key] = _text(child) or None
        else:
            values[key] = strict_int(f"{where}.{key}", _text(child)) or None
    return DiskQos(**values)


def iotune_element(disk: DiskQos) -> ET.Element | None:
    items = disk.items()
    if not items:
        return None
    element = ET.Element("iotune")
    for key, value in items.items():
        ET.SubElement(element, key).text = str(value)
    return element


def read_cputune(element: Any) -> CpuQos | None:
    """A `<cputune>` element as CpuQos (other children such as `<vcpupin>` are ignored)."""
    found = _children(element, ("shares", "period", "quota"), "cputune")
    values = {
        key: strict_int(f"cputune.{key}", _text(child), minimum=-(2**63))
        for key, child in found.items()
    }
    names = {key: f"cputune.{key}" for key in ("shares", "period", "quota")}
    for key in ("shares", "period"):
        if values.get(key, 0) < 0:
            raise InvalidValue(names[key], values[key], "must not be negative")
    return cpu_from_values(names, values.get("shares"), values.get("period"), values.get("quota"))


def cputune_element(cpu: CpuQos | None) -> ET.Element | None:
    if cpu is None or cpu.is_empty:
        return None
    element = ET.Element("cputune")
    for tag, value in (("shares", cpu.shares), ("period", cpu.period_us), ("quota", cpu.quota_us)):
        if value is not None:
            ET.SubElement(element, tag).text = str(value)
    return element


# --------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------


def _parse(text: str) -> Any:
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
    notes: list[Note] = []
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
        elif element.tag == "name":
            name = _text(element) or None
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
