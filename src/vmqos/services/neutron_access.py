"""Who may see, change and attach what among Neutron's networks, ports and QoS policies.

Neutron's defaults (neutron/conf/policies/network.py, port.py, qos.py), as this server applies them:
a project sees its own networks and ports and the shared networks; an admin sees everything;
another project's object is "not found", never "forbidden", so ids do not leak; a reader reads and
never writes (403 on what it sees). `shared` on a network and a port's `binding:host_id` and
`binding:profile` are set by an admin only (they bind a port to a host: Nova's job); a port's
binding attributes other than its vnic_type are shown to an admin only.

A QoS policy may be attached by whoever may use it (`attachable_policy`: the one place that says
so); one the caller may not use is Neutron's QosPolicyNotFound (404), and taking away a policy the
caller may no longer use is Neutron's PolicyRemoveAuthorizationError (403).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vmqos.services import policies
from vmqos.services.identity import Caller
from vmqos.services.neutron_attributes import ADMIN_ONLY, ATTRIBUTES, UNSET
from vmqos.services.neutron_input import NeutronError, bad_request
from vmqos.store import Store
from vmqos.store.qos import StoredPolicy


def time_text(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_utc(now: datetime | None = None) -> datetime:
    """Stored to the microsecond (shown to the second, as Neutron shows it): of two ports made in one
    second that name one device, the first keeps it, whatever their ids."""
    return now or datetime.now(UTC)


def own_project(caller: Caller) -> str:
    return caller.project.id if caller.project else ""


def owns(caller: Caller, project_id: str) -> bool:
    return caller.project is not None and project_id == caller.project.id


def forbidden(action: str, attributes: tuple[str, ...] = ()) -> NeutronError:
    """oslo.policy's refusal, worded as Neutron's: the action's rule, and-ed with each attribute's."""
    rules = [f"rule:{action}", *(f"rule:{action}:{a}" for a in attributes)]
    text = rules[0] if len(rules) == 1 else "(" + " and ".join(rules) + ")"
    return NeutronError(403, "PolicyNotAuthorized", f"{text} is disallowed by policy")


def check_write(caller: Caller, action: str) -> None:
    if not caller.can_write:
        raise forbidden(action)


def check_admin_attributes(caller: Caller, resource: str, action: str, values: dict[str, Any], body: Any,
                           *, create: bool) -> None:
    """Refuse an admin-only attribute a non-admin set explicitly (neutron's _is_attribute_explicitly_set:
    on an update, named in the body; on a create, named with another value than its default)."""
    asked = body.get(resource, {}) if isinstance(body, dict) else {}
    given = tuple(a for a in ADMIN_ONLY[resource] if a in asked
                  and (not create or values.get(a) != ATTRIBUTES[resource][a].default))
    if given and not caller.is_admin:
        raise forbidden(action, given)


def project_for(caller: Caller, values: dict[str, Any]) -> str:
    """The project a new object belongs to: the caller's, or another one that only an admin may name."""
    own = own_project(caller)
    project = values.get("project_id") or values.get("tenant_id") or own
    if project != own and not caller.is_admin:
        raise bad_request("Specifying 'project_id' or 'tenant_id' other than the authenticated project in "
                          "request requires admin privileges")
    return str(project)


# ------------------------------------------------------------------ QoS policies a port or network may name


policy_not_found = policies.not_found  # Neutron's QosPolicyNotFound, one wording with the policy routes


def attachable_policy(store: Store, caller: Caller, policy_id: str) -> StoredPolicy:
    """The QoS policy if the caller may attach it (an admin, the policy's project, a project it is
    shared with, by '*' or by an RBAC entry naming it); QosPolicyNotFound otherwise."""
    return policies.attachable(store, caller, policy_id)


def check_policy_change(store: Store, caller: Caller, old: str | None, new: Any) -> None:
    """A change of an object's policy from `old` to `new` (UNSET: no change asked for).

    Neutron's qos plugin: the old policy must still be one the caller may use (else
    PolicyRemoveAuthorizationError), the new one must be attachable (else QosPolicyNotFound)."""
    if new is UNSET or new == old:
        return
    if old is not None:
        try:
            attachable_policy(store, caller, old)
        except NeutronError:
            raise NeutronError(403, "PolicyRemoveAuthorizationError",
                               f"Failed to remove provided policy {old} because you are not authorized.") from None
    if new is not None:
        attachable_policy(store, caller, new)

