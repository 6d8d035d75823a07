"""vmqos's own policies, as the native API (/v1/policies) keeps them: one row each, owned by a project.

A row holds the policy in the host file's form (JSON, `core.formats.hostfile.policy_to_data`): peak
rates, traffic classes and the rest of what Neutron's rules cannot say. Its `revision` grows with
every change; `save` compares it in the write's own transaction (the conditional write behind
If-Match), so that two clients that read the same revision never both replace it.

A policy that native ports name (fleet_desired.policy_id) is copied into their rows: `save` and
`remove` take a `then`, run in their own transaction, that re-derives those rows or refuses the
deletion (services.native_policies). So the policies' writes take the desired rows' writer lock
(neutron_tables.WRITER): a port that attaches a policy and a change of that policy take turns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Integer, String, Text, UniqueConstraint, delete, insert, select, update

from vmqos.core.errors import ConflictError, NotFound, PreconditionFailed
from sqlalchemy.orm import Mapped, mapped_column

from vmqos.store.neutron_tables import WRITER, Then
from vmqos.store.schema import Base, UtcDateTime, table_of
from vmqos.store.store import Store

_W = WRITER  # the desired rows' writer lock: a policy's write re-derives the rows that name it


class NativePolicyRow(Base):
    __tablename__ = "native_policies"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_native_policies_project_name"),)

    id: Mapped[str] = mapped_column(String, primary_key=True)
    project_id: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    description: Mapped[str] = mapped_column(String)
    qos: Mapped[str] = mapped_column(Text)  # JSON: the host file's policy form
    revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


native_policies = table_of(NativePolicyRow)
_COLUMNS = ("id", "project_id", "name", "description", "qos", "revision", "created_at", "updated_at")


@dataclass(frozen=True)
class StoredNativePolicy:
    id: str
    project_id: str
    name: str
    description: str
    qos: str
    revision: int
    created_at: datetime
    updated_at: datetime


def _duplicate(policy: StoredNativePolicy) -> ConflictError:
    return ConflictError(f"name: project {policy.project_id} has a policy named {policy.name!r} already; choose "
                         "another name, or change that one (PUT /v1/policies/ID)")


def read(store: Store, policy_id: str | None = None, *, project_id: str | None = None) -> list[StoredNativePolicy]:
    """The policies (the one with `policy_id`; a project's only, if given), by project and name."""
    c = native_policies.c
    query = select(*(c[name] for name in _COLUMNS)).order_by(c.project_id, c.name)
    if policy_id is not None:
        query = query.where(c.id == policy_id)
    if project_id is not None:
        query = query.where(c.project_id == project_id)
    with store._tx("reading the native policies") as conn:
        return [StoredNativePolicy(*row) for row in conn.execute(query)]


def read_in(conn: Connection, policy_id: str) -> StoredNativePolicy | None:
    """The policy, read in a transaction the caller holds (a port that attaches it, under the writer lock)."""
    c = native_policies.c
    row = conn.execute(select(*(c[name] for name in _COLUMNS)).where(c.id == policy_id)).first()
    return None if row is None else StoredNativePolicy(*row)


def create(store: Store, policy: StoredNativePolicy) -> None:
    c = native_policies.c
    with store._tx(f"creating policy {policy.name}", write=_W) as conn:
        if conn.execute(select(c.id).where(c.project_id == policy.project_id, c.name == policy.name)).first():
            raise _duplicate(policy)
        conn.execute(insert(native_policies).values(**{name: getattr(policy, name) for name in _COLUMNS}))


def save(store: Store, policy: StoredNativePolicy, *, expect: int | None, then: Then | None = None) -> None:
    """Replace the row with `policy` (whose revision is the next one); `expect`: the revision the writer
    read (If-Match), None for an unconditional write. 412 when it moved, 404 when the row is gone.
    `then` runs after the change, in the same transaction (the rows of the ports that name it)."""
    c = native_policies.c
    with store._tx(f"changing policy {policy.id}", write=_W) as conn:
        current = conn.execute(select(c.revision).where(c.id == policy.id)).scalar()
        if current is None:
            raise NotFound(f"policy {policy.id}: no such policy (GET /v1/policies lists them)")
        if expect is not None and current != expect:
            raise PreconditionFailed(
                f"policy {policy.id} is at revision {current}, not {expect} as read (If-Match): someone changed "
                "it in between; read it again (GET) and apply the change to what it holds now")
        clash = conn.execute(select(c.id).where(c.project_id == policy.project_id, c.name == policy.name,
                                                c.id != policy.id)).first()
        if clash:
            raise _duplicate(policy)
        conn.execute(update(native_policies).where(c.id == policy.id).values(
            name=policy.name, description=policy.description, qos=policy.qos,
            revision=current + 1, updated_at=policy.updated_at))
        if then is not None:
            then(conn)


def remove(store: Store, policy_id: str, *, expect: int | None = None, then: Then | None = None) -> bool:
    """Delete the policy; `then` runs first in the same transaction (and may refuse: the ports that name it).
    False when there is no such row."""
    c = native_policies.c
    with store._tx(f"deleting policy {policy_id}", write=_W) as conn:
        current = conn.execute(select(c.revision).where(c.id == policy_id)).scalar()
        if current is None:
            return False
        if expect is not None and current != expect:
            raise PreconditionFailed(f"policy {policy_id} is at revision {current}, not {expect} as read "
                                     "(If-Match): read it again before deleting it")
        if then is not None:
            then(conn)
        conn.execute(delete(native_policies).where(c.id == policy_id))
    return True
