"""Neutron's rbac-policies at /v2.0 (object_type qos_policy), through services.rbac.

Shapes are openstacksdk's RBACPolicy (openstack/network/v2/rbac_policy.py) and Neutron's
(`{"rbac_policy": {id, project_id, tenant_id, object_type, object_id, action, target_tenant}}`),
as `openstack network rbac create/list/show/set/delete` send and read them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response

from vmqos.api import models as m
from vmqos.api.openapi_body import json_body
from vmqos.api.network import ERRORS, caller, fields_of, listed, params, select_fields, store_of
from vmqos.services import rbac
from vmqos.services.identity import Caller

router = APIRouter(prefix="/v2.0", tags=["network"])
_BODY = json_body(m.RbacPolicyRequest)


@router.get("/rbac-policies", responses={200: {"model": m.RbacPolicyList}, **ERRORS},
            summary="List the RBAC entries the caller's project made (filters: id, object_type, object_id, "
                    "target_tenant, project_id, action; limit, marker, fields)")
def list_entries(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    return listed(request, "rbac_policies", rbac.list_entries(store_of(request), who, params(request)))


@router.post("/rbac-policies", status_code=201, responses={201: {"model": m.RbacPolicyResponse}, **ERRORS},
             openapi_extra=_BODY)
def create_entry(request: Request, body: Any = Body(None), who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"rbac_policy": rbac.create_entry(store_of(request), who, body)}


@router.get("/rbac-policies/{entry_id}", responses={200: {"model": m.RbacPolicyResponse}, **ERRORS})
def show_entry(request: Request, entry_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"rbac_policy": select_fields(rbac.show_entry(store_of(request), who, entry_id), fields_of(request))}


@router.put("/rbac-policies/{entry_id}", responses={200: {"model": m.RbacPolicyResponse}, **ERRORS},
            openapi_extra=_BODY)
def update_entry(request: Request, entry_id: str, body: Any = Body(None),
                 who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"rbac_policy": rbac.update_entry(store_of(request), who, entry_id, body)}


@router.delete("/rbac-policies/{entry_id}", status_code=204, responses=ERRORS)
def delete_entry(request: Request, entry_id: str, who: Caller = Depends(caller)) -> Response:
    rbac.delete_entry(store_of(request), who, entry_id)
    return Response(status_code=204)
