"""Cinder volumes: a size and a type, owned by a project, and the disk QoS their type puts on them.

The use cases behind `/volume/v3/{project_id}/volumes`, with Cinder's default policy: a project's
member creates and deletes its volumes, a reader only reads them, another project's volume is
"not found", and only the admin lists every project's (all_tenants). A volume holds no data here:
it is `available` as soon as it is created. `volume_disk_qos` is the desired-state link: the
volume's type's QoS spec read by core.formats.cinder at the volume's size, as Cinder hands it to
Nova and Nova to libvirt (front-end and both specs only).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace

from vmqos.core.errors import NotFound
from vmqos.core.formats import cinder
from vmqos.core.model import DiskQos, Note
from vmqos.services.cinder_input import read_action, read_extend, read_retype, read_volume, read_volume_update, \
    spec_document
from vmqos.services.cinder_qos import find_type, now
from vmqos.services.identity import Caller
from vmqos.services.openstack_input import Fault, bad_request, forbidden, query_boolean
from vmqos.store import Store
from vmqos.store import cinder as records
from vmqos.store.cinder import StoredQosSpec, StoredVolume, StoredVolumeType

AVAILABILITY_ZONE = "nova"  # Cinder's default storage_availability_zone


@dataclass(frozen=True)
class VolumeQos:
    """What a volume's type puts on the host: the disk QoS (None: nothing to enforce) and why."""

    volume_id: str
    size_gb: int
    type_id: str | None
    qos_spec_id: str | None
    consumer: str | None
    disk: DiskQos | None
    notes: tuple[Note, ...] = ()


def _not_found(volume_id: str) -> Fault:
    return Fault(404, f"Volume {volume_id} could not be found.")


def _own(caller: Caller, volume: StoredVolume) -> bool:
    return caller.is_admin or (caller.project is not None and volume.project_id == caller.project.id)


def get_volume(store: Store, caller: Caller, volume_id: str) -> StoredVolume:
    volume = records.get_volume(store, volume_id)
    if volume is None or not _own(caller, volume):
        raise _not_found(volume_id)
    return volume


def list_volumes(store: Store, caller: Caller, query: dict[str, str]) -> list[StoredVolume]:
    """The caller's project's volumes; every project's for the admin with all_tenants (Cinder's filter)."""
    every = False
    if caller.is_admin and "all_tenants" in query:  # a project's all_tenants is dropped, as Cinder's filter
        parsed = query_boolean(query["all_tenants"])
        if parsed is None:
            raise bad_request(f"Invalid input received: Invalid value '{query['all_tenants']}' for all_tenants")
        every = parsed
    mine = caller.project.id if caller.project else None
    found = [v for v in records.list_volumes(store)
             if (every or v.project_id == mine)
             and ("name" not in query or v.name == query["name"])
             and ("status" not in query or v.status == query["status"])
             and ("project_id" not in query or not every or v.project_id == query["project_id"])]
    if "marker" in query:
        ids = [v.id for v in found]
        if query["marker"] not in ids:
            raise Fault(404, f"Marker {query['marker']} could not be found.")
        found = found[ids.index(query["marker"]) + 1:]
    if query.get("limit", "").isdigit():
        found = found[:int(query["limit"])]
    return found


def _check(size: int, spec: StoredQosSpec | None) -> None:
    """A volume of `size` GiB gets its type's spec: it must read at that size (per-GB keys scale)."""
    if spec is not None:
        spec_document(spec.name, spec.consumer, spec.specs, size)


def create_volume(store: Store, caller: Caller, body: object) -> StoredVolume:
    if not caller.can_write or caller.project is None:
        raise forbidden("volume:create")
    given = read_volume(body)
    vtype = find_type(store, caller, given.volume_type) if given.volume_type else None
    at = now()
    volume = StoredVolume(str(uuid.uuid4()), caller.project.id, caller.user.id, given.name, given.description,
                          given.size, vtype.id if vtype else None, "available",
                          given.availability_zone or AVAILABILITY_ZONE, False, given.metadata, at, at)
    records.create_volume(store, volume, lambda _type, spec: _check(given.size, spec))
    return volume


def delete_volume(store: Store, caller: Caller, volume_id: str) -> None:
    get_volume(store, caller, volume_id)
    if not caller.can_write:
        raise forbidden("volume:delete")
    if not records.delete_volume(store, volume_id):
        raise _not_found(volume_id)


def _writable(store: Store, caller: Caller, volume_id: str, action: str) -> StoredVolume:
    """The caller's volume, which its role may change: another project's is not found, a reader refused."""
    volume = get_volume(store, caller, volume_id)
    if not caller.can_write:
        raise forbidden(action)
    return volume


def _checked(volume: StoredVolume, _type: StoredVolumeType | None, spec: StoredQosSpec | None) -> None:
    _check(volume.size, spec)


def update_volume(store: Store, caller: Caller, volume_id: str, body: object) -> StoredVolume:
    """PUT /volumes/{id}: the name, the description, the metadata (volume:update)."""
    given = read_volume_update(body)
    _writable(store, caller, volume_id, "volume:update")
    at = now()

    def change(volume: StoredVolume) -> StoredVolume:
        changed = replace(volume, **given.changes, updated_at=at)  # type: ignore[arg-type]
        return changed if given.metadata is None else replace(changed, metadata=given.metadata)

    return records.change_volume(store, volume_id, change, _checked)


def volume_action(store: Store, caller: Caller, volume_id: str, body: object) -> None:
    """POST /volumes/{id}/action: os-extend and os-retype, answered 202 as Cinder does.

    Extend: a larger size only (volume/api.py _extend); the type's per-GB QoS keys are read at the new
    size (volume_disk_qos reads them at the stored size), so the spec must still read there. Retype: to
    another type the caller may use; the volume then has the new type's QoS, checked at its size. A
    volume here is always `available`, which both require."""
    action, _value = read_action(body)
    if action == "os-extend":
        size = read_extend(body)
        current = _writable(store, caller, volume_id, "volume:extend")
        if size <= current.size:
            raise bad_request(f"Invalid input received: New size for extend must be greater than current size. "
                              f"(current: {current.size}, extended: {size}).")
        records.change_volume(store, volume_id, lambda v: _extended(v, size), _checked)
    elif action == "os-retype":
        wanted = read_retype(body)
        current = _writable(store, caller, volume_id, "volume:retype")
        vtype = find_type(store, caller, wanted)
        if vtype.id == current.type_id:
            raise bad_request("Invalid volume: Retype needs volume to be in available or in-use state, not be "
                              "part of an active migration or a consistency group, requested type has to be "
                              "different that the one from the volume, and for in-use volumes front-end qos specs "
                              "cannot change.")
        records.change_volume(store, volume_id, lambda v: replace(v, type_id=vtype.id, updated_at=now()), _checked)
    else:
        raise bad_request(f"There is no such action: {action}. Verify the request body and Content-Type header "
                          "and try again.")


def _extended(volume: StoredVolume, size: int) -> StoredVolume:
    """The volume at its new size; a size that moved since it was read is re-checked as Cinder's
    conditional update would refuse it."""
    if size <= volume.size:
        raise bad_request(f"Invalid input received: New size for extend must be greater than current size. "
                          f"(current: {volume.size}, extended: {size}).")
    return replace(volume, size=size, updated_at=now())


def type_of(store: Store, volume: StoredVolume) -> StoredVolumeType | None:
    return records.get_type(store, volume.type_id) if volume.type_id else None


# ------------------------------------------------------------------ the desired-state link


def volume_disk_qos(store: Store, volume_id: str) -> VolumeQos:
    """The disk QoS the volume's type's QoS spec puts on it at its size, as the model's DiskQos.

    None when the type has no spec or a back-end one (which never reaches the host); per-GB keys
    become absolute at the volume's size. For the agent and all-in-one enforcement: no caller."""
    volume = records.get_volume(store, volume_id)
    if volume is None:
        raise NotFound(f"no Cinder volume {volume_id!r} (`openstack volume list` shows them)")
    vtype = type_of(store, volume)
    spec = records.get_qos_spec(store, vtype.qos_specs_id) if vtype and vtype.qos_specs_id else None
    if spec is None:
        return VolumeQos(volume.id, volume.size, volume.type_id, None, None, None)
    text = json.dumps({"qos_specs": {"name": spec.name, "consumer": spec.consumer, "specs": spec.specs}})
    doc = cinder.read(text, size_gb=volume.size)
    return VolumeQos(volume.id, volume.size, volume.type_id, spec.id, spec.consumer, doc.disk, doc.notes)
