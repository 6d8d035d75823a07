"""Neutron QoS policies and their tags, as a project's callers may see, change and attach them.

The use cases behind the API server's `/v2.0/qos/policies`. Every change is read first as the vmqos
model reads a Neutron policy (`core.formats.neutron.qos_from_rules`: one rule per type and
direction, the same checks and notes as `vmqos convert`), so a stored policy is always one vmqos
can enforce; `as_policy` gives it as the model's Policy. Rules are in `policy_rules`, RBAC
entries in `rbac`.

Who sees what follows Neutron's defaults: a project sees its own policies and those shared with
it (an RBAC entry for '*' or for the project: `shared` is true for it then, as Neutron shows it),
an admin sees all; another project's policy is "not found", not "forbidden", so ids do not leak;
a reader may read but not write (403 on what it can see). Neutron's own default lets only admins
(or a project manager) write QoS policies; here a project's member may too.

The port and network use cases call `attachable` ("may this caller attach this policy?");
deleting a policy in use, or an RBAC entry a project's ports depend on, is refused (`usages`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Callable

from vmqos.core.formats.neutron import qos_from_rules
from vmqos.core.formats.neutron_rules import FIELDS
from vmqos.core.model.host import Policy
from vmqos.services.identity import Caller
from vmqos.services.neutron_input import (
    POLICY,
    NeutronError,
    bad_request,
    read_body,
    to_boolean,
)
from vmqos.services.neutron_listing import Listing, Page, as_integer, as_is, read_query, select
from vmqos.services.neutron_tags import Taggable
from vmqos.store import Store
from vmqos.store import neutron_tables as neutron_records
from vmqos.store.neutron_tables import Then
from vmqos.store import qos as records
from vmqos.store.qos import DefaultPolicyExists, PolicyInUse, StoredPolicy, StoredRule


# neutron-lib qos (+ qos-default, standard-attr-description, standard-attr-revisions, -tag): is_filter, is_sort_key
LISTING = Listing(filters={"id": as_is, "name": as_is, "description": as_is, "project_id": as_is,
                           "tenant_id": as_is, "shared": to_boolean, "is_default": to_boolean,
                           "revision_number": as_integer},
                  sort_keys=("id", "name", "project_id", "tenant_id"), tags=True)


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now(at: datetime | None = None) -> datetime:
    return (at or datetime.now(UTC)).replace(microsecond=0)


def rule_view(rule: StoredRule, *, in_policy: bool = False) -> dict[str, Any]:
    """A rule as Neutron shows it: alone (its id and fields), or in its policy's `rules` (with its
    type and policy id, as QosRule.to_dict gives it)."""
    view: dict[str, Any] = {"id": rule.id, **{k: rule.values[k] for k in FIELDS[rule.type] if k in rule.values}}
    if in_policy:
        view |= {"qos_policy_id": rule.policy_id, "type": rule.type}
    return view


def _project(caller: Caller) -> str | None:
    return caller.project.id if caller.project else None


def policy_view(policy: StoredPolicy, caller: Caller) -> dict[str, Any]:
    """The policy as `caller` sees it: `shared` says whether it is shared with the caller's project."""
    return {"id": policy.id, "name": policy.name, "description": policy.description,
            "shared": policy.shared_with(_project(caller)), "is_default": policy.is_default,
            "project_id": policy.project_id, "tenant_id": policy.project_id,
            "rules": [rule_view(r, in_policy=True) for r in policy.rules], "tags": list(policy.tags),
            "revision_number": policy.revision_number, "created_at": _time(policy.created_at),
            "updated_at": _time(policy.updated_at)}


def as_policy(policy: StoredPolicy) -> Policy:
    """The stored policy as the vmqos model's Policy (origin "neutron")."""
    qos, _notes = qos_from_rules([{"type": r.type, **r.values} for r in policy.rules])
    return Policy(name=policy.name or policy.id, qos=qos, origin="neutron")


# ------------------------------------------------------------------ who may see, change and attach what


def owns(caller: Caller, policy: StoredPolicy) -> bool:
    return caller.project is not None and policy.project_id == caller.project.id


def visible(caller: Caller, policy: StoredPolicy) -> bool:
    return caller.is_admin or owns(caller, policy) or policy.shared_with(_project(caller))


def not_found(policy_id: str) -> NeutronError:
    return NeutronError(404, "QosPolicyNotFound", f"QoS policy {policy_id} could not be found.")


def forbidden(action: str) -> NeutronError:
    return NeutronError(403, "PolicyNotAuthorized", f"rule:{action} is disallowed by policy")


def get(store: Store, caller: Caller, policy_id: str) -> StoredPolicy:
    """The policy if the caller sees it; QosPolicyNotFound otherwise."""
    found = records.list_policies(store, policy_id)
    if not found or not visible(caller, found[0]):
        raise not_found(policy_id)
    return found[0]


def writable(store: Store, caller: Caller, policy_id: str, action: str) -> StoredPolicy:
    """The policy if the caller may change it; 404 when it may not even see it, 403 when it sees it."""
    policy = get(store, caller, policy_id)
    if not caller.can_write or not (caller.is_admin or owns(caller, policy)):
        raise forbidden(action)
    return policy


def attachable(store: Store, caller: Caller, policy_id: str) -> StoredPolicy:
    """The policy if `caller` may attach it to a port or a network: its own project's, shared with the
    caller's project (`shared`, or an RBAC entry for it), or any policy for an admin. Otherwise
    Neutron's QosPolicyNotFound (404), which a port create or update answers with too."""
    return get(store, caller, policy_id)


@dataclass(frozen=True)
class Usage:
    """One port or network that uses a policy, and the project that owns it."""

    object_type: str  # "port" or "network", as QosPolicyInUse names them
    object_id: str
    project_id: str


def usages(store: Store, policy_id: str) -> list[Usage]:
    """The ports and networks that use the policy (an RBAC entry they depend on cannot go)."""
    return [Usage(*user) for user in neutron_records.policy_users(store, policy_id)]


def check_policy(policy: StoredPolicy) -> StoredPolicy:
    """The policy if the vmqos model reads its rules (one per type and direction, valid values)."""
    seen: dict[tuple[str, str | None], str] = {}
    for rule in policy.rules:
        key = (rule.type, rule.values.get("direction"))
        if key in seen:
            raise NeutronError(409, "QoSRulesConflict", f"Rule {rule.type} conflicts with rule {seen[key]} which "
                                                        f"already exists in QoS Policy {policy.id}.")
        seen[key] = rule.id
    as_policy(policy)
    return policy


def save(store: Store, policy: StoredPolicy, replaces: int | None, sharer: str | None = None,
         then: Then | None = None) -> StoredPolicy:
    """Store the checked policy; `then` runs in the same transaction (a rule change's desired rows)."""
    try:
        records.save_policy(store, check_policy(policy), replaces=replaces, sharer=sharer, then=then)
    except DefaultPolicyExists as exc:
        raise NeutronError(409, "QoSPolicyDefaultAlreadyExists", str(exc)) from None
    return policy


def bump(policy: StoredPolicy, at: datetime | None = None, **changes: Any) -> StoredPolicy:
    """A change of the policy, its rules or its tags raises its revision_number, as Neutron does."""
    return replace(policy, **changes, revision_number=policy.revision_number + 1, updated_at=now(at))


# ------------------------------------------------------------------ policies


def list_policies(store: Store, caller: Caller, params: list[tuple[str, str]]) -> Page:
    """The policies the caller sees that the query's filters match, sorted and paged as Neutron does."""
    query = read_query(params, LISTING)
    return select([policy_view(p, caller) for p in records.list_policies(store) if visible(caller, p)], query)


def show_policy(store: Store, caller: Caller, policy_id: str) -> dict[str, Any]:
    return policy_view(get(store, caller, policy_id), caller)


def owner_of_new(caller: Caller, values: dict[str, Any]) -> str:
    """The project a new object belongs to: the caller's, or another one only an admin may name."""
    own = caller.project.id if caller.project else ""
    project = values.get("project_id") or values.get("tenant_id") or own
    if project != own and not caller.is_admin:
        raise bad_request("Specifying 'project_id' or 'tenant_id' other than the authenticated project in "
                          "request requires admin privileges")
    return str(project)


def create_policy(store: Store, caller: Caller, body: Any, *, at: datetime | None = None) -> dict[str, Any]:
    if not caller.can_write:
        raise forbidden("create_policy")
    values = read_body(body, "policy", POLICY, create=True)
    project = owner_of_new(caller, values)
    created = now(at)
    policy = StoredPolicy(str(uuid.uuid4()), project, values["name"], values["description"], values["shared"],
                          values["is_default"], 1, (), created, created, ())
    save(store, policy, None, sharer=_project(caller))
    return show_policy(store, caller, policy.id)


def check_unshare(store: Store, policy: StoredPolicy, target: str) -> None:
    """Neutron's _validate_rbac_policy_delete: removing the sharing with `target` ('*' or a project)
    must leave every project whose ports or networks use the policy a way to it (RbacPolicyInUse)."""
    if target == policy.project_id:
        return
    bound = {u.project_id for u in usages(store, policy.id)} - {policy.project_id}
    shared = [e.target_project for e in policy.access if e.action == records.ACCESS_AS_SHARED]
    if target != records.WILDCARD:
        in_use = records.WILDCARD not in shared and target in bound
    else:
        in_use = not bound <= {t for t in shared if t != records.WILDCARD}
    if in_use:
        raise NeutronError(409, "RbacPolicyInUse", f"RBAC policy on object {policy.id} cannot be removed because "
                                                   f"other objects depend on it.\nDetails: project_id={target}")


def update_policy(store: Store, caller: Caller, policy_id: str, body: Any,
                  *, at: datetime | None = None) -> dict[str, Any]:
    policy = writable(store, caller, policy_id, "update_policy")
    values = read_body(body, "policy", POLICY, create=False)
    changes = {k: values[k] for k in ("name", "description", "shared", "is_default") if k in values}
    if policy.shared and changes.get("shared") is False:
        check_unshare(store, policy, records.WILDCARD)
    save(store, bump(policy, at, **changes), policy.revision_number, sharer=_project(caller))
    return show_policy(store, caller, policy_id)


def delete_policy(store: Store, caller: Caller, policy_id: str) -> None:
    writable(store, caller, policy_id, "delete_policy")
    try:  # checked in the delete's own transaction, so that no attach slips in between
        deleted = records.delete_policy(store, policy_id)
    except PolicyInUse as exc:  # attached to a port or a network: Neutron's 409
        raise NeutronError(409, "QosPolicyInUse", str(exc)) from None
    if not deleted:
        raise not_found(policy_id)


# ------------------------------------------------------------------ tags (standard-attr-tag)


def _retag(store: Store, policy: StoredPolicy, tags: tuple[str, ...], at: datetime | None) -> None:
    save(store, bump(policy, at, tags=tags), policy.revision_number)


TAGGABLE: Taggable[StoredPolicy] = Taggable(
    "policies", "policy", get, lambda caller, policy: caller.is_admin or owns(caller, policy),
    lambda policy: policy.tags, _retag)
