"""What the volume commands do: volumes and their types in the store, and their QoS on the instance."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from vmqos.core.errors import InvalidValue, NotFound
from vmqos.core.model.volume import Volume
from vmqos.services.instances import instance_apply, lab_scope


class VolumeTarget:
    """Where an attached volume's limits go: a lab instance's cgroups, or a libvirt domain."""

    def __init__(self, store: Any, scope: str, lab: str | None = None, connect: str | None = None) -> None:
        self.store, self.scope, self.lab, self.connect = store, scope, lab, connect

    def apply(self, inst: str) -> int:
        if self.lab is not None:
            return instance_apply(self.store, self.lab, inst).writes
        from vmqos.services.vms import vm_apply

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
