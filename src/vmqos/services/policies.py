"""Neutron QoS policies and their bandwidth-limit rules, as a project's callers may see and change them.

The use cases behind the API server's `/v2.0/qos/policies`. Every change is read first as the vmqos
model reads a Neutron policy (`core.formats.neutron.qos_from_rules`: one rule per type and
direction, the same checks and notes as `vmqos convert`), so a stored policy is always one vmqos
can enforce; `as_policy` gives it as the model's Policy for the slice that binds policies to ports.

Who sees what follows Neutron's defaults: a project sees its own policies and the shared ones, an
admin sees all; another project's policy is "not found", not "forbidden", so ids do not leak; a
reader may read but not write (403 on what it can see). Neutron's own default lets only admins
(or a project manager) write QoS policies; here a project's member may too.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Iterable

from vmqos.core.formats.neutron import qos_from_rules
from vmqos.core.formats.neutron_rules import BANDWIDTH_LIMIT
from vmqos.core.model.host import Policy
from vmqos.services.identity import Caller
from vmqos.services.neutron_input import (
    BANDWIDTH_LIMIT_RULE,
    POLICY,
    NeutronError,
    bad_request,
    read_body,
    to_boolean,
)
from vmqos.store import Store
from vmqos.store import qos as records
from vmqos.store.qos import DefaultPolicyExists, PolicyInUse, StoredPolicy, StoredRule

_RULE_FIELDS = ("max_kbps", "max_burst_kbps", "direction")
FILTERS = ("id", "name", "description", "project_id", "tenant_id", "shared", "is_default", "revision_number")


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rule_view(rule: StoredRule, *, in_policy: bool = False) -> dict[str, Any]:
    """A rule as Neutron shows it: alone, or in its policy's `rules` (with its type and policy id)."""
    view: dict[str, Any] = {"id": rule.id, **{k: rule.values[k] for k in _RULE_FIELDS}}
    if in_policy:
        view |= {"type": rule.type, "qos_policy_id": rule.policy_id}
    return view


def policy_view(policy: StoredPolicy) -> dict[str, Any]:
    return {"id": policy.id, "name": policy.name, "description": policy.description, "shared": policy.shared,
            "is_default": policy.is_default, "project_id": policy.project_id, "tenant_id": policy.project_id,
            "rules": [rule_view(r, in_policy=True) for r in policy.rules], "tags": list(policy.tags),
            "revision_number": policy.revision_number, "created_at": _time(policy.created_at),
            "updated_at": _time(policy.updated_at)}


def as_policy(policy: StoredPolicy) -> Policy:
    """The stored policy as the vmqos model's Policy (origin "neutron")."""
    qos, _notes = qos_from_rules([{"type": r.type, **r.values} for r in policy.rules])
    return Policy(name=policy.name or policy.id, qos=qos, origin="neutron")


# ------------------------------------------------------------------ who may see and change what


def _visible(caller: Caller, policy: StoredPolicy) -> bool:
    return caller.is_admin or policy.shared or (caller.project is not None and policy.project_id == caller.project.id)


def _not_found(policy_id: str) -> NeutronError:
    return NeutronError(404, "QosPolicyNotFound", f"QoS policy {policy_id} could not be found.")


def _forbidden(action: str) -> NeutronError:
    return NeutronError(403, "PolicyNotAuthorized", f"rule:{action} is disallowed by policy")


def _get(store: Store, caller: Caller, policy_id: str) -> StoredPolicy:
    found = records.list_policies(store, policy_id)
    if not found or not _visible(caller, found[0]):
        raise _not_found(policy_id)
    return found[0]


def _writable(store: Store, caller: Caller, policy_id: str, action: str) -> StoredPolicy:
    """The policy if the caller may change it; 404 when it may not even see it, 403 when it sees it."""
    policy = _get(store, caller, policy_id)
    own = caller.project is not None and policy.project_id == caller.project.id
    if not caller.can_write or not (caller.is_admin or own):
        raise _forbidden(action)
    return policy


def _checked(policy: StoredPolicy) -> StoredPolicy:
    """The policy if the vmqos model reads its rules (one per type and direction, valid values)."""
    seen: dict[tuple[str, str], str] = {}
    for rule in policy.rules:
        key = (rule.type, rule.values["direction"])
        if key in seen:
            raise NeutronError(409, "QoSRulesConflict", f"Rule {rule.type} conflicts with rule {seen[key]} which "
                                                        f"already exists in QoS Policy {policy.id}.")
        seen[key] = rule.id
    as_policy(policy)
    return policy


def _save(store: Store, policy: StoredPolicy, replaces: int | None) -> StoredPolicy:
    try:
        records.save_policy(store, _checked(policy), replaces=replaces)
    except DefaultPolicyExists as exc:
        raise NeutronError(409, "QoSPolicyDefaultAlreadyExists", str(exc)) from None
    return policy


# ------------------------------------------------------------------ policies


def list_policies(store: Store, caller: Caller, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The policies the caller sees that match every filter (a filter given twice matches either value)."""
    wanted: dict[str, set[Any]] = {}
    for key, values in filters.items():
        if key not in FILTERS:
            continue
        field = "project_id" if key == "tenant_id" else key
        if field in ("shared", "is_default"):
            wanted[field] = {to_boolean(v) for v in values}
        elif field == "revision_number":
            wanted[field] = {int(v) for v in values if v.isdigit()}
        else:
            wanted[field] = set(values)
    views = []
    for policy in records.list_policies(store):
        if _visible(caller, policy) and all(getattr(policy, f) in vs for f, vs in wanted.items()):
            views.append(policy_view(policy))
    return views


def show_policy(store: Store, caller: Caller, policy_id: str) -> dict[str, Any]:
    return policy_view(_get(store, caller, policy_id))


def create_policy(store: Store, caller: Caller, body: Any, *, now: datetime | None = None) -> dict[str, Any]:
    if not caller.can_write:
        raise _forbidden("create_policy")
    values = read_body(body, "policy", POLICY, create=True)
    own = caller.project.id if caller.project else ""
    project = values.get("project_id") or values.get("tenant_id") or own
    if project != own and not caller.is_admin:
        raise bad_request("Specifying 'project_id' or 'tenant_id' other than the authenticated project in "
                          "request requires admin privileges")
    at = (now or datetime.now(UTC)).replace(microsecond=0)
    policy = StoredPolicy(str(uuid.uuid4()), project, values["name"], values["description"], values["shared"],
                          values["is_default"], 1, tuple(values["tags"]), at, at, ())
    return policy_view(_save(store, policy, None))


def update_policy(store: Store, caller: Caller, policy_id: str, body: Any,
                  *, now: datetime | None = None) -> dict[str, Any]:
    policy = _writable(store, caller, policy_id, "update_policy")
    values = read_body(body, "policy", POLICY, create=False)
    changes = {k: values[k] for k in ("name", "description", "shared", "is_default") if k in values}
    updated = replace(policy, **changes, revision_number=policy.revision_number + 1,
                      updated_at=(now or datetime.now(UTC)).replace(microsecond=0))
    return policy_view(_save(store, updated, policy.revision_number))


def delete_policy(store: Store, caller: Caller, policy_id: str) -> None:
    _writable(store, caller, policy_id, "delete_policy")
    try:
        deleted = records.delete_policy(store, policy_id)
    except PolicyInUse as exc:  # networks and ports: attached to one, Neutron's 409
        raise NeutronError(409, "QosPolicyInUse", str(exc)) from None
    if not deleted:
        raise _not_found(policy_id)


# ------------------------------------------------------------------ bandwidth-limit rules


def _rule_not_found(rule_id: str, policy_id: str) -> NeutronError:
    return NeutronError(404, "QosRuleNotFound", f"QoS rule {rule_id} for policy {policy_id} could not be found.")


def _bandwidth_rules(policy: StoredPolicy) -> Iterable[StoredRule]:
    return (r for r in policy.rules if r.type == BANDWIDTH_LIMIT)


def list_rules(store: Store, caller: Caller, policy_id: str) -> list[dict[str, Any]]:
    return [rule_view(r) for r in _bandwidth_rules(_get(store, caller, policy_id))]


def show_rule(store: Store, caller: Caller, policy_id: str, rule_id: str) -> dict[str, Any]:
    for rule in _bandwidth_rules(_get(store, caller, policy_id)):
        if rule.id == rule_id:
            return rule_view(rule)
    raise _rule_not_found(rule_id, policy_id)


def _bump(policy: StoredPolicy, rules: tuple[StoredRule, ...], now: datetime | None) -> StoredPolicy:
    """A rule changes its policy: Neutron raises the policy's revision_number with it."""
    return replace(policy, rules=rules, revision_number=policy.revision_number + 1,
                   updated_at=(now or datetime.now(UTC)).replace(microsecond=0))


def create_rule(store: Store, caller: Caller, policy_id: str, body: Any,
                *, now: datetime | None = None) -> dict[str, Any]:
    policy = _writable(store, caller, policy_id, "create_policy_bandwidth_limit_rule")
    values = read_body(body, "bandwidth_limit_rule", BANDWIDTH_LIMIT_RULE, create=True)
    rule = StoredRule(str(uuid.uuid4()), policy.id, BANDWIDTH_LIMIT, {k: values[k] for k in _RULE_FIELDS})
    _save(store, _bump(policy, (*policy.rules, rule), now), policy.revision_number)
    return rule_view(rule)


def update_rule(store: Store, caller: Caller, policy_id: str, rule_id: str, body: Any,
                *, now: datetime | None = None) -> dict[str, Any]:
    policy = _writable(store, caller, policy_id, "update_policy_bandwidth_limit_rule")
    values = read_body(body, "bandwidth_limit_rule", BANDWIDTH_LIMIT_RULE, create=False)
    rules, found = [], None
    for rule in policy.rules:
        if rule.id == rule_id and rule.type == BANDWIDTH_LIMIT:
            found = StoredRule(rule.id, rule.policy_id, rule.type,
                               rule.values | {k: values[k] for k in _RULE_FIELDS if k in values})
            rule = found
        rules.append(rule)
    if found is None:
        raise _rule_not_found(rule_id, policy_id)
    _save(store, _bump(policy, tuple(rules), now), policy.revision_number)
    return rule_view(found)


def delete_rule(store: Store, caller: Caller, policy_id: str, rule_id: str, *, now: datetime | None = None) -> None:
    policy = _writable(store, caller, policy_id, "delete_policy_bandwidth_limit_rule")
    rules = tuple(r for r in policy.rules if not (r.id == rule_id and r.type == BANDWIDTH_LIMIT))
    if len(rules) == len(policy.rules):
        raise _rule_not_found(rule_id, policy_id)
    _save(store, _bump(policy, rules, now), policy.revision_number)
