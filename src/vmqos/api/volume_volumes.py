"""Cinder's volumes at /volume/v3/{project_id}/volumes: create, list, show, update, delete, and the
os-extend and os-retype actions.

The view is cinder/api/v3/views/volumes.py's at the asked microversion (group_id from 3.13,
provider_id for the admin from 3.21, shared_targets and service_uuid from 3.48, cluster_name
for the admin from 3.61, volume_type_id from 3.63, consumes_quota from 3.65), with the
attributes Cinder's extensions add (the owner's project, and the admin's host and migration
fields). A volume here holds no data: it is `available` at once and never attached.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.responses import JSONResponse

from vmqos.api.microversion import VersionedRoute
from vmqos.api.volume import PREFIX, V3, caller, links, store_of, version
from vmqos.services import cinder_volumes
from vmqos.services.identity import Caller
from vmqos.store.cinder import StoredVolume

router = APIRouter(prefix=PREFIX + V3, tags=["volume"], route_class=VersionedRoute)


def _time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")


def volume_view(request: Request, who: Caller, volume: StoredVolume, at: tuple[int, int]) -> dict[str, Any]:
    vtype = cinder_volumes.type_of(store_of(request), volume)
    view: dict[str, Any] = {
        "id": volume.id, "status": volume.status, "size": volume.size,
        "availability_zone": volume.availability_zone, "created_at": _time(volume.created_at),
        "updated_at": _time(volume.updated_at), "name": volume.name, "description": volume.description,
        "volume_type": vtype.name if vtype else None, "snapshot_id": None, "source_volid": None,
        "metadata": volume.metadata, "links": links(request, volume.project_id, "volumes", volume.id),
        "user_id": volume.user_id, "bootable": str(volume.bootable).lower(), "encrypted": False,
        "replication_status": None, "consistencygroup_id": None, "multiattach": False, "attachments": [],
        "os-vol-tenant-attr:tenant_id": volume.project_id}
    if who.is_admin:
        view |= {"migration_status": None, "os-vol-host-attr:host": None, "os-vol-mig-status-attr:migstat": None,
                 "os-vol-mig-status-attr:name_id": None}
    if at >= (3, 13):
        view["group_id"] = None
    if at >= (3, 21) and who.is_admin:
        view["provider_id"] = None
    if at >= (3, 48):
        view |= {"shared_targets": False, "service_uuid": None}
    if at >= (3, 61) and who.is_admin:
        view["cluster_name"] = None
    if at >= (3, 63):
        view["volume_type_id"] = volume.type_id
    if at >= (3, 65):
        view["consumes_quota"] = True
    return view


def _query(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items()}


@router.get("/volumes", summary="The project's volumes, in brief (all_tenants: every project's, for the admin)")
def list_volumes(request: Request, project_id: str, who: Caller = Depends(caller),
                 at: tuple[int, int] = Depends(version)) -> dict[str, Any]:
    found = cinder_volumes.list_volumes(store_of(request), who, _query(request))
    return {"volumes": [{"id": v.id, "name": v.name, "links": links(request, v.project_id, "volumes", v.id)}
                        for v in found]}


@router.get("/volumes/detail", summary="The project's volumes, in detail")
def list_volumes_detail(request: Request, who: Caller = Depends(caller),
                        at: tuple[int, int] = Depends(version)) -> dict[str, Any]:
    found = cinder_volumes.list_volumes(store_of(request), who, _query(request))
    return {"volumes": [volume_view(request, who, v, at) for v in found]}


@router.post("/volumes", status_code=202, summary="Create a volume of a size and a type (a project's member)")
def create_volume(request: Request, body: Any = Body(None), who: Caller = Depends(caller),
                  at: tuple[int, int] = Depends(version)) -> JSONResponse:
    volume = cinder_volumes.create_volume(store_of(request), who, body)
    return JSONResponse({"volume": volume_view(request, who, volume, at)}, status_code=202)


@router.get("/volumes/{volume_id}", summary="One volume of the project")
def show_volume(request: Request, volume_id: str, who: Caller = Depends(caller),
                at: tuple[int, int] = Depends(version)) -> dict[str, Any]:
    return {"volume": volume_view(request, who, cinder_volumes.get_volume(store_of(request), who, volume_id), at)}


@router.put("/volumes/{volume_id}", summary="Change a volume's name, description or metadata (a member)")
def update_volume(request: Request, volume_id: str, body: Any = Body(None), who: Caller = Depends(caller),
                  at: tuple[int, int] = Depends(version)) -> dict[str, Any]:
    volume = cinder_volumes.update_volume(store_of(request), who, volume_id, body)
    return {"volume": volume_view(request, who, volume, at)}


@router.post("/volumes/{volume_id}/action", status_code=202,
             summary='Extend ({"os-extend": {"new_size": N}}: its type\'s per-GB QoS follows the size) or retype '
                     '({"os-retype": {"new_type": T}}: the QoS follows the type) a volume (a member)')
def volume_action(request: Request, volume_id: str, body: Any = Body(None), who: Caller = Depends(caller),
                  at: tuple[int, int] = Depends(version)) -> Response:
    cinder_volumes.volume_action(store_of(request), who, volume_id, body)
    return Response(status_code=202)


@router.delete("/volumes/{volume_id}", status_code=202, summary="Delete a volume of the project (a member)")
def delete_volume(request: Request, volume_id: str, who: Caller = Depends(caller),
                  at: tuple[int, int] = Depends(version)) -> Response:
    cinder_volumes.delete_volume(store_of(request), who, volume_id)
    return Response(status_code=202)
