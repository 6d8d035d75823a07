"""Cinder QoS specs, with the volume size that capacity-based (per-GB) keys need.

Input: `{"qos_specs": {"name": ..., "consumer": ..., "specs": {...}}, "volume": {"size": 10}}`,
or the qos_specs object alone with the size given as `read(text, size_gb=N)` (the option wins
over the file). What reaches the hypervisor is exactly what Cinder's `_parse_connection_options`
computes and Nova's libvirt volume driver passes on (qos-semantics.md §4):

* only consumer `front-end` or `both` is handed to Nova; `back-end` (Cinder's default) never
  reaches the host;
* per-GB keys become absolute: `min(max(*_per_gb_min, *_per_gb * size), *_max)` - so with a
  per-GB key present `*_max` is an upper cap, while without one it is a burst ceiling;
* Nova keeps only the 13 keys of DISK_FRONTEND_KEYS; `*_max_length`, `group_name` and any
  other key are dropped.

A value of 0 means "no limit" to libvirt and QEMU, so it is left out of the model.
"""

from __future__ import annotations

import json
from typing import Any

from vmqos.core.errors import FormatError, InvalidValue, UnsupportedError
from vmqos.core.formats._common import load_json, strict_int
from vmqos.core.model.disk import DISK_FRONTEND_KEYS, DISK_LENGTH_KEYS, THROTTLE_VALUE_MAX, DiskQos
from vmqos.core.model.document import Note, QosDocument

FMT = "cinder"

CONSUMERS = ("front-end", "back-end", "both")
DEFAULT_CONSUMER = "back-end"
# The options in the order Cinder's manager._parse_connection_options walks them.
PER_GB_OPTIONS: tuple[str, ...] = ("read_iops_sec", "read_bytes_sec", "write_iops_sec", "write_bytes_sec",
                                   "total_iops_sec", "total_bytes_sec")
PER_GB_KEYS: tuple[str, ...] = tuple(f"{o}_per_gb" for o in PER_GB_OPTIONS)
PER_GB_MIN_KEYS: tuple[str, ...] = tuple(f"{o}_per_gb_min" for o in PER_GB_OPTIONS)
FRONTEND_INPUT_KEYS: frozenset[str] = frozenset(DISK_FRONTEND_KEYS + PER_GB_KEYS + PER_GB_MIN_KEYS)


# --------------------------------------------------------------------------------------------- read


def read(text: str, **options: Any) -> QosDocument:
    """A Cinder QoS spec (JSON) as a document; `size_gb=N` gives or overrides the volume size."""
    obj = load_json(FMT, text)
    if not isinstance(obj, dict):
        raise FormatError(FMT, 'expected {"qos_specs": {"name": ..., "consumer": ..., "specs": {...}}}')
    volume = obj.get("volume")
    spec = obj["qos_specs"] if "qos_specs" in obj else obj
    if not isinstance(spec, dict):
        raise FormatError(FMT, "qos_specs must be an object with name, consumer and specs")
    specs = spec.get("specs", spec.get("properties"))  # `openstack volume qos show -f json` says properties
    if specs is None:
        raise FormatError(FMT, 'the QoS spec has no "specs" object; expected {"qos_specs": {"specs": {...}}}')
    if not isinstance(specs, dict):
        raise FormatError(FMT, f"qos_specs.specs must be an object of key/value pairs, not {type(specs).__name__}")

    name = spec.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidValue("qos_specs.name", name, "a QoS spec name is a string")
    consumer = spec.get("consumer") or DEFAULT_CONSUMER
    if not isinstance(consumer, str) or consumer not in CONSUMERS:  # Cinder matches exactly, as here
        raise InvalidValue("qos_specs.consumer", consumer,
                           f"use front-end, back-end or both, in lower case as Cinder takes them; Cinder's default "
                           f"is {DEFAULT_CONSUMER}")
    size = _size(volume, options.get("size_gb"))

    if consumer == "back-end":
        note = Note("qos_specs.consumer",
                    "consumer back-end: these specs are for the storage back end and are never applied on the host "
                    "(Cinder hands only front-end and both specs to Nova); set consumer to front-end or both")
        return QosDocument(name=name or None, disk=None, notes=(note,))

    disk, notes = compute_frontend(specs, size)
    if consumer == "both":
        notes += (Note("qos_specs.consumer",
                       "consumer both: these limits are applied on the host, and the storage back end also receives "
                       "the specs and may enforce its own limits on top", "info"),)
    return QosDocument(name=name or None, disk=disk, notes=notes)


def _size(volume: Any, option: Any) -> int | None:
    if option is not None:
        return strict_int("size_gb", option, minimum=1)
    if volume is None:
        return None
    if not isinstance(volume, dict):
        raise FormatError(FMT, 'volume must be an object such as {"size": 10}')
    raw = volume.get("size")
    return None if raw is None else strict_int("volume.size", raw, minimum=1)


def compute_frontend(specs: dict[str, Any], size_gb: int | None) -> tuple[DiskQos, tuple[Note, ...]]:
    """The DiskQos that front-end `specs` put on a volume of `size_gb` GiB, exactly as Cinder and Nova do.

    Raises InvalidValue when a per-GB key needs a size that was not given, or a value is not an
    integer; the DiskQos itself raises on combinations libvirt refuses (total with read/write).
    """
    notes: list[Note] = []
    work: dict[str, Any] = {}
    for key, value in specs.items():
        if key in FRONTEND_INPUT_KEYS:
            work[key] = strict_int(key, value, minimum=0)
        else:
            notes.append(_dropped(key))

    for option in PER_GB_OPTIONS:
        per_gb_key = f"{option}_per_gb"
        if per_gb_key not in work:
            continue
        if size_gb is None:
            raise InvalidValue(
                per_gb_key, work[per_gb_key],
                "a capacity-based (per-GB) key needs the volume size: add \"volume\": {\"size\": N} to the file "
                "or give the size in GiB (size_gb, or --size of `vmqos convert`)")
        size = strict_int("size_gb", size_gb, minimum=1)
        if option in work:
            notes.append(Note(option, f"{option} ({work[option]}) is replaced by the value Cinder computes from "
                                      f"{per_gb_key}; remove one of them"))
        minimum = work.pop(f"{option}_per_gb_min", 0)
        value = work[per_gb_key] * size
        per_gb = max(minimum, value)
        if f"{option}_max" in work:
            cap = work.pop(f"{option}_max")
            notes.append(Note(
                f"{option}_max",
                f"with {per_gb_key} set, Cinder consumes {option}_max ({cap}) as an upper cap on the computed "
                f"{option} (min({per_gb}, {cap}) = {min(per_gb, cap)}), not as a burst ceiling: the disk gets no "
                f"{option}_max burst. Without a per-GB key the same key would be a burst ceiling",
                "info",
            ))
        else:
            cap = per_gb
        work[option] = min(per_gb, cap)
        if work[option] > THROTTLE_VALUE_MAX:  # Cinder multiplies without a bound; QEMU refuses the result
            raise InvalidValue(per_gb_key, work[per_gb_key],
                               f"x {size} GiB gives {option} {work[option]}, above QEMU's maximum of "
                               f"{THROTTLE_VALUE_MAX} (10^15); lower {per_gb_key} or cap it with {option}_max")
        work.pop(per_gb_key)
        if work[option] == 0:
            notes.append(Note(option, f"the computed {option} is 0 for a {size} GiB volume, which libvirt and "
                                      "QEMU read as no limit"))

    for key in PER_GB_MIN_KEYS:
        if key in work:
            work.pop(key)
            notes.append(Note(key, f"ignored: without {key[: -len('_min')]} Cinder leaves {key} alone and Nova "
                                   "drops it"))

    disk = DiskQos.from_items({k: v for k, v in work.items() if v})
    disk.check_qemu("qos_specs.specs")
    return disk, tuple(notes)


def _dropped(key: str) -> Note:
    if key in DISK_LENGTH_KEYS or key == "group_name":
        why = ("libvirt supports it, but Nova passes only the 13 front-end keys to libvirt and drops it; "
               "set it with virsh blkdeviotune or vmqos's own format")
    else:
        why = ("not a front-end key: Nova passes only the 13 front-end keys "
               f"({', '.join(DISK_FRONTEND_KEYS)}) to libvirt and drops the rest")
    return Note(key, f"dropped: {why}")


# -------------------------------------------------------------------------------------------- write


def write(doc: QosDocument, **options: Any) -> str:
    """The document's disk QoS as a front-end Cinder QoS spec with absolute keys (values as strings)."""
    disk = doc.single_disk(FMT)
    if (doc.network is not None and not doc.network.is_empty) or any(not q.is_empty for q in doc.interfaces.values()):
        raise UnsupportedError("cinder: a Cinder QoS spec has no network limits; use neutron, nova or libvirt")
    if doc.cpu is not None and not doc.cpu.is_empty:
        raise UnsupportedError("cinder: a Cinder QoS spec has no CPU limits; use nova or libvirt")
    items = (disk or DiskQos()).items()
    for key in items:
        if key not in DISK_FRONTEND_KEYS:
            raise UnsupportedError(
                f"cinder: {key}: Cinder front-end specs cannot express it (Nova does not pass it to libvirt); "
                "use libvirt <iotune> or vmqos's own format")
    name = options.get("name") or doc.name or "vmqos"
    obj = {"qos_specs": {"name": name, "consumer": "front-end", "specs": {k: str(v) for k, v in items.items()}}}
    return json.dumps(obj, indent=2) + "\n"


__all__ = ["CONSUMERS", "compute_frontend", "read", "write"]
