"""Neutron's networks and ports at /v2.0, and the empty subnets and security groups the CLI asks for.

Paths, bodies, status codes, `fields=` and filters as openstacksdk's Network and Port resources
use them (openstack/network/v2/network.py, port.py) and python-openstackclient sends them
(`network create|set|show|list|delete`, `port create|set|unset|show|list|delete`); every call
needs a token and runs as its caller through services.networks and services.neutron_ports.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from vmqos.api import models as m
from vmqos.api.network import caller
from vmqos.services import networks, neutron_ports
from vmqos.services.identity import Caller
from vmqos.store import Store

router = APIRouter(prefix="/v2.0", tags=["network"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": m.NeutronErrorResponse} for code in (400, 403, 404, 409)}
_OBJECT = {"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}}


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _filters(request: Request) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        filters.setdefault(key, []).append(value)
    return filters


def _select(view: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k in fields} if fields else view


# ------------------------------------------------------------------ networks


@router.get("/networks", responses=_ERRORS, summary="List the networks the caller sees (filters: any attribute)")
def list_networks(request: Request, fields: list[str] | None = Query(None),
                  who: Caller = Depends(caller)) -> dict[str, Any]:
    found = networks.list_networks(_store(request), who, _filters(request))
    return {"networks": [_select(view, fields) for view in found]}


@router.post("/networks", status_code=201, responses=_ERRORS, openapi_extra=_OBJECT)
def create_network(request: Request, body: Any = Body(None), who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"network": networks.create_network(_store(request), who, body)}


@router.get("/networks/{network_id}", responses=_ERRORS)
def show_network(request: Request, network_id: str, fields: list[str] | None = Query(None),
                 who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"network": _select(networks.show_network(_store(request), who, network_id), fields)}


@router.put("/networks/{network_id}", responses=_ERRORS, openapi_extra=_OBJECT)
def update_network(request: Request, network_id: str, body: Any = Body(None),
                   who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"network": networks.update_network(_store(request), who, network_id, body)}


@router.delete("/networks/{network_id}", status_code=204, responses=_ERRORS)
def delete_network(request: Request, network_id: str, who: Caller = Depends(caller)) -> Response:
    networks.delete_network(_store(request), who, network_id)
    return Response(status_code=204)


# ------------------------------------------------------------------ ports


@router.get("/ports", responses=_ERRORS, summary="List the ports the caller sees (filters: any attribute, e.g. "
                                                 "binding:host_id, device_id, network_id)")
def list_ports(request: Request, fields: list[str] | None = Query(None),
               who: Caller = Depends(caller)) -> dict[str, Any]:
    found = neutron_ports.list_ports(_store(request), who, _filters(request))
    return {"ports": [_select(view, fields) for view in found]}


@router.post("/ports", status_code=201, responses=_ERRORS, openapi_extra=_OBJECT)
def create_port(request: Request, body: Any = Body(None), who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"port": neutron_ports.create_port(_store(request), who, body)}


@router.get("/ports/{port_id}", responses=_ERRORS)
def show_port(request: Request, port_id: str, fields: list[str] | None = Query(None),
              who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"port": _select(neutron_ports.show_port(_store(request), who, port_id), fields)}


@router.put("/ports/{port_id}", responses=_ERRORS, openapi_extra=_OBJECT)
def update_port(request: Request, port_id: str, body: Any = Body(None),
                who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"port": neutron_ports.update_port(_store(request), who, port_id, body)}


@router.delete("/ports/{port_id}", status_code=204, responses=_ERRORS)
def delete_port(request: Request, port_id: str, who: Caller = Depends(caller)) -> Response:
    neutron_ports.delete_port(_store(request), who, port_id)
    return Response(status_code=204)


# ------------------------------------------------------------------ none here, but the CLI asks


@router.get("/subnets", responses=_ERRORS, summary="Subnets: none (vmqos allocates no addresses)")
def list_subnets(who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"subnets": networks.list_subnets(who)}


@router.get("/subnets/{subnet_id}", responses=_ERRORS)
def show_subnet(subnet_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"subnet": networks.show_subnet(who, subnet_id)}


@router.get("/security-groups", responses=_ERRORS, summary="Security groups: none (vmqos filters no traffic)")
def list_security_groups(who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"security_groups": networks.list_security_groups(who)}


@router.get("/security-groups/{group_id}", responses=_ERRORS)
def show_security_group(group_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"security_group": networks.show_security_group(who, group_id)}
