"""The rules of a Neutron QoS policy, all five types, by policy or by rule id (qos-rules-alias), and the
rule types this server's one driver (`vmqos`) supports.

Neutron's checks, in its order (services/qos/qos_plugin.py create_policy_rule/update_policy_rule,
objects/qos/qos_policy_validator.py): a max_kbps below a minimum_bandwidth rule's min_kbps (or the
other way round) in the same direction is QoSRuleParameterConflict; a minimum_packet_rate rule for
`any` next to a directional one is QoSRuleParameterConflict; a second rule of a type in the same
direction (any second dscp_marking rule) is QoSRulesConflict. Then the vmqos model reads the policy
(`policies.check_policy`): it also refuses a min_kpps above the max_kpps of the same direction and a
max_kpps of 0 (Neutron accepts both; vmqos could not enforce them as written).

Who may do what follows Neutron's defaults for rules (conf/policies/qos.py: ADMIN_OR_PARENT_OWNER_*):
only the policy's own project (or an admin) reads a rule by itself, so a project a policy is shared
with sees its rules in the policy and gets "not found" for the rule alone; a reader reads, a member
writes.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

from vmqos.core.formats.neutron_rules import (
    BANDWIDTH_LIMIT,
    MAX_INT,
    MINIMUM_BANDWIDTH,
    MINIMUM_PACKET_RATE,
    RULE_TYPES,
)
from vmqos.services import fleet_desired, policies
from vmqos.services.identity import Caller
from vmqos.services.neutron_input import (
    DIRECTIONS,
    DIRECTIONS_AND_ANY,
    DSCP_MARKS,
    RULES,
    Attribute,
    NeutronError,
    read_body,
    to_boolean,
    to_int,
)
from vmqos.services.neutron_listing import Listing, Page, as_is, read_query, select
from vmqos.services.policies import forbidden, owns, rule_view
from vmqos.store import Store
from vmqos.store import qos as records
from vmqos.store.qos import StoredPolicy, StoredRule

DRIVER = "vmqos"
# Every rule field is a filter and a sort key (neutron-lib's rule attribute maps).
LISTINGS = {rtype: Listing(filters={name: (as_is if name in ("id", "direction") else to_int) for name in attrs},
                           sort_keys=tuple(attrs))
            for rtype, attrs in RULES.items()}
TYPE_LISTING = Listing(filters={"all_rules": to_boolean, "all_supported": to_boolean}, key="type")


def collection(rtype: str) -> str:
    return f"{rtype}_rules"


def _hidden() -> NeutronError:
    """What Neutron's API answers when the policy engine refuses to show an object: it does not exist."""
    return NeutronError(404, "HTTPNotFound", "The resource could not be found.")


def _rule_not_found(rule_id: str, policy_id: str) -> NeutronError:
    return NeutronError(404, "QosRuleNotFound", f"QoS rule {rule_id} for policy {policy_id} could not be found.")


def _reads_rules(caller: Caller, policy: StoredPolicy) -> bool:
    return caller.is_admin or owns(caller, policy)


def _find(policy: StoredPolicy, rtype: str, rule_id: str) -> StoredRule:
    for rule in policy.rules:
        if rule.id == rule_id and rule.type == rtype:
            return rule
    raise _rule_not_found(rule_id, policy.id)


def _changeable(store: Store, caller: Caller, policy_id: str, rtype: str, rule_id: str,
                action: str) -> tuple[StoredPolicy, StoredRule]:
    """The policy and the rule to change or delete: 404 unless the caller reads rules of the policy, then
    403 unless it may write them (Neutron's _update/_delete hide what the caller may not show)."""
    policy = policies.get(store, caller, policy_id)
    rule = _find(policy, rtype, rule_id)
    if not _reads_rules(caller, policy):
        raise _hidden()
    if not caller.can_write:
        raise forbidden(action)
    return policy, rule


# ------------------------------------------------------------------ Neutron's conflict checks


def _conflict(value: Any, policy: StoredPolicy, existing: StoredRule, existing_value: Any) -> NeutronError:
    return NeutronError(409, "QoSRuleParameterConflict",
                        f"Unable to add the rule with value {value} to the policy {policy.id} as the existing rule of "
                        f"type {existing.type} has value {existing_value}.")


def _check_bandwidth(policy: StoredPolicy, data: dict[str, Any]) -> None:
    """check_bandwidth_rule_conflict: on the request's values (a PUT without direction checks every one)."""
    direction = data.get("direction")
    for rule in policy.rules:
        if direction and rule.values.get("direction") != direction:
            continue
        if rule.type == MINIMUM_BANDWIDTH and "max_kbps" in data and rule.values["min_kbps"] > data["max_kbps"]:
            raise _conflict(data["max_kbps"], policy, rule, rule.values["min_kbps"])
        if rule.type == BANDWIDTH_LIMIT and "min_kbps" in data and rule.values["max_kbps"] < data["min_kbps"]:
            raise _conflict(data["min_kbps"], policy, rule, rule.values["max_kbps"])


def _check_min_pps(policy: StoredPolicy, new: StoredRule) -> None:
    """check_min_pps_rule_conflict: `any` and a direction cannot both have a minimum packet rate."""
    if new.type != MINIMUM_PACKET_RATE:
        return
    mine = new.values["direction"]
    for rule in policy.rules:
        if rule.type != MINIMUM_PACKET_RATE or rule.id == new.id:
            continue
        theirs = rule.values["direction"]
        if (mine == "any" and theirs in DIRECTIONS) or (mine in DIRECTIONS and theirs == "any"):
            raise _conflict(mine, policy, rule, theirs)


def _check_duplicate(policy: StoredPolicy, new: StoredRule) -> None:
    """check_rules_conflict: one rule per type and direction (dscp_marking has none: one rule)."""
    for rule in policy.rules:
        if rule.id != new.id and rule.type == new.type and \
                rule.values.get("direction") == new.values.get("direction"):
            raise NeutronError(409, "QoSRulesConflict", f"Rule {new.type} conflicts with rule {rule.id} which "
                                                        f"already exists in QoS Policy {policy.id}.")


# ------------------------------------------------------------------ rules of a policy


def _save_rules(store: Store, policy: StoredPolicy, rules: tuple[StoredRule, ...], at: datetime | None) -> None:
    """Save the policy with `rules` and, in the same transaction, the desired rows of the ports it applies to."""
    changed = policies.bump(policy, at, rules=rules)
    policies.save(store, changed, policy.revision_number, then=fleet_desired.then_rules(policy, changed))


def list_rules(store: Store, caller: Caller, policy_id: str, rtype: str, params: list[tuple[str, str]]) -> Page:
    query = read_query(params, LISTINGS[rtype])
    policy = policies.get(store, caller, policy_id)
    views = [rule_view(r) for r in policy.rules if r.type == rtype] if _reads_rules(caller, policy) else []
    return select(views, query)


def show_rule(store: Store, caller: Caller, policy_id: str, rtype: str, rule_id: str) -> dict[str, Any]:
    policy = policies.get(store, caller, policy_id)
    rule = _find(policy, rtype, rule_id)
    if not _reads_rules(caller, policy):
        raise _hidden()
    return rule_view(rule)


def create_rule(store: Store, caller: Caller, policy_id: str, rtype: str, body: Any,
                *, at: datetime | None = None) -> dict[str, Any]:
    policy = policies.writable(store, caller, policy_id, f"create_policy_{rtype}_rule")
    values = read_body(body, f"{rtype}_rule", RULES[rtype], create=True)
    _check_bandwidth(policy, values)
    rule = StoredRule(str(uuid.uuid4()), policy.id, rtype, {k: v for k, v in values.items() if k != "id"})
    _check_min_pps(policy, rule)
    _check_duplicate(policy, rule)
    _save_rules(store, policy, (*policy.rules, rule), at)
    return rule_view(rule)


def update_rule(store: Store, caller: Caller, policy_id: str, rtype: str, rule_id: str, body: Any,
                *, resource: str | None = None, action: str | None = None,
                at: datetime | None = None) -> dict[str, Any]:
    policy, rule = _changeable(store, caller, policy_id, rtype, rule_id,
                               action or f"update_policy_{rtype}_rule")
    # the alias resources also declare tenant_id (read-only), as qos_rules_alias's attribute maps do
    attributes = RULES[rtype] | {"tenant_id": Attribute(False, False)} if resource else RULES[rtype]
    values = read_body(body, resource or f"{rtype}_rule", attributes, create=False)
    _check_bandwidth(policy, values)
    changed = StoredRule(rule.id, rule.policy_id, rtype, rule.values | values)
    _check_min_pps(policy, changed)
    _check_duplicate(policy, changed)
    rules = tuple(changed if r.id == rule.id else r for r in policy.rules)
    _save_rules(store, policy, rules, at)
    return rule_view(changed)


def delete_rule(store: Store, caller: Caller, policy_id: str, rtype: str, rule_id: str,
                *, action: str | None = None, at: datetime | None = None) -> None:
    policy, rule = _changeable(store, caller, policy_id, rtype, rule_id, action or f"delete_policy_{rtype}_rule")
    rules = tuple(r for r in policy.rules if r.id != rule.id)
    _save_rules(store, policy, rules, at)


# ------------------------------------------------------------------ qos-rules-alias: a rule by its id alone


def _policy_of(store: Store, caller: Caller, rtype: str, rule_id: str) -> str:
    """The id of the policy the rule is in, among those the caller sees (Neutron's _get_policy_id)."""
    for policy in records.list_policies(store):
        if policies.visible(caller, policy) and any(r.id == rule_id and r.type == rtype for r in policy.rules):
            return policy.id
    raise _rule_not_found(rule_id, "")


def show_alias(store: Store, caller: Caller, rtype: str, rule_id: str) -> dict[str, Any]:
    return show_rule(store, caller, _policy_of(store, caller, rtype, rule_id), rtype, rule_id)


def update_alias(store: Store, caller: Caller, rtype: str, rule_id: str, body: Any,
                 *, at: datetime | None = None) -> dict[str, Any]:
    return update_rule(store, caller, _policy_of(store, caller, rtype, rule_id), rtype, rule_id, body,
                       resource=f"alias_{rtype}_rule", action=f"update_alias_{rtype}_rule", at=at)


def delete_alias(store: Store, caller: Caller, rtype: str, rule_id: str, *, at: datetime | None = None) -> None:
    delete_rule(store, caller, _policy_of(store, caller, rtype, rule_id), rtype, rule_id,
                action=f"delete_alias_{rtype}_rule", at=at)


# ------------------------------------------------------------------ rule types


def _parameter(name: str, rtype: str) -> dict[str, Any]:
    """One supported parameter as the driver manager's _parse_parameter_values gives it."""
    if name in ("direction", "dscp_mark"):
        choices: tuple[Any, ...] = DSCP_MARKS if name == "dscp_mark" else \
            DIRECTIONS_AND_ANY if rtype == MINIMUM_PACKET_RATE else DIRECTIONS
        return {"parameter_name": name, "parameter_type": "choices", "parameter_values": list(choices)}
    return {"parameter_name": name, "parameter_type": "range", "parameter_values": {"start": 0, "end": MAX_INT}}


def list_rule_types(caller: Caller, params: list[tuple[str, str]]) -> Page:
    """Every rule type: the one driver supports all of them, so all_rules and all_supported change nothing."""
    query = read_query(params, TYPE_LISTING)
    return select([{"type": t} for t in sorted(RULE_TYPES)], replace(query, filters={}), key="type")


def show_rule_type(caller: Caller, rtype: str) -> dict[str, Any]:
    """The rule type with its drivers' parameters; Neutron's plugin shows them to admins only."""
    if not caller.is_admin:
        raise NeutronError(403, "NotAuthorized", "Not authorized.")
    if rtype not in RULE_TYPES:
        raise NeutronError(400, "ValueError", f"Field value {rtype} is invalid")
    names = [n for n in RULES[rtype] if n != "id"]
    return {"type": rtype, "drivers": [{"name": DRIVER,
                                        "supported_parameters": [_parameter(n, rtype) for n in names]}]}
