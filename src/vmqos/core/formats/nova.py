"""Nova flavor extra specs: the `quota:*` keys of the libvirt driver (qos-semantics.md §2).

Accepted input shapes:

* a JSON object of extra specs, `{"quota:cpu_shares": "512", ...}` (values strings or integers),
  optionally wrapped as the Nova API returns it, `{"extra_specs": {...}}` or
  `{"flavor": {"name": ..., "extra_specs": {...}}}` (the name becomes the document's name);
  `openstack flavor show -f json` (`{"name": ..., "properties": {...}}`) is read as well;
* `key=value` lines, blank lines and `#` comments ignored;
* the `properties` cell of `openstack flavor show`:
  `quota:cpu_shares='512', quota:disk_read_bytes_sec='1000000'`.

Units are libvirt's: `vif_*_average`/`_peak` in kB/s (8000 bit/s), `vif_*_burst` in KiB
(1024 bytes); disk keys in bytes/s and IOPS; CPU period and quota in microseconds. 0 means
unset. Keys outside the `quota:` namespace are ignored; the VMware driver's `quota:` keys are
ignored with an info note; any other `quota:` key is an error.
"""

from __future__ import annotations

import json
import re
from typing import Any

from vmqos.core.errors import ConflictError, FormatError, InvalidValue, UnsupportedError, shown
from vmqos.core.formats._common import check_size, load_json, strict_int
from vmqos.core.formats.libvirt_units import (
    UINT_MAX,
    cpu_from_values,
    direction_from_units,
    libvirt_uint,
    network_to_units,
    shares_notes,
)
from vmqos.core.model import DiskQos, NetworkQos, Note, QosDocument
from vmqos.core.units import ASCII_WHITESPACE

FORMAT = "nova"
PREFIX = "quota:"
CPU_KEYS = ("cpu_shares", "cpu_period", "cpu_quota")
# The image-backed disk keys, named as DiskQos fields after `quota:disk_`.
DISK_BASE_KEYS = tuple(f"{scope}_{kind}_sec" for scope in ("read", "write", "total") for kind in ("bytes", "iops"))
VIF_ATTRS = ("average", "peak", "burst")
VIF_KEYS = tuple(f"vif_{way}_{attr}" for way in ("inbound", "outbound") for attr in VIF_ATTRS)
# Every quota: key the Nova libvirt driver applies, without the prefix.
LIBVIRT_KEYS: tuple[str, ...] = CPU_KEYS + tuple(f"disk_{key}" for key in DISK_BASE_KEYS) + VIF_KEYS
# Validated by the Nova API but applied by the VMware driver only.
VMWARE_KEYS: tuple[str, ...] = tuple(
    f"{res}_{kind}" for res in ("cpu", "memory", "disk_io", "vif")
    for kind in ("limit", "reservation", "shares_level", "shares_share")
)
_VIF_FIX = (f"an unsigned integer from 0 to {UINT_MAX} as libvirt takes it: average and peak in kB/s "
            "(1 kB = 1000 bytes), burst in KiB; 0 means unset")
_CPU_NAMES = {"shares": "quota:cpu_shares", "period": "quota:cpu_period", "quota": "quota:cpu_quota"}
# `key='value'` pairs of `openstack flavor show`, separated by commas.
_PROPERTY = re.compile(r"""\s*([^=,\s]+)\s*=\s*(?:'([^']*)'|"([^"]*)")\s*(?:,|$)""")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _from_json(text: str) -> tuple[str | None, dict[str, Any]]:
    data = load_json(FORMAT, text)
    if not isinstance(data, dict):
        raise FormatError(FORMAT, "expected a JSON object of extra specs")
    name = None
    if isinstance(data.get("flavor"), dict):
        data = data["flavor"]
        name = data.get("name")
    for wrapper in ("extra_specs", "properties"):
        if wrapper in data:
            name = data.get("name")
            specs = data[wrapper]
            if isinstance(specs, str):  # `openstack flavor show -f json` of older clients
                return name, _from_lines(specs)
            if not isinstance(specs, dict):
                raise FormatError(FORMAT, f"{wrapper!r} must be an object of extra specs")
            return name, specs
    return name, data


def _from_lines(text: str) -> dict[str, Any]:
    specs: dict[str, Any] = {}
    # Lines end at ASCII line ends only: str.splitlines() also splits at \x1c-\x1e, \x85 and \u2028.
    for number, raw in enumerate(re.split(r"\r\n|[\r\n]", text), start=1):
        line = raw.strip(ASCII_WHITESPACE)
        if not line or line.startswith("#"):
            continue
        if re.search(r"""=\s*['"]""", line):
            pairs = _properties(line, number)
        elif "=" in line:
            key, _, value = line.partition("=")
            pairs = [(key.strip(ASCII_WHITESPACE), value.strip(ASCII_WHITESPACE))]
        else:
            raise FormatError(FORMAT, f"expected key=value, got {shown(line)}", line=number)
        for key, value in pairs:
            if key in specs and specs[key] != value:
                raise ConflictError(f"nova: {key} is given twice ({shown(specs[key])} and {shown(value)}); keep one")
            specs[key] = value
    return specs


def _properties(line: str, number: int) -> list[tuple[str, str]]:
    pairs, position = [], 0
    while position < len(line):
        match = _PROPERTY.match(line, position)
        if not match:
            raise FormatError(FORMAT, f"expected key='value', ... at {shown(line[position:])}", line=number)
        value = match.group(2) if match.group(2) is not None else match.group(3)
        pairs.append((match.group(1), value))
        position = match.end()
    return pairs


def _unknown(key: str, value: Any) -> InvalidValue:
    valid = ", ".join(PREFIX + k for k in LIBVIRT_KEYS)
    return InvalidValue(key, value, f"not a Nova quota key; the libvirt driver accepts {valid}")


def _network(values: dict[str, int]) -> tuple[NetworkQos | None, list[Note]]:
    notes: list[Note] = []
    directions = {}
    for way in ("inbound", "outbound"):
        units = {attr: values.get(f"vif_{way}_{attr}", 0) for attr in VIF_ATTRS}
        if not units["average"] and (units["peak"] or units["burst"]):
            ignored = [f"{PREFIX}vif_{way}_{attr}" for attr in ("peak", "burst") if units[attr]]
            notes.append(Note(
                ", ".join(ignored),
                f"ignored: Nova writes <{way}> only when {PREFIX}vif_{way}_average is set"))
            units = {"average": 0}
        def key(attr: str, way: str = way) -> str:
            return f"{PREFIX}vif_{way}_{attr}"

        directions[way], more = direction_from_units(key, outbound=way == "outbound", **units)
        notes += more
    qos = NetworkQos(ingress=directions["inbound"], egress=directions["outbound"])
    return (None if qos.is_empty else qos), notes


def _value(key: str, value: Any) -> int:
    field = PREFIX + key
    if key == "cpu_quota":  # no minimum: negative means no cap
        return strict_int(field, value, minimum=-(2**63))
    if key.startswith("vif_"):
        return libvirt_uint(field, value, _VIF_FIX)
    return strict_int(field, value)


def read(text: str, **options: Any) -> QosDocument:
    """Flavor extra specs in any of the shapes of the module docstring as a QosDocument."""
    check_size(FORMAT, text)
    stripped = text.strip(ASCII_WHITESPACE)
    name, specs = _from_json(stripped) if stripped.startswith(("{", "[")) else (None, _from_lines(stripped))
    values: dict[str, int] = {}
    notes: list[Note] = []
    for key, raw in specs.items():
        if not isinstance(key, str) or not key.startswith(PREFIX):
            continue
        short = key[len(PREFIX):]
        if short in VMWARE_KEYS:
            notes.append(Note(key, "ignored: VMware driver only; the libvirt driver does not apply it", "info"))
        elif short in LIBVIRT_KEYS:
            values[short] = _value(short, raw)
        else:
            raise _unknown(key, raw)
    cpu = cpu_from_values(_CPU_NAMES, values.get("cpu_shares"), values.get("cpu_period"), values.get("cpu_quota"))
    disk = DiskQos.from_items({key: values.get(f"disk_{key}") or None for key in DISK_BASE_KEYS})
    network, more = _network(values)
    more += shares_notes(_CPU_NAMES["shares"], cpu)
    return QosDocument(
        name=name if isinstance(name, str) and name else None,
        network=network, cpu=cpu, disk=None if disk.is_empty else disk, notes=tuple(notes + more),
    )


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _disk_specs(disk: DiskQos | None) -> dict[str, int]:
    if disk is None:
        return {}
    specs: dict[str, int] = {}
    for key, value in disk.items().items():
        if key in DISK_BASE_KEYS:
            specs[f"{PREFIX}disk_{key}"] = int(value)
        elif key.endswith("_max") or key == "size_iops_sec":
            raise UnsupportedError(
                f"nova: disk.{key}: the quota:disk_* extra specs have no burst ceiling or I/O size; "
                "use the cinder format (front-end QoS specs) or the libvirt format")
        else:
            raise UnsupportedError(
                f"nova: disk.{key}: Nova has no burst length or throttle group; use the libvirt format")
    return specs


def _network_specs(qos: NetworkQos | None) -> dict[str, int]:
    specs: dict[str, int] = {}
    for way, units in zip(("inbound", "outbound"), network_to_units(FORMAT, qos, inbound_floor_ok=False)):
        for attr, value in zip(VIF_ATTRS, units):
            if value:
                specs[f"{PREFIX}vif_{way}_{attr}"] = value
    return specs


def specs(doc: QosDocument) -> dict[str, int]:
    """The `quota:*` extra specs of a document, or UnsupportedError for what Nova cannot state."""
    result = _network_specs(doc.single_network(FORMAT))
    result.update(_disk_specs(doc.single_disk(FORMAT)))
    if doc.cpu is not None:
        for key, value in zip(CPU_KEYS, (doc.cpu.shares, doc.cpu.period_us, doc.cpu.quota_us)):
            if value is not None:
                result[PREFIX + key] = value
    return dict(sorted(result.items()))


def write(doc: QosDocument, **options: Any) -> str:
    """Sorted `key=value` lines of the keys that are set; `json=True` gives a JSON object of strings.

    Rates that are not whole kB/s and bursts that are not whole KiB cannot be stated exactly:
    they are rounded to the nearest unit (at least 1) without an error, because write() cannot
    return notes. Per-interface or per-disk differences, packet rates, DSCP, minimum bandwidth,
    traffic classes, disk bursts (`*_max`, `*_max_length`), `size_iops_sec` and `group_name`
    raise UnsupportedError naming the field and the format that can state it.
    """
    result = specs(doc)
    if options.get("json"):
        return json.dumps({key: str(value) for key, value in result.items()}, indent=2) + "\n"
    return "".join(f"{key}={value}\n" for key, value in result.items())

