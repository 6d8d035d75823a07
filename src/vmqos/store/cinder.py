"""The API's Cinder objects: QoS specs, volume types (with their QoS spec and access list) and volumes.

Cinder's own objects, one row each, as its API states them (specs and extra specs as strings).
services/cinder_qos.py and cinder_volumes.py read every change that could alter a volume's QoS
through the vmqos model's Cinder reader inside the writing transaction (the `check` and `change`
callbacks, which see the sizes of the volumes concerned), so every stored volume's QoS reads as
the model's DiskQos. They are not the CLI's `volume_types` and `volumes` tables, which belong to
a scope of one host; these are a control plane's, owned by projects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Connection, ForeignKey, Integer, String, Table, Text, delete, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from vmqos.core.errors import ConflictError, NotFound
from vmqos.store.schema import Base, UtcDateTime, table_of
from vmqos.store.store import Store

_W = "cinder"  # the writer lock's name for every change here


class NameTaken(ConflictError):
    """Another QoS spec or volume type has this name."""


class InUse(ConflictError):
    """A QoS spec still associated with types, or a type still used by volumes."""


class Missing(NotFound):
    """The QoS spec, type or volume named is not stored (the message says which, by id)."""


class AlreadyAssociated(ConflictError):
    """The type has another QoS spec (`other` is its id)."""

    def __init__(self, other: str) -> None:
        self.other = other
        super().__init__(other)


class CinderQosSpecRow(Base):
    __tablename__ = "cinder_qos_specs"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    consumer: Mapped[str] = mapped_column(String)
    specs: Mapped[str] = mapped_column(Text)  # JSON object of strings
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CinderVolumeTypeRow(Base):
    __tablename__ = "cinder_volume_types"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    is_public: Mapped[bool] = mapped_column(Boolean)
    extra_specs: Mapped[str] = mapped_column(Text)  # JSON object of strings
    qos_specs_id: Mapped[str | None] = mapped_column(String, ForeignKey("cinder_qos_specs.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CinderVolumeTypeProjectRow(Base):
    __tablename__ = "cinder_volume_type_projects"

    type_id: Mapped[str] = mapped_column(String, ForeignKey("cinder_volume_types.id", ondelete="CASCADE"),
                                         primary_key=True)
    project_id: Mapped[str] = mapped_column(String, primary_key=True)


class CinderVolumeRow(Base):
    __tablename__ = "cinder_volumes"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    project_id: Mapped[str] = mapped_column(String, index=True)
    user_id: Mapped[str] = mapped_column(String)
    name: Mapped[str | None] = mapped_column(String)
    description: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)  # GiB
    type_id: Mapped[str | None] = mapped_column(String, ForeignKey("cinder_volume_types.id"), index=True)
    status: Mapped[str] = mapped_column(String)
    availability_zone: Mapped[str] = mapped_column(String)
    bootable: Mapped[bool] = mapped_column(Boolean)
    metadata_: Mapped[str] = mapped_column("metadata", Text)  # JSON object of strings
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


qos_specs = table_of(CinderQosSpecRow)
volume_types = table_of(CinderVolumeTypeRow)
type_projects = table_of(CinderVolumeTypeProjectRow)
volumes = table_of(CinderVolumeRow)


@dataclass(frozen=True)
class StoredQosSpec:
    id: str
    name: str
    consumer: str
    specs: dict[str, str]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StoredVolumeType:
    id: str
    name: str
    description: str | None
    is_public: bool
    extra_specs: dict[str, str]
    qos_specs_id: str | None
    created_at: datetime
    updated_at: datetime
    projects: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredVolume:
    id: str
    project_id: str
    user_id: str
    name: str | None
    description: str | None
    size: int
    type_id: str | None
    status: str
    availability_zone: str
    bootable: bool
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime


_SPEC = ("id", "name", "consumer", "specs", "created_at", "updated_at")
_TYPE = ("id", "name", "description", "is_public", "extra_specs", "qos_specs_id", "created_at", "updated_at")
_VOLUME = ("id", "project_id", "user_id", "name", "description", "size", "type_id", "status", "availability_zone",
           "bootable", "metadata", "created_at", "updated_at")
_JSON = ("specs", "extra_specs", "metadata")


def _columns(table: Table, names: tuple[str, ...]) -> list[Any]:
    return [table.c["metadata"] if n == "metadata" else table.c[n] for n in names]


def _values(names: tuple[str, ...], row: Any) -> dict[str, Any]:
    values = dict(zip(names, row))
    return {k: json.loads(v) if k in _JSON else v for k, v in values.items()}


def _row(names: tuple[str, ...], obj: Any) -> dict[str, Any]:
    return {n: json.dumps(getattr(obj, n), sort_keys=True) if n in _JSON else getattr(obj, n) for n in names}


def _specs(conn: Connection, spec_id: str | None = None) -> list[StoredQosSpec]:
    query = select(*_columns(qos_specs, _SPEC)).order_by(qos_specs.c.created_at, qos_specs.c.id)
    if spec_id is not None:
        query = query.where(qos_specs.c.id == spec_id)
    return [StoredQosSpec(**_values(_SPEC, row)) for row in conn.execute(query).all()]


def _types(conn: Connection, type_id: str | None = None) -> list[StoredVolumeType]:
    t, p = volume_types.c, type_projects.c
    query = select(*_columns(volume_types, _TYPE)).order_by(t.created_at, t.id)
    access = select(p.type_id, p.project_id).order_by(p.type_id, p.project_id)
    if type_id is not None:
        query, access = query.where(t.id == type_id), access.where(p.type_id == type_id)
    projects: dict[str, list[str]] = {}
    for tid, project in conn.execute(access).all():
        projects.setdefault(tid, []).append(project)
    return [StoredVolumeType(**(values := _values(_TYPE, row)), projects=tuple(projects.get(values["id"], ())))
            for row in conn.execute(query).all()]


def _volumes(conn: Connection, volume_id: str | None = None) -> list[StoredVolume]:
    query = select(*_columns(volumes, _VOLUME)).order_by(volumes.c.created_at, volumes.c.id)
    if volume_id is not None:
        query = query.where(volumes.c.id == volume_id)
    return [StoredVolume(**_values(_VOLUME, row)) for row in conn.execute(query).all()]


def _sizes(conn: Connection, spec_id: str | None = None, type_id: str | None = None) -> list[int]:
    """The sizes of the volumes whose type has the QoS spec `spec_id` (or whose type is `type_id`)."""
    v, t = volumes.c, volume_types.c
    query = select(v.size)
    query = query.where(v.type_id == type_id) if type_id is not None else \
        query.join(volume_types, t.id == v.type_id).where(t.qos_specs_id == spec_id)
    return list(conn.execute(query).scalars())


def _one(found: list[Any], kind: str, key: str) -> Any:
    if not found:
        raise Missing(f"{kind} {key}")
    return found[0]


# ------------------------------------------------------------------ reading


def list_qos_specs(store: Store) -> list[StoredQosSpec]:
    with store._tx("reading Cinder QoS specs") as conn:
        return _specs(conn)


def get_qos_spec(store: Store, spec_id: str) -> StoredQosSpec | None:
    with store._tx(f"reading Cinder QoS spec {spec_id}") as conn:
        return next(iter(_specs(conn, spec_id)), None)


def associations(store: Store, spec_id: str) -> list[StoredVolumeType]:
    """The volume types that have this QoS spec."""
    with store._tx(f"reading the associations of Cinder QoS spec {spec_id}") as conn:
        return [t for t in _types(conn) if t.qos_specs_id == spec_id]


def list_types(store: Store) -> list[StoredVolumeType]:
    with store._tx("reading Cinder volume types") as conn:
        return _types(conn)


def get_type(store: Store, type_id: str) -> StoredVolumeType | None:
    with store._tx(f"reading Cinder volume type {type_id}") as conn:
        return next(iter(_types(conn, type_id)), None)


def list_volumes(store: Store) -> list[StoredVolume]:
    with store._tx("reading Cinder volumes") as conn:
        return _volumes(conn)


def get_volume(store: Store, volume_id: str) -> StoredVolume | None:
    with store._tx(f"reading Cinder volume {volume_id}") as conn:
        return next(iter(_volumes(conn, volume_id)), None)


# ------------------------------------------------------------------ QoS specs


def create_qos_spec(store: Store, spec: StoredQosSpec) -> None:
    with store._tx(f"creating Cinder QoS spec {spec.name!r}", write=_W) as conn:
        if conn.execute(select(qos_specs.c.id).where(qos_specs.c.name == spec.name)).first():
            raise NameTaken(spec.name)
        conn.execute(insert(qos_specs).values(**_row(_SPEC, spec)))


def change_qos_spec(store: Store, spec_id: str, change: Callable[[StoredQosSpec, list[int]], StoredQosSpec],
                    at: datetime) -> StoredQosSpec:
    """Replace the spec by `change(spec, sizes of the volumes it applies to)` in one writing transaction;
    Missing when there is none. What `change` raises aborts the change."""
    with store._tx(f"changing Cinder QoS spec {spec_id}", write=_W) as conn:
        spec = _one(_specs(conn, spec_id), "qos_spec", spec_id)
        changed = replace(change(spec, _sizes(conn, spec_id=spec_id)), id=spec_id, updated_at=at)
        conn.execute(update(qos_specs).where(qos_specs.c.id == spec_id).values(**_row(_SPEC, changed)))
        return changed


def delete_qos_spec(store: Store, spec_id: str, force: bool) -> None:
    """Remove the spec; InUse while types have it unless `force` (which takes it from them first)."""
    t = volume_types.c
    with store._tx(f"deleting Cinder QoS spec {spec_id}", write=_W) as conn:
        _one(_specs(conn, spec_id), "qos_spec", spec_id)
        if conn.execute(select(t.id).where(t.qos_specs_id == spec_id)).first():
            if not force:
                raise InUse(spec_id)
            conn.execute(update(volume_types).where(t.qos_specs_id == spec_id).values(qos_specs_id=None))
        conn.execute(delete(qos_specs).where(qos_specs.c.id == spec_id))


def associate(store: Store, spec_id: str, type_id: str, check: Callable[[StoredQosSpec, list[int]], None],
              at: datetime) -> None:
    """Give the type this QoS spec, if `check(spec, sizes of the type's volumes)` passes; nothing when it
    has it already, AlreadyAssociated when it has another (Cinder's associate_qos_with_type)."""
    with store._tx(f"associating Cinder QoS spec {spec_id}", write=_W) as conn:
        spec = _one(_specs(conn, spec_id), "qos_spec", spec_id)
        vtype = _one(_types(conn, type_id), "type", type_id)
        if vtype.qos_specs_id is not None:
            if vtype.qos_specs_id != spec_id:
                raise AlreadyAssociated(vtype.qos_specs_id)
            return
        check(spec, _sizes(conn, type_id=type_id))
        conn.execute(update(volume_types).where(volume_types.c.id == type_id)
                     .values(qos_specs_id=spec_id, updated_at=at))


def disassociate(store: Store, spec_id: str, type_id: str | None, at: datetime) -> None:
    """Take the spec from one type (`type_id`) or from all; Missing for an unknown spec or type."""
    t = volume_types.c
    with store._tx(f"disassociating Cinder QoS spec {spec_id}", write=_W) as conn:
        _one(_specs(conn, spec_id), "qos_spec", spec_id)
        query = update(volume_types).where(t.qos_specs_id == spec_id)
        if type_id is not None:
            _one(_types(conn, type_id), "type", type_id)
            query = query.where(t.id == type_id)
        conn.execute(query.values(qos_specs_id=None, updated_at=at))


# ------------------------------------------------------------------ volume types


def create_type(store: Store, vtype: StoredVolumeType) -> None:
    with store._tx(f"creating Cinder volume type {vtype.name!r}", write=_W) as conn:
        if conn.execute(select(volume_types.c.id).where(volume_types.c.name == vtype.name)).first():
            raise NameTaken(vtype.name)
        conn.execute(insert(volume_types).values(**_row(_TYPE, vtype)))


def change_type(store: Store, type_id: str, change: Callable[[StoredVolumeType], StoredVolumeType],
                at: datetime) -> StoredVolumeType:
    """Replace the type by `change(type)` (name, description, public, extra specs) in one transaction."""
    t = volume_types.c
    with store._tx(f"changing Cinder volume type {type_id}", write=_W) as conn:
        vtype = _one(_types(conn, type_id), "type", type_id)
        changed = replace(change(vtype), id=type_id, qos_specs_id=vtype.qos_specs_id, updated_at=at)
        if changed.name != vtype.name and conn.execute(select(t.id).where(t.name == changed.name)).first():
            raise NameTaken(changed.name)
        conn.execute(update(volume_types).where(t.id == type_id).values(**_row(_TYPE, changed)))
        return changed


def delete_type(store: Store, type_id: str) -> None:
    """Remove the type with its access list; InUse while volumes have it."""
    with store._tx(f"deleting Cinder volume type {type_id}", write=_W) as conn:
        _one(_types(conn, type_id), "type", type_id)
        if conn.execute(select(volumes.c.id).where(volumes.c.type_id == type_id)).first():
            raise InUse(type_id)
        conn.execute(delete(type_projects).where(type_projects.c.type_id == type_id))
        conn.execute(delete(volume_types).where(volume_types.c.id == type_id))


def set_type_access(store: Store, type_id: str, project_id: str, allowed: bool) -> bool:
    """Let (or stop) `project_id` use a private type; False when nothing changed. Missing: no type."""
    p = type_projects.c
    with store._tx(f"changing access to Cinder volume type {type_id}", write=_W) as conn:
        _one(_types(conn, type_id), "type", type_id)
        has = conn.execute(select(p.project_id).where(p.type_id == type_id, p.project_id == project_id)).first()
        if allowed == bool(has):
            return False
        if allowed:
            conn.execute(insert(type_projects).values(type_id=type_id, project_id=project_id))
        else:
            conn.execute(delete(type_projects).where(p.type_id == type_id, p.project_id == project_id))
        return True


# ------------------------------------------------------------------ volumes


def create_volume(store: Store, volume: StoredVolume,
                  check: Callable[[StoredVolumeType | None, StoredQosSpec | None], None]) -> None:
    """Store a volume if `check(its type, the type's QoS spec)` passes, both read in the same transaction."""
    with store._tx(f"creating Cinder volume {volume.id}", write=_W) as conn:
        vtype = _one(_types(conn, volume.type_id), "type", volume.type_id) if volume.type_id else None
        spec = _one(_specs(conn, vtype.qos_specs_id), "qos_spec", vtype.qos_specs_id) \
            if vtype is not None and vtype.qos_specs_id else None
        check(vtype, spec)
        conn.execute(insert(volumes).values(**_row(_VOLUME, volume)))


def change_volume(store: Store, volume_id: str, change: Callable[[StoredVolume], StoredVolume],
                  check: Callable[[StoredVolume, StoredVolumeType | None, StoredQosSpec | None], None]) -> StoredVolume:
    """Replace the volume by `change(volume)` if `check(the changed volume, its type, the type's QoS spec)`
    passes, all read in one transaction (a resize or retype is checked against the spec it will have)."""
    with store._tx(f"changing Cinder volume {volume_id}", write=_W) as conn:
        changed = change(_one(_volumes(conn, volume_id), "volume", volume_id))
        vtype = _one(_types(conn, changed.type_id), "type", changed.type_id) if changed.type_id else None
        spec = _one(_specs(conn, vtype.qos_specs_id), "qos_spec", vtype.qos_specs_id) \
            if vtype is not None and vtype.qos_specs_id else None
        check(changed, vtype, spec)
        conn.execute(update(volumes).where(volumes.c.id == volume_id).values(**_row(_VOLUME, changed)))
        return changed


def delete_volume(store: Store, volume_id: str) -> bool:
    with store._tx(f"deleting Cinder volume {volume_id}", write=_W) as conn:
        return bool(conn.execute(delete(volumes).where(volumes.c.id == volume_id)).rowcount)
