"""What the volume commands do: volumes and their types in the store, and their QoS on the instance."""

from __future__ import annotations

from dataclasses import replace
from functools import wraps
from typing import Any, Callable, TypeVar, cast

from vmqos.core.desired.instances import check_volume_type, volume_qos
from vmqos.core.errors import InvalidValue, NotFound
from vmqos.core.model.disk import DiskQos
from vmqos.core.model.volume import Volume, VolumeType
from vmqos.core.undo import UndoLog
from vmqos.services.instances import instance_apply, lab_scope
from vmqos.services.results import VolumeInfo, VolumeTypeInfo
from vmqos.store import Store


_F = TypeVar("_F", bound=Callable[..., Any])


def _writer(func: _F) -> _F:
    """Run a volume change as the writer of its scope (`Store.writer`): the check of the volume as it
    is, the stored change and the instance's new limits, with no other change in between."""

    @wraps(func)
    def as_writer(store: Store, scope: str, *args: Any, **kwargs: Any) -> Any:
        with store.writer(scope):
            return func(store, scope, *args, **kwargs)

    return cast(_F, as_writer)


class VolumeTarget:
    """Where an attached volume's limits go: a lab instance's cgroups, or a libvirt domain."""

    def __init__(self, store: Store, scope: str, lab: str | None = None, connect: str | None = None) -> None:
        self.store, self.scope, self.lab, self.connect = store, scope, lab, connect

    def apply(self, inst: str) -> int:
        if self.lab is not None:
            return instance_apply(self.store, self.lab, inst).writes
        from vmqos.services.vms import vm_apply

        return vm_apply(self.store, inst, self.connect).writes


def describe_volume(volume: Volume, vtype: VolumeType | None, writes: int | None = None) -> VolumeInfo:
    """A volume with its type's specs and the limits they put on the host at its size."""
    qos, notes = volume_qos(volume, vtype)
    return VolumeInfo(volume.name, volume.type, volume.size_gb, volume.instance, volume.device,
                      vtype.consumer if vtype else None, vtype.specs if vtype else {}, (qos or DiskQos()).items(),
                      notes, writes)


def describe_volume_type(vtype: VolumeType) -> VolumeTypeInfo:
    """A volume type, whether the host enforces it, and what Cinder would say of its specs."""
    return VolumeTypeInfo(vtype.name, vtype.consumer, vtype.specs, vtype.qos_name,
                          vtype.consumer in ("front-end", "both"), tuple(check_volume_type(vtype)))


def volume_type_list(store: Store, scope: str) -> tuple[VolumeTypeInfo, ...]:
    return tuple(describe_volume_type(v) for v in store.volume_types(scope).values())


def volume_type_show(store: Store, scope: str, name: str) -> VolumeTypeInfo:
    found = store.volume_types(scope).get(name)
    if found is None:
        raise NotFound(f"no volume type {name!r} (`vmqos volume-type list` shows them)")
    return describe_volume_type(found)


def volume_info(store: Store, scope: str, volume: Volume, writes: int | None = None) -> VolumeInfo:
    """`describe_volume` with the volume's type as the store has it now."""
    vtype = store.volume_types(scope).get(volume.type) if volume.type else None
    return describe_volume(volume, vtype, writes)


def volume_list(store: Store, scope: str) -> tuple[VolumeInfo, ...]:
    types = store.volume_types(scope)
    return tuple(describe_volume(v, types.get(v.type) if v.type else None) for v in store.volumes(scope).values())


def volume_show(store: Store, scope: str, name: str) -> VolumeInfo:
    return volume_info(store, scope, _volume(store, scope, name))


def volume_scope(lab: str | None) -> str:
    return lab_scope(lab) if lab else ""


def _live(store: Store, scope: str, lab: str | None, connect: str | None, volume: Volume, write: Callable[[], object]) -> int:
    """Store the volume change, then apply it to its instance; a failed apply restores the old volume."""
    old = store.volumes(scope).get(volume.name)
    with UndoLog() as undo:
        write()
        if old is not None:
            undo.add(f"volume {volume.name}", lambda: store.save_volume(
                scope, old, actor="volume", summary=f"volume {volume.name}: undo failed change"))
        else:
            undo.add(f"volume {volume.name}", lambda: store.delete_volume(scope, volume.name))
        target_instance = volume.instance or (old.instance if old else None)
        if target_instance is None:
            return 0
        return VolumeTarget(store, scope, lab, connect).apply(target_instance)


@_writer
def volume_create(store: Store, scope: str, name: str, vtype: str | None, size_gb: int) -> Volume:
    if name in store.volumes(scope):
        raise InvalidValue("volume", name, "a volume of that name exists (`vmqos volume extend` resizes it)")
    volume = Volume(name, vtype, size_gb)
    store.save_volume(scope, volume, actor="volume create", summary=f"volume {name}: {size_gb} GiB")
    return volume


def _volume(store: Store, scope: str, name: str) -> Volume:
    found = store.volumes(scope).get(name)
    if found is None:
        raise NotFound(f"no volume {name!r} (`vmqos volume list` shows them)")
    return found


@_writer
def volume_extend(store: Store, scope: str, name: str, size_gb: int, *, lab: str | None = None,
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


@_writer
def volume_attach(store: Store, scope: str, name: str, inst: str, device: str, *, lab: str | None = None,
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


@_writer
def volume_detach(store: Store, scope: str, name: str, *, lab: str | None = None,
                  connect: str | None = None) -> tuple[Volume, int]:
    volume = _volume(store, scope, name)
    if not volume.attached:
        raise InvalidValue("volume", name, "not attached")
    new = replace(volume, instance=None, device=None)
    with UndoLog() as undo:
        store.save_volume(scope, new, actor="volume detach", summary=f"volume {name} detached from {volume.instance}")
        undo.add(f"volume {name}", lambda: store.save_volume(scope, volume, actor="volume",
                                                             summary=f"volume {name}: undo failed detach"))
        writes = VolumeTarget(store, scope, lab, connect).apply(volume.instance)  # type: ignore[arg-type]
    return new, writes
