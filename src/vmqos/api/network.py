"""Neutron's QoS subset at /v2.0: extensions, qos/policies and their bandwidth_limit_rules.

Paths, bodies, status codes, `fields=` and the filters are those openstacksdk's QoSPolicy and
QoSBandwidthLimitRule resources use (openstack/network/v2/qos_policy.py,
qos_bandwidth_limit_rule.py) and neutron-lib's qos definitions declare; every call needs a token
(X-Auth-Token) and runs as its caller through services.policies.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from vmqos.api import models as m
from vmqos.services import identity, policies
from vmqos.services.identity import Caller
from vmqos.services.neutron_attributes import EXTENSIONS as PORT_EXTENSIONS
from vmqos.services.neutron_input import NeutronError
from vmqos.store import Store

router = APIRouter(prefix="/v2.0", tags=["network"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": m.NeutronErrorResponse} for code in (400, 403, 404, 409)}

# The extensions this server implements, as neutron-lib's api/definitions name them.
EXTENSIONS = (
    ("qos", "Quality of Service", "The Quality of Service extension.", "2015-06-08T10:00:00-00:00"),
    ("qos-bw-limit-direction", "Direction for QoS bandwidth limit rule",
     "Allow to configure QoS bandwidth limit rule with specific direction: ingress or egress",
     "2017-04-10T10:00:00-00:00"),
    ("qos-default", "QoS default policy", "Expose the QoS default policy per project", "2017-041-06T10:00:00-00:00"),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled.",
     "2016-09-09T09:09:09-09:09"),
    ("standard-attr-description", "standard-attr-description",
     "Extension to add descriptions to standard attributes", "2016-02-10T10:00:00-00:00"),
    ("standard-attr-revisions", "Resource revision numbers",
     "This extension will display the revision number of neutron resources.", "2016-04-11T10:00:00-00:00"),
    ("standard-attr-timestamp", "Resource timestamps",
     "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.",
     "2016-09-12T10:00:00-00:00"),
) + PORT_EXTENSIONS  # networks and ports: binding, qos-port-network-policy, net-mtu


def network_version(request: Request) -> dict[str, Any]:
    return {"id": "v2.0", "status": "CURRENT",
            "links": [{"rel": "self", "href": f"{str(request.base_url).rstrip('/')}/v2.0/"}]}


def caller(request: Request) -> Caller:
    """The caller behind X-Auth-Token (keystonemiddleware's 401 otherwise)."""
    store: Store = request.app.state.store
    return identity.validate(store, request.headers.get("X-Auth-Token"))


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _select(view: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """Only the attributes asked for with fields=, as Neutron answers (all when none is asked for)."""
    return {k: v for k, v in view.items() if k in fields} if fields else view


@router.get("", summary="The v2.0 resources")
@router.get("/", include_in_schema=False)
def resources(request: Request) -> dict[str, Any]:
    base = f"{str(request.base_url).rstrip('/')}/v2.0"
    return {"resources": [{"name": name, "collection": collection,
                           "links": [{"rel": "self", "href": f"{base}/{collection}"}]}
                          for name, collection in (("policy", "qos/policies"), ("network", "networks"),
                                                   ("port", "ports"))]}


def _extension(alias: str, name: str, description: str, updated: str) -> dict[str, Any]:
    return {"alias": alias, "name": name, "description": description, "updated": updated, "links": []}


@router.get("/extensions", summary="Extensions this server implements")
def extensions(who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"extensions": [_extension(*ext) for ext in EXTENSIONS]}


@router.get("/extensions/{alias}", responses=_ERRORS)
def extension(alias: str, who: Caller = Depends(caller)) -> dict[str, Any]:
    for ext in EXTENSIONS:
        if ext[0] == alias:
            return {"extension": _extension(*ext)}
    raise NeutronError(404, "HTTPNotFound", f"Extension with alias {alias} does not exist")


# ------------------------------------------------------------------ policies


_POLICY_BODY = {"requestBody": {"content": {"application/json": {"schema": m.QosPolicyRequest.model_json_schema()}}}}
_RULE_BODY = {"requestBody": {"content": {"application/json": {
    "schema": m.BandwidthLimitRuleRequest.model_json_schema()}}}}


@router.get("/qos/policies", responses={200: {"model": m.QosPolicyList}, **_ERRORS},
            summary="List the QoS policies the caller sees (filters: name, description, id, project_id, shared, "
                    "is_default, revision_number)")
def list_policies(request: Request, fields: list[str] | None = Query(None),
                  who: Caller = Depends(caller)) -> dict[str, Any]:
    filters: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        filters.setdefault(key, []).append(value)
    found = policies.list_policies(_store(request), who, filters)
    return {"policies": [_select(view, fields) for view in found]}


@router.post("/qos/policies", status_code=201, responses={201: {"model": m.QosPolicyResponse}, **_ERRORS},
             openapi_extra=_POLICY_BODY)
def create_policy(request: Request, body: Any = Body(None), who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"policy": policies.create_policy(_store(request), who, body)}


@router.get("/qos/policies/{policy_id}", responses={200: {"model": m.QosPolicyResponse}, **_ERRORS})
def show_policy(request: Request, policy_id: str, fields: list[str] | None = Query(None),
                who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"policy": _select(policies.show_policy(_store(request), who, policy_id), fields)}


@router.put("/qos/policies/{policy_id}", responses={200: {"model": m.QosPolicyResponse}, **_ERRORS},
            openapi_extra=_POLICY_BODY)
def update_policy(request: Request, policy_id: str, body: Any = Body(None),
                  who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"policy": policies.update_policy(_store(request), who, policy_id, body)}


@router.delete("/qos/policies/{policy_id}", status_code=204, responses=_ERRORS)
def delete_policy(request: Request, policy_id: str, who: Caller = Depends(caller)) -> Response:
    policies.delete_policy(_store(request), who, policy_id)
    return Response(status_code=204)


# ------------------------------------------------------------------ bandwidth-limit rules


_RULES = "/qos/policies/{policy_id}/bandwidth_limit_rules"


@router.get(_RULES, responses={200: {"model": m.BandwidthLimitRuleList}, **_ERRORS})
def list_rules(request: Request, policy_id: str, fields: list[str] | None = Query(None),
               who: Caller = Depends(caller)) -> dict[str, Any]:
    found = policies.list_rules(_store(request), who, policy_id)
    return {"bandwidth_limit_rules": [_select(view, fields) for view in found]}


@router.post(_RULES, status_code=201, responses={201: {"model": m.BandwidthLimitRuleResponse}, **_ERRORS},
             openapi_extra=_RULE_BODY)
def create_rule(request: Request, policy_id: str, body: Any = Body(None),
                who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"bandwidth_limit_rule": policies.create_rule(_store(request), who, policy_id, body)}


@router.get(_RULES + "/{rule_id}", responses={200: {"model": m.BandwidthLimitRuleResponse}, **_ERRORS})
def show_rule(request: Request, policy_id: str, rule_id: str, fields: list[str] | None = Query(None),
              who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"bandwidth_limit_rule": _select(policies.show_rule(_store(request), who, policy_id, rule_id), fields)}


@router.put(_RULES + "/{rule_id}", responses={200: {"model": m.BandwidthLimitRuleResponse}, **_ERRORS},
            openapi_extra=_RULE_BODY)
def update_rule(request: Request, policy_id: str, rule_id: str, body: Any = Body(None),
                who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"bandwidth_limit_rule": policies.update_rule(_store(request), who, policy_id, rule_id, body)}


@router.delete(_RULES + "/{rule_id}", status_code=204, responses=_ERRORS)
def delete_rule(request: Request, policy_id: str, rule_id: str, who: Caller = Depends(caller)) -> Response:
    policies.delete_rule(_store(request), who, policy_id, rule_id)
    return Response(status_code=204)
