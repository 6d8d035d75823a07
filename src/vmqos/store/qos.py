"""The API's Neutron QoS policies and their rules, one row each, owned by a project.

A policy here is Neutron's object (id, project, name, shared, default, revision, tags) with its
rules as Neutron states them (kbit/s, kilobits); services/policies.py checks every change through
the vmqos model's Neutron reader before it is stored, so every stored policy reads as a vmqos
Policy. They are not the host file's `policies` table: those belong to a scope's desired state,
which `vmqos apply` replaces as a whole; these are objects a control plane changes one at a time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, delete, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from vmqos.core.errors import ConflictError
from vmqos.store.neutron_tables import bump, policy_user
from vmqos.store.schema import Base, UtcDateTime, table_of
from vmqos.store.store import Store

_W = "qos"  # the writer lock's name for every change here


class DefaultPolicyExists(ConflictError):
    """The project has a default QoS policy already (Neutron's QoSPolicyDefaultAlreadyExists)."""


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


qos_policies = table_of(QosPolicyRow)
qos_rules = table_of(QosRuleRow)


@dataclass(frozen=True)
class StoredRule:
    id: str
    policy_id: str
    type: str
    values: dict[str, Any]


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


_COLUMNS = ("id", "project_id", "name", "description", "shared", "is_default", "revision_number", "tags",
            "created_at", "updated_at")


def list_policies(store: Store, policy_id: str | None = None) -> list[StoredPolicy]:
    """Every policy (or the one with `policy_id`) with its rules, in creation order."""
    p, r = qos_policies.c, qos_rules.c
    query = select(*(p[c] for c in _COLUMNS)).order_by(p.created_at, p.id)
    rules_q = select(r.id, r.policy_id, r.type, r["values"]).order_by(r.policy_id, r.id)
    if policy_id is not None:
        query, rules_q = query.where(p.id == policy_id), rules_q.where(r.policy_id == policy_id)
    with store._tx("reading QoS policies") as conn:
        rows = conn.execute(query).all()
        rule_rows = conn.execute(rules_q).all()
    by_policy: dict[str, list[StoredRule]] = {}
    for rid, pid, rtype, values in rule_rows:
        by_policy.setdefault(pid, []).append(StoredRule(rid, pid, rtype, json.loads(values)))
    found = []
    for row in rows:
        values = dict(zip(_COLUMNS, row))
        values["tags"] = tuple(json.loads(values["tags"]))
        found.append(StoredPolicy(**values, rules=tuple(by_policy.get(values["id"], ()))))
    return found


def _row(policy: StoredPolicy) -> dict[str, Any]:
    row = {c: getattr(policy, c) for c in _COLUMNS}
    row["tags"] = json.dumps(list(policy.tags))
    return row


def save_policy(store: Store, policy: StoredPolicy, *, replaces: int | None = None) -> None:
    """Create the policy (`replaces` None) or replace the one at revision `replaces`, rules and all.

    One transaction; a policy changed by another request since it was read is a ConflictError
    rather than a lost update; a second default policy in a project is DefaultPolicyExists, checked in
    the same transaction (Neutron keeps one per project and refuses another)."""
    p, r = qos_policies.c, qos_rules.c
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
        bump(conn)  # networks and ports: the all-in-one enforcer follows this counter


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
        return bool(conn.execute(delete(qos_policies).where(qos_policies.c.id == policy_id)).rowcount)
