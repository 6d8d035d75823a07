"""Neutron's QoS rules at /v2.0: the five rule types under their policy, the qos-rules-alias routes
(a rule by its id alone), and qos/rule-types; through services.policy_rules.

Paths and bodies are openstacksdk's (openstack/network/v2/qos_*_rule.py, qos_rule_type.py):
`/qos/policies/{policy_id}/{type}_rules[/{rule_id}]` answering `{"{type}_rule": {...}}` or
`{"{type}_rules": [...]}`; `/qos/alias_{type}_rules/{rule_id}` (GET, PUT, DELETE; neutron-lib's
qos_rules_alias and qos_pps_minimum_rule_alias: bandwidth_limit, dscp_marking, minimum_bandwidth,
minimum_packet_rate) answering `{"alias_{type}_rule": {...}}`; `/qos/rule-types[/{type}]`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response

from vmqos.api import models as m
from vmqos.api.openapi_body import json_body
from vmqos.api.network import ERRORS, caller, fields_of, listed, params, select_fields, store_of
from vmqos.core.formats.neutron_rules import (
    BANDWIDTH_LIMIT,
    DSCP_MARKING,
    MINIMUM_BANDWIDTH,
    MINIMUM_PACKET_RATE,
    RULE_TYPES,
)
from vmqos.services import policy_rules as rules
from vmqos.services.identity import Caller

router = APIRouter(prefix="/v2.0", tags=["network"])
ALIASED = (BANDWIDTH_LIMIT, DSCP_MARKING, MINIMUM_BANDWIDTH, MINIMUM_PACKET_RATE)


def _rule_routes(rtype: str) -> None:
    """The five routes of one rule type under its policy."""
    one, many = f"{rtype}_rule", f"{rtype}_rules"
    path = f"/qos/policies/{{policy_id}}/{many}"
    request_model, response_model, list_model = m.RULE_MODELS[rtype]

    @router.get(path, responses={200: {"model": list_model}, **ERRORS}, name=f"list_{many}",
                summary=f"List the policy's {rtype} rules (every field filters and sorts; limit, marker, fields)")
    def list_rules(request: Request, policy_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
        page = rules.list_rules(store_of(request), who, policy_id, rtype, params(request))
        return listed(request, many, page)

    @router.post(path, status_code=201, responses={201: {"model": response_model}, **ERRORS}, name=f"create_{one}",
                 openapi_extra=json_body(request_model))
    def create_rule(request: Request, policy_id: str, body: Any = Body(None),
                    who: Caller = Depends(caller)) -> dict[str, Any]:
        return {one: rules.create_rule(store_of(request), who, policy_id, rtype, body)}

    @router.get(path + "/{rule_id}", responses={200: {"model": response_model}, **ERRORS}, name=f"show_{one}")
    def show_rule(request: Request, policy_id: str, rule_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
        view = rules.show_rule(store_of(request), who, policy_id, rtype, rule_id)
        return {one: select_fields(view, fields_of(request))}

    @router.put(path + "/{rule_id}", responses={200: {"model": response_model}, **ERRORS}, name=f"update_{one}",
                openapi_extra=json_body(request_model))
    def update_rule(request: Request, policy_id: str, rule_id: str, body: Any = Body(None),
                    who: Caller = Depends(caller)) -> dict[str, Any]:
        return {one: rules.update_rule(store_of(request), who, policy_id, rtype, rule_id, body)}

    @router.delete(path + "/{rule_id}", status_code=204, responses=ERRORS, name=f"delete_{one}")
    def delete_rule(request: Request, policy_id: str, rule_id: str, who: Caller = Depends(caller)) -> Response:
        rules.delete_rule(store_of(request), who, policy_id, rtype, rule_id)
        return Response(status_code=204)


def _alias_routes(rtype: str) -> None:
    """qos-rules-alias: the rule by its id, without its policy's."""
    one = f"alias_{rtype}_rule"
    path = f"/qos/alias_{rtype}_rules/{{rule_id}}"
    request_model, response_model, _list = m.RULE_MODELS[rtype]

    @router.get(path, responses={200: {"model": response_model}, **ERRORS}, name=f"show_{one}")
    def show_alias(request: Request, rule_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
        return {one: select_fields(rules.show_alias(store_of(request), who, rtype, rule_id), fields_of(request))}

    @router.put(path, responses={200: {"model": response_model}, **ERRORS}, name=f"update_{one}",
                openapi_extra=json_body(request_model))
    def update_alias(request: Request, rule_id: str, body: Any = Body(None),
                     who: Caller = Depends(caller)) -> dict[str, Any]:
        return {one: rules.update_alias(store_of(request), who, rtype, rule_id, body)}

    @router.delete(path, status_code=204, responses=ERRORS, name=f"delete_{one}")
    def delete_alias(request: Request, rule_id: str, who: Caller = Depends(caller)) -> Response:
        rules.delete_alias(store_of(request), who, rtype, rule_id)
        return Response(status_code=204)


for _rtype in RULE_TYPES:
    _rule_routes(_rtype)
for _rtype in ALIASED:
    _alias_routes(_rtype)


@router.get("/qos/rule-types", responses={200: {"model": m.RuleTypeList}, **ERRORS},
            summary="The QoS rule types (filters: all_rules, all_supported; limit, marker)")
def list_rule_types(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    return listed(request, "rule_types", rules.list_rule_types(who, params(request)))


@router.get("/qos/rule-types/{rule_type}", responses={200: {"model": m.RuleTypeResponse}, **ERRORS},
            summary="A rule type with the parameters its drivers support (admins only, as Neutron's plugin)")
def show_rule_type(request: Request, rule_type: str, who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"rule_type": select_fields(rules.show_rule_type(who, rule_type), fields_of(request))}
