"""CPU and disk QoS of instances (pure): edits of the desired state and the effective values.

* CPU: the flavor's values, each replaced by the instance's own value when it has one
  (`vmqos instance set --cpu-shares ...`). A weight and a quota are set, not combined.
* Disks: a disk of the instance's own (a lab instance's host block device, a VM's image disk)
  gets the flavor's disk QoS, as Nova's `quota:disk_*` keys apply to image-backed disks; a
  volume's disk gets its volume type's front-end specs, computed per GB exactly as Cinder does
  for the volume's current size; on either, a key the instance sets replaces that key (and a
  read/write key replaces a total of the same kind, and the other way round, since the two
  cannot be combined).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from vmqos.core.errors import InvalidValue, NotFound
from vmqos.core.formats import cinder
from vmqos.core.model.cpu import CPU_FIELDS, CpuQos
from vmqos.core.model.disk import DISK_FIELDS as DISK_OPTION_KEYS
from vmqos.core.model.disk import DiskQos
from vmqos.core.model.document import Note
from vmqos.core.model.host import HostState, InstanceSpec, PortSpec
from vmqos.core.model.volume import DEFAULT_CONSUMER, Volume, VolumeType
from vmqos.core.plan.cgroup_values import check_cgroup_disk, unsupported_keys
from vmqos.core.units import parse_size

INSTANCE = "instance"


def parse_disk_option(text: str) -> tuple[str, dict[str, int | str]]:
    """`DEV:key=value,key=value` -> (DEV, {key: value}); DEV may be 7:0. A value 0 clears the key.

    Byte rates accept tc sizes (a bare number is bytes, 1mb = 1 MiB = 1048576), IOPS plain integers.
    """
    eq = text.find("=")
    colon = text.rfind(":", 0, eq if eq >= 0 else len(text))
    if colon <= 0:
        raise InvalidValue("--disk", text, "expected DEV:key=value[,key=value...], e.g. "
                                           "loop0:read_bytes_sec=1048576,write_iops_sec=100")
    dev, rest = text[:colon], text[colon + 1:]
    items: dict[str, int | str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in DISK_OPTION_KEYS:
            raise InvalidValue(f"--disk {dev}", part, f"use key=value with a key of {', '.join(DISK_OPTION_KEYS)}")
        if key in items:
            raise InvalidValue(f"--disk {dev}", part, f"{key} is given twice; keep one")
        value = value.strip()
        if key == "group_name":
            items[key] = value
        elif "_bytes_sec" in key and not key.endswith("_length"):
            items[key] = parse_size(value)
        else:
            if not value.isdigit():
                raise InvalidValue(f"--disk {dev}.{key}", value, "expected a whole number (0 clears it)")
            items[key] = int(value)
    return dev, items


@dataclass(frozen=True)
class InstanceChange:
    """What `instance set` / `vm set` changes: None keeps a value, 0 clears it (back to the flavor's)."""

    cpu_shares: int | None = None
    cpu_period_us: int | None = None
    cpu_quota_us: int | None = None
    disks: dict[str, dict[str, int | str]] = field(default_factory=dict)
    remove_disks: tuple[str, ...] = ()

    @property
    def touches_cpu(self) -> bool:
        return any(v is not None for v in (self.cpu_shares, self.cpu_period_us, self.cpu_quota_us))


def changed_instance(state: HostState, name: str, change: InstanceChange) -> tuple[HostState, InstanceSpec]:
    """`state` with the instance's own CPU and disk values changed (the instance is added if unknown)."""
    inst = state.instances.get(name) or InstanceSpec(name)
    cpu = inst.cpu or CpuQos()
    if change.touches_cpu:
        values = {f: getattr(cpu, f) for f in CPU_FIELDS}
        for f, new in (("shares", change.cpu_shares), ("period_us", change.cpu_period_us),
                       ("quota_us", change.cpu_quota_us)):
            if new is not None:
                values[f] = new or None
        cpu = CpuQos(**values)
    disks = dict(inst.disks)
    for dev in change.remove_disks:
        if dev not in disks:
            raise NotFound(f"instance {name} has no disk {dev} of its own (known: {', '.join(disks) or 'none'})")
        del disks[dev]
    for dev, items in change.disks.items():
        values = {k: v for k, v in (disks.get(dev) or DiskQos()).items().items() if items.get(k, 1) not in (0, "")}
        # a new total replaces the read/write pair of its kind, and the other way round
        values = override_disk(values, {k: v for k, v in items.items() if v not in (0, "")})
        disks[dev] = DiskQos.from_items(values)
    spec = replace(inst, cpu=None if cpu.is_empty else cpu, disks=disks)
    return replace(state, instances={**state.instances, name: spec}), spec


def volume_qos(volume: Volume, vtype: VolumeType | None) -> tuple[DiskQos | None, tuple[Note, ...]]:
    """The disk QoS a volume's type puts on it at its current size, exactly as Cinder computes it."""

    if vtype is None:
        return None, ()
    text = json.dumps({"qos_specs": {"name": vtype.qos_name or vtype.name, "consumer": vtype.consumer,
                                     "specs": vtype.specs}})
    doc = cinder.read(text, size_gb=volume.size_gb)
    notes = tuple(replace(n, field=f"volume {volume.name}: {n.field}") for n in doc.notes)
    return doc.disk, notes


def _family(key: str) -> tuple[str, str]:
    """('total' or 'split', 'bytes' or 'iops') of a disk key."""
    return ("total" if key.startswith("total_") else "split", "bytes" if "_bytes_" in key else "iops")


def override_disk(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """`base` with `own`'s keys on top; a total and a read/write of one kind exclude each other."""
    out = dict(base)
    for key in own:
        if key in ("size_iops_sec", "group_name"):
            continue
        side, kind = _family(key)
        for other in list(out):
            if other not in ("size_iops_sec", "group_name") and _family(other) == (
                    "split" if side == "total" else "total", kind):
                del out[other]
    out.update(own)
    return out


@dataclass(frozen=True)
class EffectiveInstance:
    name: str
    cpu: CpuQos | None
    cpu_sources: dict[str, str]
    disks: dict[str, DiskQos]
    disk_sources: dict[str, dict[str, str]]
    volumes: dict[str, str]  # device -> volume name
    notes: tuple[Note, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "cpu": {f: getattr(self.cpu, f) if self.cpu else None for f in CPU_FIELDS}
            | {"weight": self.cpu.weight if self.cpu else None, "cpus": self.cpu.cpus if self.cpu else None,
               "sources": self.cpu_sources},
            "disks": {dev: {"limits": qos.items(), "sources": self.disk_sources.get(dev, {}),
                            "volume": self.volumes.get(dev)} for dev, qos in self.disks.items()},
            "notes": [n.as_json() for n in self.notes],
        }


def effective_instance(state: HostState, name: str, volumes: dict[str, Volume] | None = None,
                       vtypes: dict[str, VolumeType] | None = None) -> EffectiveInstance:
    inst = state.instances.get(name) or InstanceSpec(name)
    flavor = state.flavors.get(inst.flavor) if inst.flavor else None
    flavor_label = f"flavor {inst.flavor}"
    fcpu = flavor.qos.cpu if flavor else None
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for f in CPU_FIELDS:
        for qos, label in ((inst.cpu, INSTANCE), (fcpu, flavor_label)):
            if qos is not None and getattr(qos, f) is not None:
                values[f], sources[f] = getattr(qos, f), label
                break
    cpu = CpuQos(**values) if values else None

    notes: list[Note] = []
    disks: dict[str, DiskQos] = {}
    disk_sources: dict[str, dict[str, str]] = {}
    attached = {v.device: v for v in (volumes or {}).values() if v.instance == name and v.device}
    for dev in sorted(set(inst.disks) | set(attached)):
        own = inst.disks.get(dev, DiskQos()).items()
        if dev in attached:
            vol = attached[dev]
            vtype = (vtypes or {}).get(vol.type) if vol.type else None
            base_qos, more = volume_qos(vol, vtype)
            notes += more
            label = f"volume {vol.name} (type {vol.type}, {vol.size_gb} GiB)" if vol.type else f"volume {vol.name}"
        else:
            base_qos = (flavor.qos.disks.get(dev) or flavor.qos.disk) if flavor else None
            label = flavor_label
        base = (base_qos or DiskQos()).items()
        merged = override_disk(base, own)
        disks[dev] = DiskQos.from_items(merged)
        disk_sources[dev] = {k: INSTANCE if k in own else label for k in merged}
    return EffectiveInstance(name, cpu, sources, disks, disk_sources,
                             {dev: v.name for dev, v in attached.items()}, tuple(notes))


def check_cgroup_instance(eff: EffectiveInstance) -> None:
    """A lab instance or container: refuse the keys only QEMU enforces, naming where each comes from."""
    for dev, disk in eff.disks.items():
        if unsupported_keys(disk):
            sources = eff.disk_sources.get(dev, {})
            came = sorted({sources[k] for k in unsupported_keys(disk) if k in sources})
            check_cgroup_disk(disk, f"{eff.name} disk {dev} (from {', '.join(came)})")


def volume_type_from_specs(name: str, consumer: str | None, specs: dict[str, str],
                           qos_name: str | None = None) -> VolumeType:

    return VolumeType(name, (consumer or DEFAULT_CONSUMER).strip().lower(), dict(specs), qos_name)


def volume_type_from_cinder(name: str | None, text: str) -> VolumeType:
    """A volume type from a Cinder QoS spec file (`{"qos_specs": {"name", "consumer", "specs"}}`)."""

    cinder.read(text, size_gb=1)  # validates the consumer and every value as Cinder would
    obj = json.loads(text)
    spec = obj.get("qos_specs", obj)
    specs = spec.get("specs", spec.get("properties")) or {}
    qos_name = spec.get("name")
    return volume_type_from_specs(name or qos_name or "", spec.get("consumer"),
                                  {str(k): str(v) for k, v in specs.items()}, qos_name)


def check_volume_type(vtype: VolumeType) -> tuple[Note, ...]:
    """Refuse what Cinder would refuse at attach time; the notes a reader should see."""

    text = json.dumps({"qos_specs": {"name": vtype.name, "consumer": vtype.consumer, "specs": vtype.specs}})
    return cinder.read(text, size_gb=1).notes


def with_domain(state: HostState, info: Any) -> HostState:
    """`state` with the domain as an instance: each tap as a port, each disk (not CD-ROMs) as a disk."""
    inst = state.instances.get(info.name) or InstanceSpec(info.name)
    ports = list(inst.ports)
    known = {p.device for p in ports}
    taken = {p.device for _, p in state.ports()}
    for iface in info.interfaces:
        if iface.target and iface.target not in known:
            if iface.target in taken:
                raise InvalidValue("interface", iface.target, f"is already a port of another instance in the "
                                                              f"host's state; `vmqos port clear {iface.target}` first")
            ports.append(PortSpec(iface.target))
    disks = dict(inst.disks)
    for disk in info.disks:
        if disk.device == "disk":
            disks.setdefault(disk.target, DiskQos())
    return replace(state, instances={**state.instances, info.name: replace(inst, ports=tuple(ports), disks=disks)})
