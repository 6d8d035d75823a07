"""Cinder QoS specs and volume types, with Cinder's default policy: the admin manages both.

The use cases behind `/volume/v3/{project_id}/qos-specs` and `/types`. QoS specs are the admin's
alone (Cinder's `volume_extension:qos_specs_manage:*` rules); every project lists and shows the
public types and the private ones it may use, and only the admin creates, changes or deletes one,
its extra specs or its access list. A front-end spec is read as the vmqos model reads it whenever
it or its associations change, at the sizes of the volumes it then applies to (cinder_input), so
a stored volume's QoS always reads as the model's DiskQos (cinder_volumes.volume_disk_qos).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from vmqos.services.cinder_input import (
    check_spec,
    read_keys,
    read_project,
    read_qos_create,
    read_qos_set,
    read_type_create,
    read_type_specs,
    read_type_update,
)
from vmqos.services.identity import Caller
from vmqos.services.openstack_input import Fault, bad_request, decoded, forbidden
from vmqos.store import Store
from vmqos.store import cinder as records
from vmqos.store.cinder import AlreadyAssociated, InUse, Missing, NameTaken, StoredQosSpec, StoredVolumeType

# Extra specs a project's reader may see (cinder/policies/type_extra_specs.py USER_VISIBLE_EXTRA_SPECS)
USER_VISIBLE_EXTRA_SPECS = ("RESKEY:availability_zones", "multiattach", "replication_enabled")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _admin(caller: Caller, action: str) -> None:
    if not caller.is_admin:
        raise forbidden(action)


def spec_not_found(spec_id: str) -> Fault:
    return Fault(404, f"No such QoS spec {spec_id}.")


def type_not_found(type_id: str) -> Fault:
    return Fault(404, f"Volume type {type_id} could not be found.")


def _missing(exc: Missing) -> Fault:
    kind, _, key = str(exc).partition(" ")
    return spec_not_found(key) if kind == "qos_spec" else type_not_found(key)


# ------------------------------------------------------------------ QoS specs


def list_qos_specs(store: Store, caller: Caller) -> list[StoredQosSpec]:
    _admin(caller, "volume_extension:qos_specs_manage:get_all")
    return records.list_qos_specs(store)


def show_qos_spec(store: Store, caller: Caller, spec_id: str) -> StoredQosSpec:
    _admin(caller, "volume_extension:qos_specs_manage:get")
    spec = records.get_qos_spec(store, spec_id)
    if spec is None:
        raise spec_not_found(spec_id)
    return spec


def create_qos_spec(store: Store, caller: Caller, body: Any) -> StoredQosSpec:
    _admin(caller, "volume_extension:qos_specs_manage:create")
    name, consumer, specs = read_qos_create(body)
    check_spec(name, consumer, specs, [])
    at = now()
    spec = StoredQosSpec(str(uuid.uuid4()), name, consumer, specs, at, at)
    try:
        records.create_qos_spec(store, spec)
    except NameTaken:
        raise Fault(409, f"QoS Specs {name} already exists.") from None
    return spec


def _change_spec(store: Store, spec_id: str, specs: dict[str, str] | None, drop: list[str]) -> StoredQosSpec:
    def change(spec: StoredQosSpec, sizes: list[int]) -> StoredQosSpec:
        merged = dict(spec.specs)
        consumer = spec.consumer
        for key in drop:
            if key not in merged:
                raise Fault(404, f"QoS spec {spec_id} has no spec with key {key}.")
            del merged[key]
        if specs:
            consumer = specs.get("consumer", consumer)
            merged |= {k: v for k, v in specs.items() if k != "consumer"}
        check_spec(spec.name, consumer, merged, sizes)
        return replace(spec, consumer=consumer, specs=merged)

    try:
        return records.change_qos_spec(store, spec_id, change, now())
    except Missing:
        raise spec_not_found(spec_id) from None


def set_qos_spec(store: Store, caller: Caller, spec_id: str, body: Any) -> dict[str, Any]:
    """PUT: add or change keys (and the consumer); Cinder answers with the body it was sent."""
    _admin(caller, "volume_extension:qos_specs_manage:update")
    body = decoded(body)
    _change_spec(store, spec_id, read_qos_set(body), [])
    return dict(body)


def unset_qos_spec(store: Store, caller: Caller, spec_id: str, body: Any) -> None:
    """delete_keys: remove keys, all or none (a missing key is Cinder's 404 QoSSpecsKeyNotFound)."""
    _admin(caller, "volume_extension:qos_specs_manage:delete")
    _change_spec(store, spec_id, None, read_keys(body))


def delete_qos_spec(store: Store, caller: Caller, spec_id: str, force: bool) -> None:
    _admin(caller, "volume_extension:qos_specs_manage:delete")
    try:
        records.delete_qos_spec(store, spec_id, force)
    except Missing:
        raise spec_not_found(spec_id) from None
    except InUse:
        raise bad_request("Qos specs still in use.") from None


def associations(store: Store, caller: Caller, spec_id: str) -> list[StoredVolumeType]:
    _admin(caller, "volume_extension:qos_specs_manage:get_all")
    show_qos_spec(store, caller, spec_id)
    return records.associations(store, spec_id)


def associate(store: Store, caller: Caller, spec_id: str, type_id: str | None) -> None:
    """Give a type this QoS spec, if the spec reads at the sizes of the type's volumes."""
    _admin(caller, "volume_extension:qos_specs_manage:update")
    if not type_id:
        raise bad_request("Volume Type id must not be None.")
    try:
        records.associate(store, spec_id, type_id,
                          lambda spec, sizes: check_spec(spec.name, spec.consumer, spec.specs, sizes), now())
    except Missing as exc:
        raise _missing(exc) from None
    except AlreadyAssociated as exc:
        raise bad_request(f"Invalid volume type: Type {type_id} is already associated with another qos specs: "
                          f"{exc.other}") from None


def disassociate(store: Store, caller: Caller, spec_id: str, type_id: str | None, *, every: bool = False) -> None:
    """Take the spec from one type, or from all of them (`every`, disassociate_all)."""
    _admin(caller, "volume_extension:qos_specs_manage:update")
    if not every and not type_id:
        raise bad_request("Volume Type id must not be None.")
    try:
        records.disassociate(store, spec_id, None if every else type_id, now())
    except Missing as exc:
        raise _missing(exc) from None


# ------------------------------------------------------------------ volume types


def type_visible(caller: Caller, vtype: StoredVolumeType) -> bool:
    """Cinder's query for a non-admin context: public, or private with the caller's project on its list."""
    return caller.is_admin or vtype.is_public or (caller.project is not None and caller.project.id in vtype.projects)


def get_type(store: Store, caller: Caller, type_id: str) -> StoredVolumeType:
    if type_id == "default":
        raise Fault(404, "Default volume type can not be found.")
    vtype = records.get_type(store, type_id)
    if vtype is None or not type_visible(caller, vtype):
        raise type_not_found(type_id)
    return vtype


def find_type(store: Store, caller: Caller, name_or_id: str) -> StoredVolumeType:
    """A type by id, else by name (volume_types.get_by_name_or_id), among those the caller may use."""
    for vtype in records.list_types(store):
        if type_visible(caller, vtype) and name_or_id in (vtype.id, vtype.name):
            return vtype
    raise Fault(404, f"Volume type with name {name_or_id} could not be found.")


def list_types(store: Store, caller: Caller, is_public: bool | None) -> list[StoredVolumeType]:
    """Public types (and the caller's private ones); an admin may ask for private ones or all (None)."""
    wanted = is_public if caller.is_admin else True
    mine = caller.project.id if caller.project else None
    return [t for t in records.list_types(store)
            if wanted is None or t.is_public == wanted or (wanted and mine in t.projects)]


def visible_specs(caller: Caller, vtype: StoredVolumeType) -> dict[str, str]:
    """The extra specs a caller sees: all for the admin, the user-visible ones for a project (read_sensitive)."""
    if caller.is_admin:
        return vtype.extra_specs
    return {k: v for k, v in vtype.extra_specs.items() if k in USER_VISIBLE_EXTRA_SPECS}


def create_type(store: Store, caller: Caller, body: Any) -> StoredVolumeType:
    _admin(caller, "volume_extension:type_create")
    name, description, specs, public = read_type_create(body)
    at = now()
    vtype = StoredVolumeType(str(uuid.uuid4()), name, description, public, specs, None, at, at)
    try:
        records.create_type(store, vtype)
    except NameTaken:
        raise Fault(409, f"Volume Type {name} already exists.") from None
    return vtype


def _change_type(store: Store, type_id: str,
                 change: Callable[[StoredVolumeType], StoredVolumeType]) -> StoredVolumeType:
    try:
        return records.change_type(store, type_id, change, now())
    except Missing:
        raise type_not_found(type_id) from None
    except NameTaken as exc:
        raise Fault(409, f"Volume Type {exc} already exists.") from None


def update_type(store: Store, caller: Caller, type_id: str, body: Any) -> StoredVolumeType:
    _admin(caller, "volume_extension:type_update")
    name, description, public = read_type_update(body)
    return _change_type(store, type_id, lambda t: replace(
        t, name=name or t.name, description=t.description if description is None else description,
        is_public=t.is_public if public is None else public))


def delete_type(store: Store, caller: Caller, type_id: str) -> None:
    _admin(caller, "volume_extension:type_delete")
    try:
        records.delete_type(store, type_id)
    except Missing:
        raise type_not_found(type_id) from None
    except InUse:
        raise bad_request("Target volume type is still in use.") from None


def set_type_specs(store: Store, caller: Caller, type_id: str, body: Any) -> dict[str, str]:
    _admin(caller, "volume_extension:types_extra_specs:create")
    specs = read_type_specs(body)
    _change_type(store, type_id, lambda t: replace(t, extra_specs=t.extra_specs | specs))
    return specs


def delete_type_spec(store: Store, caller: Caller, type_id: str, key: str) -> None:
    _admin(caller, "volume_extension:types_extra_specs:delete")

    def drop(vtype: StoredVolumeType) -> StoredVolumeType:
        if key not in vtype.extra_specs:
            raise Fault(404, f"Volume Type {type_id} has no extra specs with key {key}.")
        return replace(vtype, extra_specs={k: v for k, v in vtype.extra_specs.items() if k != key})

    _change_type(store, type_id, drop)


def type_access(store: Store, caller: Caller, type_id: str) -> tuple[str, ...]:
    _admin(caller, "volume_extension:volume_type_access:get_all_for_type")
    vtype = get_type(store, caller, type_id)
    if vtype.is_public:
        raise Fault(404, "Access list not available for public volume types.")
    return vtype.projects


def change_type_access(store: Store, caller: Caller, type_id: str, body: Any, allowed: bool) -> None:
    action = "addProjectAccess" if allowed else "removeProjectAccess"
    _admin(caller, f"volume_extension:volume_type_access:{action}")
    project = read_project(body, action)
    if get_type(store, caller, type_id).is_public:
        raise bad_request("Invalid volume type: Type access modification is not applicable to public volume type.")
    if not records.set_type_access(store, type_id, project, allowed):
        if allowed:
            raise Fault(409, f"Volume type access for {type_id} / {project} combination already exists.")
        raise Fault(404, f"Volume type access not found for {type_id} / {project} combination.")
