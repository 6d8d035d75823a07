"""Neutron's networks and ports at /v2.0, and the empty subnets and security groups the CLI asks for.

Paths, bodies, status codes, `fields=` and filters as openstacksdk's Network and Port resources
use them (openstack/network/v2/network.py, port.py) and python-openstackclient sends them
(`network create|set|unset|show|list|delete`, `port create|set|unset|show|list|delete`); every call
needs a token and runs as its caller through services.networks and services.neutron_ports. Lists
filter, sort and page as the QoS policies do (services.neutron_listing); tags are api.neutron_tags'.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response

from vmqos.api.network import ERRORS, caller, fields_of, listed, params, select_fields, store_of
from vmqos.api.neutron_tags import tag_routes
from vmqos.services import networks, neutron_ports
from vmqos.services.identity import Caller

router = APIRouter(prefix="/v2.0", tags=["network"])
_OBJECT = {"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}}


# ------------------------------------------------------------------ networks


@router.get("/networks", responses=ERRORS,
            summary="List the networks the caller sees (filters: id, name, admin_state_up, status, project_id, "
                    "shared, mtu, description, revision_number, tags, tags-any, not-tags, not-tags-any; sort_key, "
                    "sort_dir, limit, marker, page_reverse, fields)")
def list_networks(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    return listed(request, "networks", networks.list_networks(store_of(request), who, params(request)))


@router.post("/networks", status_code=201, responses=ERRORS, openapi_extra=_OBJECT)
def create_network(request: Request, body: Any = Body(None), who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"network": networks.create_network(store_of(request), who, body)}


@router.get("/networks/{network_id}", responses=ERRORS)
def show_network(request: Request, network_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"network": select_fields(networks.show_network(store_of(request), who, network_id), fields_of(request))}


@router.put("/networks/{network_id}", responses=ERRORS, openapi_extra=_OBJECT)
def update_network(request: Request, network_id: str, body: Any = Body(None),
                   who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"network": networks.update_network(store_of(request), who, network_id, body)}


@router.delete("/networks/{network_id}", status_code=204, responses=ERRORS)
def delete_network(request: Request, network_id: str, who: Caller = Depends(caller)) -> Response:
    networks.delete_network(store_of(request), who, network_id)
    return Response(status_code=204)


# ------------------------------------------------------------------ ports


@router.get("/ports", responses=ERRORS,
            summary="List the ports the caller sees (filters: id, name, network_id, admin_state_up, mac_address, "
                    "fixed_ips, device_id, device_owner, project_id, status, description, security_groups, "
                    "binding:host_id, revision_number, tags, tags-any, not-tags, not-tags-any; sort_key, "
                    "sort_dir, limit, marker, page_reverse, fields)")
def list_ports(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    return listed(request, "ports", neutron_ports.list_ports(store_of(request), who, params(request)))


@router.post("/ports", status_code=201, responses=ERRORS, openapi_extra=_OBJECT,
             summary='Create a port ({"port": {...}}), or several at once ({"ports": [...]}: all or none)')
def create_port(request: Request, body: Any = Body(None), who: Caller = Depends(caller)) -> dict[str, Any]:
    return neutron_ports.create(store_of(request), who, body)


@router.get("/ports/{port_id}", responses=ERRORS)
def show_port(request: Request, port_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"port": select_fields(neutron_ports.show_port(store_of(request), who, port_id), fields_of(request))}


@router.put("/ports/{port_id}", responses=ERRORS, openapi_extra=_OBJECT)
def update_port(request: Request, port_id: str, body: Any = Body(None),
                who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"port": neutron_ports.update_port(store_of(request), who, port_id, body)}


@router.delete("/ports/{port_id}", status_code=204, responses=ERRORS)
def delete_port(request: Request, port_id: str, who: Caller = Depends(caller)) -> Response:
    neutron_ports.delete_port(store_of(request), who, port_id)
    return Response(status_code=204)


tag_routes(router, "/networks", networks.TAGGABLE)
tag_routes(router, "/ports", neutron_ports.TAGGABLE)


# ------------------------------------------------------------------ none here, but the CLI asks


@router.get("/subnets", responses=ERRORS, summary="Subnets: none (vmqos allocates no addresses)")
def list_subnets(who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"subnets": networks.list_subnets(who)}


@router.get("/subnets/{subnet_id}", responses=ERRORS)
def show_subnet(subnet_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"subnet": networks.show_subnet(who, subnet_id)}


@router.get("/security-groups", responses=ERRORS, summary="Security groups: none (vmqos filters no traffic)")
def list_security_groups(who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"security_groups": networks.list_security_groups(who)}


@router.get("/security-groups/{group_id}", responses=ERRORS)
def show_security_group(group_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
    return {"security_group": networks.show_security_group(who, group_id)}
