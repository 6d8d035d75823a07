"""libvirt's `<bandwidth>`, `<iotune>` and `<cputune>` elements, read and built one at a time.

`inbound` is traffic towards the instance (vmqos `ingress`), `outbound` traffic sent by it
(`egress`). The libvirt format puts these elements alone, in a wrapper, or inside a `<domain>`;
the elements themselves do not care where they sit, so they live apart from the documents.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any

from vmqos.core.errors import ConflictError, InvalidValue
from vmqos.core.formats._common import strict_int
from vmqos.core.formats.libvirt_units import (
    BANDWIDTH_ATTRS,
    NO_UNITS,
    cpu_from_values,
    direction_from_units,
    libvirt_uint,
    network_to_units,
)
from vmqos.core.model import CpuQos, DirectionQos, DiskQos, NetworkQos, Note
from vmqos.core.model.disk import DISK_FIELDS

FORMAT = "libvirt"
IOTUNE_KEYS = DISK_FIELDS
CPUTUNE_KEYS = ("shares", "period", "quota")


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
            if "average" not in child.attrib and ("floor" not in child.attrib or len(child.attrib) > 1):
                raise InvalidValue(f"{where}.average", child.get("average"),
                                   "average or floor are mandatory in a libvirt <inbound>/<outbound>; "
                                   "remove the element for no limit")
            directions[key] = DirectionQos()
            notes.append(_no_limit(where, [attr for attr in ("peak", "burst") if values[attr]]))
            continue
        def name(attr: str, where: str = where) -> str:
            return f"{where}.{attr}"

        directions[key], more = direction_from_units(name, outbound=tag == "outbound", **values)
        notes += more
    return NetworkQos(ingress=directions["ingress"], egress=directions["egress"]), notes


def _no_limit(where: str, ignored: list[str]) -> Note:
    """libvirt takes average='0' (and no floor) as no limit: it installs nothing and its own XML
    drops the element; Nova writes exactly this for quota:vif_*_average=0."""
    also = f"; {' and '.join(ignored)} ignored with it" if ignored else ""
    return Note(where, f"average 0 and no floor: no limit in this direction, as libvirt reads it (it installs "
                       f"nothing and drops the element){also}", "info")


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


def text_of(element: Any) -> str:
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
            raise InvalidValue(f"{where}.{child.tag}", text_of(child),
                               f"not an <iotune> key; use one of {', '.join(IOTUNE_KEYS)}")
    found = _children(element, IOTUNE_KEYS, where)
    values: dict[str, Any] = {}
    for key, child in found.items():
        if key == "group_name":
            values[key] = text_of(child) or None
        else:
            values[key] = strict_int(f"{where}.{key}", text_of(child)) or None
    return DiskQos.from_items(values)


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
    found = _children(element, CPUTUNE_KEYS, "cputune")
    values = {
        key: strict_int(f"cputune.{key}", text_of(child), minimum=-(2**63))
        for key, child in found.items()
    }
    names = {key: f"cputune.{key}" for key in CPUTUNE_KEYS}
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
