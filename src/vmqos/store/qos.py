"""The API's Neutron QoS policies, their rules and their RBAC entries, one row each, owned by a project.

A policy here is Neutron's object (id, project, name, shared, default, revision, tags) with its
rules as Neutron states them (kbit/s, kilobits); services/policies.py checks every change through
the vmqos model's Neutron reader before it is stored, so every stored policy reads as a vmqos
Policy. They are not the host file's `policies` table: those belong to a scope's desired state,
which `vmqos apply` replaces as a whole; these are objects a control plane changes one at a time.

RBAC entries (`qos_policy_rbacs`, Neutron's qosrbacs) share a policy with one project or with
every project ('*'). The policy row's `shared` column mirrors "there is a '*' entry": both are
written in one transaction, so a list of the policies shared with everyone needs no join.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from vmqos.core.errors import ConflictError
from vmqos.store.neutron_tables import Then, bump, policy_user
from vmqos.store.schema import Base, UtcDateTime, table_of
from vmqos.store.store import Store

_W = "qos"  # the writer lock's name for every change here


class DefaultPolicyExists(ConflictError):
    """The project has a default QoS policy already (Neutron's QoSPolicyDefaultAlreadyExists)."""


class DuplicateRbac(ConflictError):
    """An RBAC entry with the same object, action and target exists (Neutron's DuplicateRbacPolicy)."""


class PolicyInUse(ConflictError):
    """The policy is attached to a port or a network (Neutron's QosPolicyInUse)."""

    def __init__(self, policy_id: str, object_type: str, object_id: str) -> None:
        self.policy_id, self.object_type, self.object_id = policy_id, object_type, object_id
        super().__init__(f"QoS Policy {policy_id} is used by {object_type} {object_id}.")


class QosPolicyRow(Base):
    __tablename__ = "qos_policies"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    project_id: Mapped[str] = mapped_column(String, index=True)
    name: Mapped[str] = mapped_column(String)
    description: Mapped[str] = mapped_column(String)
    shared: Mapped[bool] = mapped_column(Boolean)
    is_default: Mapped[bool] = mapped_column(Boolean)
    revision_number: Mapped[int] = mapped_column(Integer)
    tags: Mapped[str] = mapped_column(Text)  # JSON list of strings
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class QosRuleRow(Base):
    __tablename__ = "qos_rules"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    policy_id: Mapped[str] = mapped_column(String, ForeignKey("qos_policies.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String)
    values: Mapped[str] = mapped_column(Text)  # JSON object of the rule's fields as Neutron states them


class QosPolicyRbacRow(Base):
    """One RBAC entry on a QoS policy: `project_id` (the entry's owner) lets `target_project` do `action`."""

    __tablename__ = "qos_policy_rbacs"
    __table_args__ = (UniqueConstraint("target_project", "object_id", "action"),)

    id: Mapped[str] = mapped_column(String, primary_key=True)
    project_id: Mapped[str] = mapped_column(String, index=True)
    object_id: Mapped[str] = mapped_column(String, ForeignKey("qos_policies.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String)
    target_project: Mapped[str] = mapped_column(String, index=True)  # a project id, or '*' for every project


qos_policies = table_of(QosPolicyRow)
qos_rules = table_of(QosRuleRow)
qos_policy_rbacs = table_of(QosPolicyRbacRow)
WILDCARD = "*"
ACCESS_AS_SHARED = "access_as_shared"


@dataclass(frozen=True)
class StoredRule:
    id: str
    policy_id: str
    type: str
    values: dict[str, Any]


@dataclass(frozen=True)
class StoredRbac:
    id: str
    project_id: str
    object_id: str
    action: str
    target_project: str


@dataclass(frozen=True)
class StoredPolicy:
    id: str
    project_id: str
    name: str
    description: str
    shared: bool
    is_default: bool
    revision_number: int
    tags: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    rules: tuple[StoredRule, ...]
    access: tuple[StoredRbac, ...] = ()  # its RBAC entries, as read (ignored when saving)

    def shared_with(self, project_id: str | None) -> bool:
        """Neutron's `shared` as one project sees it: an access_as_shared entry for '*' or for it."""
        return any(e.action == ACCESS_AS_SHARED and e.target_project in (WILDCARD, project_id)
                   for e in self.access)


_RBAC_COLUMNS = ("id", "project_id", "object_id", "action", "target_project")
_COLUMNS = ("id", "project_id", "name", "description", "shared", "is_default", "revision_number", "tags",
            "created_at", "updated_at")


def list_policies(store: Store, policy_id: str | None = None) -> list[StoredPolicy]:
    """Every policy (or the one with `policy_id`) with its rules, in creation order."""
    with store._tx("reading QoS policies") as conn:
        return read_policies(conn, None if policy_id is None else (policy_id,))


def read_policies(conn: Connection, ids: Collection[str] | None = None) -> list[StoredPolicy]:
    """The policies with `ids` (every one for None) with their rules, in creation order, inside the
    caller's transaction."""
    p, r, a = qos_policies.c, qos_rules.c, qos_policy_rbacs.c
    query = select(*(p[c] for c in _COLUMNS)).order_by(p.created_at, p.id)
    rules_q = select(r.id, r.policy_id, r.type, r["values"]).order_by(r.policy_id, r.id)
    access_q = select(*(a[c] for c in _RBAC_COLUMNS)).order_by(a.object_id, a.id)
    if ids is not None:
        query, rules_q = query.where(p.id.in_(ids)), rules_q.where(r.policy_id.in_(ids))
        access_q = access_q.where(a.object_id.in_(ids))
    rows = conn.execute(query).all()
    rule_rows = conn.execute(rules_q).all()
    access_rows = conn.execute(access_q).all()
    by_policy: dict[str, list[StoredRule]] = {}
    for rid, pid, rtype, values in rule_rows:
        by_policy.setdefault(pid, []).append(StoredRule(rid, pid, rtype, json.loads(values)))
    access: dict[str, list[StoredRbac]] = {}
    for access_row in access_rows:
        entry = StoredRbac(*access_row)
        access.setdefault(entry.object_id, []).append(entry)
    found = []
    for row in rows:
        values = dict(zip(_COLUMNS, row))
        values["tags"] = tuple(json.loads(values["tags"]))
        found.append(StoredPolicy(**values, rules=tuple(by_policy.get(values["id"], ())),
                                  access=tuple(access.get(values["id"], ()))))
    return found


def _row(policy: StoredPolicy) -> dict[str, Any]:
    row = {c: getattr(policy, c) for c in _COLUMNS}
    row["tags"] = json.dumps(list(policy.tags))
    return row


def save_policy(store: Store, policy: StoredPolicy, *, replaces: int | None = None,
                sharer: str | None = None, then: Then | None = None) -> None:
    """Create the policy (`replaces` None) or replace the one at revision `replaces`, rules and all.

    One transaction; a policy changed by another request since it was read is a ConflictError
    rather than a lost update; a second default policy in a project is DefaultPolicyExists, checked in
    the same transaction (Neutron keeps one per project and refuses another). `policy.shared` is
    the '*' entry: made (owned by `sharer`, else the policy's project) when it becomes True, removed
    when it becomes False, as Neutron's `shared` attribute does."""
    p, r, a = qos_policies.c, qos_rules.c, qos_policy_rbacs.c
    with store._tx(f"saving QoS policy {policy.id}", write=_W) as conn:
        if replaces is None:
            conn.execute(insert(qos_policies).values(**_row(policy)))
        elif not conn.execute(update(qos_policies).where(p.id == policy.id, p.revision_number == replaces)
                              .values(**_row(policy))).rowcount:
            raise ConflictError(f"QoS policy {policy.id} was changed or deleted by another request meanwhile; "
                                "read it again and retry")
        if policy.is_default and conn.execute(select(p.id).where(
                p.project_id == policy.project_id, p.id != policy.id, p.is_default.is_(True))).first():
            raise DefaultPolicyExists(f"A default QoS policy exists for project {policy.project_id}.")
        conn.execute(delete(qos_rules).where(r.policy_id == policy.id))
        if policy.rules:
            conn.execute(insert(qos_rules), [{"id": rule.id, "policy_id": policy.id, "type": rule.type,
                                               "values": json.dumps(rule.values, sort_keys=True)}
                                              for rule in policy.rules])
        wildcard = (a.object_id == policy.id, a.target_project == WILDCARD, a.action == ACCESS_AS_SHARED)
        if not policy.shared:
            conn.execute(delete(qos_policy_rbacs).where(*wildcard))
        elif conn.execute(select(a.id).where(*wildcard)).first() is None:
            conn.execute(insert(qos_policy_rbacs).values(
                id=str(uuid.uuid4()), project_id=sharer or policy.project_id, object_id=policy.id,
                action=ACCESS_AS_SHARED, target_project=WILDCARD))
        bump(conn)  # networks and ports: the all-in-one enforcer follows this counter
        if then is not None:  # what the change implies (the fleet's rows of its ports), in the same transaction
            then(conn)


def delete_policy(store: Store, policy_id: str) -> bool:
    """False when it does not exist; PolicyInUse while a port or network names it (checked here, in the
    delete's transaction, so that an attach cannot slip in between)."""
    with store._tx(f"deleting QoS policy {policy_id}", write=_W) as conn:
        # networks and ports: a policy still attached is not deleted; every deletion is counted
        user = policy_user(conn, policy_id)
        if user is not None:
            raise PolicyInUse(policy_id, *user)
        bump(conn)
        conn.execute(delete(qos_rules).where(qos_rules.c.policy_id == policy_id))
        conn.execute(delete(qos_policy_rbacs).where(qos_policy_rbacs.c.object_id == policy_id))
        return bool(conn.execute(delete(qos_policies).where(qos_policies.c.id == policy_id)).rowcount)


# ------------------------------------------------------------------ RBAC entries


def list_rbac(store: Store, entry_id: str | None = None) -> list[StoredRbac]:
    """Every RBAC entry on a QoS policy (or the one with `entry_id`), in id order."""
    a = qos_policy_rbacs.c
    query = select(*(a[c] for c in _RBAC_COLUMNS)).order_by(a.id)
    if entry_id is not None:
        query = query.where(a.id == entry_id)
    with store._tx("reading QoS RBAC entries") as conn:
        return [StoredRbac(*row) for row in conn.execute(query).all()]


def _mirror_shared(conn: Connection, policy_id: str) -> None:
    a = qos_policy_rbacs.c
    shared = conn.execute(select(a.id).where(a.object_id == policy_id, a.target_project == WILDCARD,
                                             a.action == ACCESS_AS_SHARED)).first() is not None
    conn.execute(update(qos_policies).where(qos_policies.c.id == policy_id).values(shared=shared))


def save_rbac(store: Store, entry: StoredRbac, *, create: bool) -> bool:
    """Add the entry (`create`) or change its target; False when its policy (or, to change, the entry) is
    gone. DuplicateRbac when the policy has an entry with the same action and target already."""
    a = qos_policy_rbacs.c
    with store._tx(f"saving RBAC entry {entry.id}", write=_W) as conn:  # writers of "qos" take turns
        if not conn.execute(select(qos_policies.c.id).where(qos_policies.c.id == entry.object_id)).first():
            return False
        if conn.execute(select(a.id).where(a.object_id == entry.object_id, a.action == entry.action,
                                           a.target_project == entry.target_project, a.id != entry.id)).first():
            raise DuplicateRbac("An RBAC policy already exists with those values.")
        if create:
            conn.execute(insert(qos_policy_rbacs).values(**{c: getattr(entry, c) for c in _RBAC_COLUMNS}))
        elif not conn.execute(update(qos_policy_rbacs).where(a.id == entry.id)
                              .values(target_project=entry.target_project)).rowcount:
            return False
        _mirror_shared(conn, entry.object_id)
    return True


def delete_rbac(store: Store, entry: StoredRbac) -> bool:
    with store._tx(f"deleting RBAC entry {entry.id}", write=_W) as conn:
        gone = bool(conn.execute(delete(qos_policy_rbacs).where(qos_policy_rbacs.c.id == entry.id)).rowcount)
        _mirror_shared(conn, entry.object_id)
    return gone
