"""Neutron's qos/policies and their tags at /v2.0, through services.policies.

Paths, bodies and status codes are those of openstacksdk's QoSPolicy (openstack/network/v2/
qos_policy.py); the tag routes are api.neutron_tags'. Neutron serves a policy's tags at
/v2.0/policies/{id}/tags (the tag extension keys resources by collection name without the qos/
prefix; openstacksdk's QoSPolicy.set_tags uses that path) and the SDK's other tag calls use
/v2.0/qos/policies/{id}/tags: both are served.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response

from vmqos.api import models as m
from vmqos.api.openapi_body import json_body
from vmqos.api.network import ERRORS, caller, fields_of, listed, params, select_fields, store_of
from vmqos.api.neutron_tags import tag_routes
from vmqos.services import policies
from vmqos.services.identity import Caller

router = APIRouter(prefix="/v2.0", tags=["network"])

_POLICY_BODY = json_body(m.QosPolicyRequest)


@router.get("/qos/policies", responses={200: {"model": m.QosPolicyList}, **ERRORS},
            summary="List the QoS policies the caller sees (filters: id, name, description, project_id, shared, "
                    "is_default, revision_number, tags, tags-any, not-tags, not-tags-any; sort_key, sort_dir, "
                    "limit, marker, page_reverse, fields)")
def list_policies(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    return listed(request, "policies", policies.list_policies(store_of(request), who, params(request)))


@router.post("/qos/policies", status_code=201, responses={201: {"model": m.QosPolicyResponse}, **ERRORS},
             openapi_extra=_POLICY_BODY)
def create_policy(request: Request, body: Any = Body(None), who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"policy": policies.create_policy(store_of(request), who, body)}


@router.get("/qos/policies/{policy_id}", responses={200: {"model": m.QosPolicyResponse}, **ERRORS})
def show_policy(request: Request, policy_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"policy": select_fields(policies.show_policy(store_of(request), who, policy_id), fields_of(request))}


@router.put("/qos/policies/{policy_id}", responses={200: {"model": m.QosPolicyResponse}, **ERRORS},
            openapi_extra=_POLICY_BODY)
def update_policy(request: Request, policy_id: str, body: Any = Body(None),
                  who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"policy": policies.update_policy(store_of(request), who, policy_id, body)}


@router.delete("/qos/policies/{policy_id}", status_code=204, responses=ERRORS)
def delete_policy(request: Request, policy_id: str, who: Caller = Depends(caller)) -> Response:
    policies.delete_policy(store_of(request), who, policy_id)
    return Response(status_code=204)


# ------------------------------------------------------------------ tags


tag_routes(router, "/qos/policies", policies.TAGGABLE)
tag_routes(router, "/policies", policies.TAGGABLE)
