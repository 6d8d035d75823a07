"""The API's Nova flavors: one row each, their extra specs as Nova states them, and who may use a private one.

A flavor here is Nova's object (flavorid, name, sizes, public or not, description) with its extra
specs as strings, the way Nova keeps them; services/flavors.py reads every change of the specs
through the vmqos model's Nova reader inside the writing transaction (`change_extra_specs`), so a
stored flavor always reads as the model's QoS. These are not the host file's `flavors` table: that
one belongs to a scope's desired state, which `vmqos apply` replaces as a whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Connection, Float, ForeignKey, Integer, String, Text, delete, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from vmqos.core.errors import ConflictError
from vmqos.store.schema import Base, UtcDateTime, table_of
from vmqos.store.store import Store

_W = "nova"  # the writer lock's name for every change here


class FlavorExists(ConflictError):
    """Another flavor has this name (Nova's FlavorExists)."""


class FlavorIdExists(ConflictError):
    """Another flavor has this id (Nova's FlavorIdExists)."""


class FlavorAccessExists(ConflictError):
    """The project may use the flavor already (Nova's FlavorAccessExists)."""


class NovaFlavorRow(Base):
    __tablename__ = "nova_flavors"

    id: Mapped[str] = mapped_column(String, primary_key=True)  # Nova's flavorid, chosen by the caller or a UUID
    name: Mapped[str] = mapped_column(String, unique=True)
    ram: Mapped[int] = mapped_column(Integer)  # MiB
    vcpus: Mapped[int] = mapped_column(Integer)
    disk: Mapped[int] = mapped_column(Integer)  # GiB
    ephemeral: Mapped[int] = mapped_column(Integer)  # GiB
    swap: Mapped[int] = mapped_column(Integer)  # MiB
    rxtx_factor: Mapped[float] = mapped_column(Float)
    is_public: Mapped[bool] = mapped_column(Boolean)
    disabled: Mapped[bool] = mapped_column(Boolean)
    description: Mapped[str | None] = mapped_column(Text)
    extra_specs: Mapped[str] = mapped_column(Text)  # JSON object of strings, as Nova keeps them
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class NovaFlavorProjectRow(Base):
    __tablename__ = "nova_flavor_projects"

    flavor_id: Mapped[str] = mapped_column(String, ForeignKey("nova_flavors.id", ondelete="CASCADE"),
                                           primary_key=True)
    project_id: Mapped[str] = mapped_column(String, primary_key=True)


nova_flavors = table_of(NovaFlavorRow)
nova_flavor_projects = table_of(NovaFlavorProjectRow)


@dataclass(frozen=True)
class StoredFlavor:
    id: str
    name: str
    ram: int
    vcpus: int
    disk: int
    ephemeral: int
    swap: int
    rxtx_factor: float
    is_public: bool
    disabled: bool
    description: str | None
    extra_specs: dict[str, str]
    created_at: datetime
    updated_at: datetime
    projects: tuple[str, ...] = ()  # the projects that may use it when it is private


_COLUMNS = ("id", "name", "ram", "vcpus", "disk", "ephemeral", "swap", "rxtx_factor", "is_public", "disabled",
            "description", "extra_specs", "created_at", "updated_at")


def _read(conn: Connection, flavor_id: str | None = None) -> list[StoredFlavor]:
    f, p = nova_flavors.c, nova_flavor_projects.c
    query = select(*(f[c] for c in _COLUMNS)).order_by(f.id)
    access = select(p.flavor_id, p.project_id).order_by(p.flavor_id, p.project_id)
    if flavor_id is not None:
        query, access = query.where(f.id == flavor_id), access.where(p.flavor_id == flavor_id)
    projects: dict[str, list[str]] = {}
    for fid, project in conn.execute(access).all():
        projects.setdefault(fid, []).append(project)
    found = []
    for row in conn.execute(query).all():
        values: dict[str, Any] = dict(zip(_COLUMNS, row))
        values["extra_specs"] = json.loads(values["extra_specs"])
        found.append(StoredFlavor(**values, projects=tuple(projects.get(values["id"], ()))))
    return found


def list_flavors(store: Store) -> list[StoredFlavor]:
    """Every flavor with its extra specs and access list, ordered by id (Nova's default sort)."""
    with store._tx("reading Nova flavors") as conn:
        return _read(conn)


def get_flavor(store: Store, flavor_id: str) -> StoredFlavor | None:
    with store._tx(f"reading Nova flavor {flavor_id}") as conn:
        found = _read(conn, flavor_id)
    return found[0] if found else None


def _row(flavor: StoredFlavor) -> dict[str, Any]:
    row = {c: getattr(flavor, c) for c in _COLUMNS}
    row["extra_specs"] = json.dumps(flavor.extra_specs, sort_keys=True)
    return row


def create_flavor(store: Store, flavor: StoredFlavor) -> None:
    """Store a new flavor; FlavorExists or FlavorIdExists, checked in the same transaction, as Nova's."""
    f = nova_flavors.c
    with store._tx(f"creating Nova flavor {flavor.name!r}", write=_W) as conn:
        if conn.execute(select(f.id).where(f.name == flavor.name)).first():
            raise FlavorExists(f"Flavor with name {flavor.name} already exists.")
        if conn.execute(select(f.id).where(f.id == flavor.id)).first():
            raise FlavorIdExists(f"Flavor with ID {flavor.id} already exists.")
        conn.execute(insert(nova_flavors).values(**_row(flavor)))


def delete_flavor(store: Store, flavor_id: str) -> bool:
    """Remove a flavor with its access list; False when there was none."""
    with store._tx(f"deleting Nova flavor {flavor_id}", write=_W) as conn:
        conn.execute(delete(nova_flavor_projects).where(nova_flavor_projects.c.flavor_id == flavor_id))
        return bool(conn.execute(delete(nova_flavors).where(nova_flavors.c.id == flavor_id)).rowcount)


def change_flavor(store: Store, flavor_id: str, change: Callable[[StoredFlavor], StoredFlavor],
                  at: datetime) -> StoredFlavor | None:
    """Replace the flavor by `change(flavor as stored)`, in one writing transaction; None when there is none.

    `change` runs inside the transaction: it sees the flavor as it is, so two requests that each
    add an extra spec both land, and a check it makes (the merged specs read as the vmqos model)
    holds for what is stored. What it raises aborts the change."""
    with store._tx(f"changing Nova flavor {flavor_id}", write=_W) as conn:
        found = _read(conn, flavor_id)
        if not found:
            return None
        changed = replace(change(found[0]), id=flavor_id, updated_at=at)
        conn.execute(update(nova_flavors).where(nova_flavors.c.id == flavor_id).values(**_row(changed)))
        return changed


def add_access(store: Store, flavor_id: str, project_id: str) -> bool:
    """Let `project_id` use the flavor; False when there is no such flavor, FlavorAccessExists when it may."""
    f, p = nova_flavors.c, nova_flavor_projects.c
    with store._tx(f"adding access to Nova flavor {flavor_id}", write=_W) as conn:
        if not conn.execute(select(f.id).where(f.id == flavor_id)).first():
            return False
        if conn.execute(select(p.project_id).where(p.flavor_id == flavor_id, p.project_id == project_id)).first():
            raise FlavorAccessExists(f"Flavor access already exists for flavor {flavor_id} and project "
                                     f"{project_id} combination.")
        conn.execute(insert(nova_flavor_projects).values(flavor_id=flavor_id, project_id=project_id))
    return True


def remove_access(store: Store, flavor_id: str, project_id: str) -> bool:
    """Take the flavor from `project_id`; False when it had no access."""
    p = nova_flavor_projects.c
    with store._tx(f"removing access to Nova flavor {flavor_id}", write=_W) as conn:
        return bool(conn.execute(delete(nova_flavor_projects).where(
            p.flavor_id == flavor_id, p.project_id == project_id)).rowcount)
