"""RBAC entries on QoS policies (`/v2.0/rbac-policies`, object_type `qos_policy`): share a policy with one
project, or with every project ('*'), so that it may attach the policy but never change it.

Neutron's rules (neutron/db/rbac_db_mixin.py, neutron/objects/rbac_db.py, conf/policies/rbac.py):
- a member (or an admin) creates, changes and deletes entries; an entry is seen by the project that
  made it (and by admins), not by its target; another one is "not found";
- only the policy's owner or an admin may share it ("Only admins can manipulate policies on objects
  they do not own", a 400); only an admin may share with '*';
- one entry per policy, action and target (DuplicateRbacPolicy, 409); the only action on a QoS
  policy is access_as_shared;
- an entry whose target still has ports or networks on the policy cannot be removed or retargeted
  (RbacPolicyInUse, through `policies.check_unshare` and the usage finders the port slice registers);
- the policy's `shared` attribute is its '*' entry (store.qos keeps them together).
"""

from __future__ import annotations

import uuid
from typing import Any

from vmqos.services import policies
from vmqos.services.identity import Caller
from vmqos.services.neutron_input import RBAC_POLICY, NeutronError, invalid_input, read_body
from vmqos.services.neutron_listing import Listing, Page, as_is, read_query, select
from vmqos.services.policies import forbidden
from vmqos.store import Store
from vmqos.store import qos as records
from vmqos.store.qos import ACCESS_AS_SHARED, WILDCARD, DuplicateRbac, StoredPolicy, StoredRbac

OBJECT_TYPE = "qos_policy"
VALID_ACTIONS = (ACCESS_AS_SHARED,)
# neutron/extensions/rbac.py: every attribute is a filter, none a sort key.
LISTING = Listing(filters={k: as_is for k in ("id", "object_type", "object_id", "target_tenant", "tenant_id",
                                               "project_id", "action")})


def rbac_view(entry: StoredRbac) -> dict[str, Any]:
    """_make_rbac_policy_dict as the API shows it (target_project is target_tenant there)."""
    return {"id": entry.id, "project_id": entry.project_id, "tenant_id": entry.project_id,
            "object_type": OBJECT_TYPE, "object_id": entry.object_id, "action": entry.action,
            "target_tenant": entry.target_project}


def _sees(caller: Caller, entry: StoredRbac) -> bool:
    return caller.is_admin or (caller.project is not None and entry.project_id == caller.project.id)


def _entry(store: Store, caller: Caller, entry_id: str) -> StoredRbac:
    found = records.list_rbac(store, entry_id)
    if not found or not _sees(caller, found[0]):
        raise NeutronError(404, "RbacPolicyNotFound", f"RBAC policy of type unknown with ID {entry_id} not found")
    return found[0]


def _policy(store: Store, policy_id: str) -> StoredPolicy | None:
    found = records.list_policies(store, policy_id)
    return found[0] if found else None


def _owned_policy(store: Store, caller: Caller, policy_id: str) -> StoredPolicy:
    """The policy an entry is made or changed on, if the caller owns it or is an admin."""
    policy = _policy(store, policy_id)
    if policy is not None and (caller.is_admin or policies.owns(caller, policy)):
        return policy
    if policy is None and caller.is_admin:
        raise policies.not_found(policy_id)
    raise invalid_input("Only admins can manipulate policies on objects they do not own")


def list_entries(store: Store, caller: Caller, params: list[tuple[str, str]]) -> Page:
    query = read_query(params, LISTING)
    return select([rbac_view(e) for e in records.list_rbac(store) if _sees(caller, e)], query)


def show_entry(store: Store, caller: Caller, entry_id: str) -> dict[str, Any]:
    return rbac_view(_entry(store, caller, entry_id))


def create_entry(store: Store, caller: Caller, body: Any) -> dict[str, Any]:
    if not caller.can_write:
        raise forbidden("create_rbac_policy")
    values = read_body(body, "rbac_policy", RBAC_POLICY, create=True)
    project = policies.owner_of_new(caller, values)
    target = values["target_tenant"]
    if target == WILDCARD and not caller.is_admin:
        raise forbidden("create_rbac_policy:target_tenant")
    policy = _owned_policy(store, caller, values["object_id"])
    if values["action"] not in VALID_ACTIONS:
        raise NeutronError(400, "InvalidActionForType", f"Invalid action '{values['action']}' for object type "
                                                        f"'{OBJECT_TYPE}'. Valid actions: {VALID_ACTIONS}")
    entry = StoredRbac(str(uuid.uuid4()), project, policy.id, values["action"], target)
    _save(store, entry, create=True)
    return rbac_view(entry)


def _save(store: Store, entry: StoredRbac, *, create: bool) -> None:
    try:
        saved = records.save_rbac(store, entry, create=create)
    except DuplicateRbac as exc:
        raise NeutronError(409, "DuplicateRbacPolicy", str(exc)) from None
    if not saved:  # the policy or the entry was deleted meanwhile
        raise policies.not_found(entry.object_id)


def update_entry(store: Store, caller: Caller, entry_id: str, body: Any) -> dict[str, Any]:
    entry = _entry(store, caller, entry_id)
    if not caller.can_write:
        raise forbidden("update_rbac_policy")
    values = read_body(body, "rbac_policy", RBAC_POLICY, create=False)
    target = values.get("target_tenant", entry.target_project)
    if target == WILDCARD and not caller.is_admin:
        raise forbidden("update_rbac_policy:target_tenant")
    policy = _owned_policy(store, caller, entry.object_id)
    if target not in (entry.target_project, WILDCARD):
        policies.check_unshare(store, policy, entry.target_project)
    changed = StoredRbac(entry.id, entry.project_id, entry.object_id, entry.action, target)
    _save(store, changed, create=False)
    return rbac_view(changed)


def delete_entry(store: Store, caller: Caller, entry_id: str) -> None:
    entry = _entry(store, caller, entry_id)
    if not caller.can_write:
        raise forbidden("delete_rbac_policy")
    policy = _policy(store, entry.object_id)
    if policy is not None:
        policies.check_unshare(store, policy, entry.target_project)
    if not records.delete_rbac(store, entry):
        raise NeutronError(404, "RbacPolicyNotFound", f"RBAC policy of type unknown with ID {entry_id} not found")
