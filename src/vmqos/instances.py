"""CPU and disk QoS of instances: what the instance, volume, vm and lab commands do.

The pure half computes an instance's effective CPU and disk QoS with the source of every value:

* CPU: the flavor's values, each replaced by the instance's own value when it has one
  (`vmqos instance set --cpu-shares ...`). A weight and a quota are set, not combined.
* Disks: a disk of the instance's own (a lab instance's host block device, a VM's image disk)
  gets the flavor's disk QoS, as Nova's `quota:disk_*` keys apply to image-backed disks; a
  volume's disk gets its volume type's front-end specs, computed per GB exactly as Cinder does
  for the volume's current size; on either, a key the instance sets replaces that key (and a
  read/write key replaces a total of the same kind, and the other way round, since the two
  cannot be combined).

The I/O half writes the result into the instance's cgroups (lab instances) or through libvirt
(VMs, `vmqos.drivers.libvirt_driver`), reads it back and keeps the desired state in the store.
A lab instance LAB-vmN lives in scope LAB-host, the namespace that owns its port, under the name
vmN, so a host file's `instances: {vm1: ...}` and `instance set vm1 --lab LAB` are the same object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from vmqos.cgroupvalues import CGROUP_DISK_KEYS, check_cgroup_disk, devno_text, unsupported_keys
from vmqos.errors import InvalidValue, NotFound
from vmqos.model.cpu import CpuQos
from vmqos.model.disk import DISK_KEYS, DiskQos
from vmqos.model.document import Note
from vmqos.model.host import HostState, InstanceSpec
from vmqos.model.volume import Volume, VolumeType
from vmqos.units import parse_size

CPU_FIELDS = ("shares", "period_us", "quota_us")
DISK_OPTION_KEYS = DISK_KEYS + ("group_name",)
INSTANCE = "instance"


# ------------------------------------------------------------------------------------ parsing (pure)


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
        disks[dev] = DiskQos(**values)  # type: ignore[arg-type]
    spec = replace(inst, cpu=None if cpu.is_empty else cpu, disks=disks)
    return replace(state, instances={**state.instances, name: spec}), spec


# ---------------------------------------------------------------------------------- effective (pure)


def volume_qos(volume: Volume, vtype: VolumeType | None) -> tuple[DiskQos | None, tuple[Note, ...]]:
    """The disk QoS a volume's type puts on it at its current size, exactly as Cinder computes it."""
    from vmqos.formats import cinder

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
            "notes": [{"level": n.level, "field": n.field, "message": n.message} for n in self.notes],
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
        disks[dev] = DiskQos(**merged)  # type: ignore[arg-type]
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


# -------------------------------------------------------------------------------- lab instances (I/O)


def lab_scope(lab: str) -> str:
    from vmqos.lab.topology import Lab

    return Lab(lab).host_ns


def lab_group(lab: str, inst: str):  # type: ignore[no-untyped-def]
    """The cgroup of a lab instance: vmqos/LAB-vmN in each hierarchy."""
    from vmqos.drivers.cgroup import PARENT, Group, host_layout
    from vmqos.lab.topology import Lab, instance_index

    netns = Lab(lab).instance(instance_index(inst)).netns
    return Group(host_layout(), f"{PARENT}/{netns}")


@dataclass
class InstanceReport:
    instance: str
    writes: int
    effective: EffectiveInstance
    live: bool
    stored: bool
    notes: list[Note] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"instance": self.instance, "writes": self.writes, "live": self.live, "stored": self.stored,
                "effective": self.effective.as_json()}


def _lab_apply(group: Any, eff: EffectiveInstance, lab: str) -> int:
    from vmqos.drivers.cgroup import block_device

    if not group.exists():
        raise NotFound(f"lab {lab} has no cgroup for {eff.name} ({group.path}): `vmqos lab up --name {lab}` "
                       "creates it")
    check_cgroup_instance(eff)
    devnos = {}
    for dev, disk in eff.disks.items():
        devno = block_device(dev)
        if devno in devnos:
            raise InvalidValue("disk", dev, f"names the same device {devno_text(devno)} as another disk of "
                                            f"{eff.name}")
        devnos[devno] = DiskQos(**{k: v for k, v in disk.items().items() if k in CGROUP_DISK_KEYS})
    return group.apply(eff.cpu or CpuQos(), devnos)


def instance_set(store: Any, lab: str, inst: str, change: InstanceChange, *, live: bool = True,
                 config: bool = True) -> InstanceReport:
    """Change a lab instance's own CPU and disk values: in its cgroups (live), in the store (config)."""
    if not live and not config:
        raise InvalidValue("--live/--config", "neither", "give --live, --config or neither (both)")
    scope = lab_scope(lab)
    group = lab_group(lab, inst)  # validates the instance's name before anything is read or stored
    state = store.load(scope)
    new_state, _ = changed_instance(state, inst, change)
    eff = effective_instance(new_state, inst, store.volumes(scope), store.volume_types(scope))
    check_cgroup_instance(eff)
    writes = _lab_apply(group, eff, lab) if live else 0
    if config:
        store.save(scope, new_state, actor="instance set", summary=f"instance {inst}")
    return InstanceReport(inst, writes, eff, live, config, list(eff.notes))


def instance_apply(store: Any, lab: str, inst: str) -> InstanceReport:
    """Make a lab instance's cgroups match its stored desired state (after a volume change, a flavor)."""
    scope = lab_scope(lab)
    state = store.load(scope)
    eff = effective_instance(state, inst, store.volumes(scope), store.volume_types(scope))
    return InstanceReport(inst, _lab_apply(lab_group(lab, inst), eff, lab), eff, True, False, list(eff.notes))


def instance_show(store: Any, lab: str, inst: str) -> dict[str, Any]:
    """Desired values with their sources, what the cgroups hold, and what the instance used."""
    from vmqos.drivers.cgroup import device_name

    scope = lab_scope(lab)
    state = store.load(scope)
    eff = effective_instance(state, inst, store.volumes(scope), store.volume_types(scope))
    group = lab_group(lab, inst)
    if not group.exists():
        raise NotFound(f"lab {lab} has no cgroup for {inst} ({group.path}): `vmqos lab up --name {lab}` creates it")
    cpu = group.read_cpu()
    disks = {device_name(devno): qos.items() for devno, qos in group.read_disks().items()}
    usage = group.usage()
    wanted_disks = {}
    for dev, disk in eff.disks.items():
        try:
            from vmqos.drivers.cgroup import block_device

            wanted_disks[device_name(block_device(dev))] = {k: v for k, v in disk.items().items()
                                                            if k in CGROUP_DISK_KEYS}
        except (NotFound, InvalidValue):
            wanted_disks[dev] = disk.items()
    from vmqos.cgroupvalues import cpu_files, parse_cpu

    wanted_cpu = parse_cpu(cpu_files(eff.cpu or CpuQos(), cpu.version), cpu.version)
    in_sync = cpu == wanted_cpu and disks == {d: v for d, v in wanted_disks.items() if v}
    return {
        "instance": inst, "lab": lab, "scope": scope, "cgroups": group.describe(),
        "layout": group.layout.describe(), "pids": sorted(group.procs()),
        "desired": eff.as_json(),
        "kernel": {"cpu": cpu.as_json(), "disks": disks, "in_sync": in_sync},
        "usage": usage.as_json() | {"io": {device_name(d): v for d, v in usage.io.items()}},
        "volumes": [v.name for v in store.volumes(scope).values() if v.instance == inst],
    }


# ----------------------------------------------------------------------------------- volumes (I/O)


def volume_type_from_specs(name: str, consumer: str | None, specs: dict[str, str],
                           qos_name: str | None = None) -> VolumeType:
    from vmqos.model.volume import DEFAULT_CONSUMER

    return VolumeType(name, (consumer or DEFAULT_CONSUMER).strip().lower(), dict(specs), qos_name)


def volume_type_from_cinder(name: str | None, text: str) -> VolumeType:
    """A volume type from a Cinder QoS spec file (`{"qos_specs": {"name", "consumer", "specs"}}`)."""
    from vmqos.formats import cinder

    cinder.read(text, size_gb=1)  # validates the consumer and every value as Cinder would
    obj = json.loads(text)
    spec = obj.get("qos_specs", obj)
    specs = spec.get("specs", spec.get("properties")) or {}
    qos_name = spec.get("name")
    return volume_type_from_specs(name or qos_name or "", spec.get("consumer"),
                                  {str(k): str(v) for k, v in specs.items()}, qos_name)


def check_volume_type(vtype: VolumeType) -> tuple[Note, ...]:
    """Refuse what Cinder would refuse at attach time; the notes a reader should see."""
    from vmqos.formats import cinder

    text = json.dumps({"qos_specs": {"name": vtype.name, "consumer": vtype.consumer, "specs": vtype.specs}})
    return cinder.read(text, size_gb=1).notes


def describe_volume(volume: Volume, vtype: VolumeType | None) -> dict[str, Any]:
    qos, notes = volume_qos(volume, vtype)
    return {"name": volume.name, "type": volume.type, "size_gb": volume.size_gb, "instance": volume.instance,
            "device": volume.device, "consumer": vtype.consumer if vtype else None,
            "specs": vtype.specs if vtype else {},
            "applied_on_host": (qos or DiskQos()).items(),
            "notes": [{"level": n.level, "field": n.field, "message": n.message} for n in notes]}


def describe_volume_type(vtype: VolumeType) -> dict[str, Any]:
    return {"name": vtype.name, "consumer": vtype.consumer, "specs": vtype.specs, "qos_name": vtype.qos_name,
            "applied_on_host": vtype.consumer in ("front-end", "both"),
            "notes": [{"level": n.level, "field": n.field, "message": n.message} for n in check_volume_type(vtype)]}


class VolumeTarget:
    """Where an attached volume's limits go: a lab instance's cgroups, or a libvirt domain."""

    def __init__(self, store: Any, scope: str, lab: str | None = None, connect: str | None = None) -> None:
        self.store, self.scope, self.lab, self.connect = store, scope, lab, connect

    def apply(self, inst: str) -> int:
        if self.lab is not None:
            return instance_apply(self.store, self.lab, inst).writes
        from vmqos.vms import vm_apply

        return vm_apply(self.store, inst, self.connect).writes


def volume_scope(lab: str | None) -> str:
    return lab_scope(lab) if lab else ""


def _live(store: Any, scope: str, lab: str | None, connect: str | None, volume: Volume, write: Any) -> int:
    """Store the volume change, then apply it to its instance; a failed apply restores the old volume."""
    old = store.volumes(scope).get(volume.name)
    write()
    target_instance = volume.instance or (old.instance if old else None)
    if target_instance is None:
        return 0
    try:
        return VolumeTarget(store, scope, lab, connect).apply(target_instance)
    except Exception:
        if old is not None:
            store.save_volume(scope, old, actor="volume", summary=f"volume {volume.name}: undo failed change")
        else:
            store.delete_volume(scope, volume.name)
        raise


def volume_create(store: Any, scope: str, name: str, vtype: str | None, size_gb: int) -> Volume:
    if name in store.volumes(scope):
        raise InvalidValue("volume", name, "a volume of that name exists (`vmqos volume extend` resizes it)")
    volume = Volume(name, vtype, size_gb)
    store.save_volume(scope, volume, actor="volume create", summary=f"volume {name}: {size_gb} GiB")
    return volume


def _volume(store: Any, scope: str, name: str) -> Volume:
    found = store.volumes(scope).get(name)
    if found is None:
        raise NotFound(f"no volume {name!r} (`vmqos volume list` shows them)")
    return found


def volume_extend(store: Any, scope: str, name: str, size_gb: int, *, lab: str | None = None,
                  connect: str | None = None) -> tuple[Volume, int]:
    """Grow a volume; when attached, its per-GB limits are recomputed and applied now (Cinder waits
    for the next attach)."""
    volume = _volume(store, scope, name)
    if size_gb <= volume.size_gb:
        raise InvalidValue("size", size_gb, f"a volume only grows, as in Cinder: give more than {volume.size_gb} GiB")
    new = replace(volume, size_gb=size_gb)
    writes = _live(store, scope, lab, connect, new,
                   lambda: store.save_volume(scope, new, actor="volume extend",
                                             summary=f"volume {name}: {volume.size_gb} -> {size_gb} GiB"))
    return new, writes


def volume_attach(store: Any, scope: str, name: str, inst: str, device: str, *, lab: str | None = None,
                  connect: str | None = None) -> tuple[Volume, int]:
    volume = _volume(store, scope, name)
    if volume.attached:
        raise InvalidValue("volume", name, f"attached to {volume.instance} as {volume.device}; detach it first")
    new = replace(volume, instance=inst, device=device)
    if lab is not None:
        from vmqos.lab.topology import instance_index

        instance_index(inst)
    writes = _live(store, scope, lab, connect, new,
                   lambda: store.save_volume(scope, new, actor="volume attach",
                                             summary=f"volume {name} -> {inst} {device}"))
    return new, writes


def volume_detach(store: Any, scope: str, name: str, *, lab: str | None = None,
                  connect: str | None = None) -> tuple[Volume, int]:
    volume = _volume(store, scope, name)
    if not volume.attached:
        raise InvalidValue("volume", name, "not attached")
    new = replace(volume, instance=None, device=None)
    store.save_volume(scope, new, actor="volume detach", summary=f"volume {name} detached from {volume.instance}")
    try:
        writes = VolumeTarget(store, scope, lab, connect).apply(volume.instance)  # type: ignore[arg-type]
    except Exception:
        store.save_volume(scope, volume, actor="volume", summary=f"volume {name}: undo failed detach")
        raise
    return new, writes

