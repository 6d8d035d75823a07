"""Cinder's QoS subset at /volume/v3/{project_id} (devstack's layout): qos-specs and types.

Paths, bodies and status codes are cinder/api/contrib/qos_specs_manage.py, types_manage.py,
types_extra_specs.py, volume_type_access.py and v3/types.py, with the views of
cinder/api/views/qos_specs.py and v3/views/types.py; the volumes are in api/volume_volumes.py.
3.66 is the highest microversion claimed: 3.67 lets URLs leave out the project, which this server
does not route. Every call needs a token whose project is the one in the URL (Cinder's
"Malformed request url" otherwise) and runs as its caller through services.cinder_qos.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.responses import JSONResponse

from vmqos.api import auth
from vmqos.api.microversion import Service, VersionedRoute, negotiate, shown
from vmqos.services import cinder_qos
from vmqos.services.identity import Caller
from vmqos.services.openstack_input import Fault, bad_request, decoded, query_boolean
from vmqos.store import Store
from vmqos.store.cinder import StoredQosSpec, StoredVolumeType

PREFIX = "/volume"
VOLUME = Service("volume", (3, 0), (3, 66))
UPDATED = "2023-10-05T00:00:00Z"  # api_version_request.UPDATED of the release that made 3.66 current
router = APIRouter(prefix=PREFIX, tags=["volume"], route_class=VersionedRoute)
V3 = "/v3/{project_id}"


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def caller(request: Request, project_id: str) -> Caller:
    """The caller behind X-Auth-Token (this server's tokens, or an external Keystone's), whose token must
    be scoped to the URL's project; a service caller (an agent) gets Cinder's 403 first, whatever its
    token's project."""
    who = auth.project_member(request, "Cinder", lambda message: Fault(403, message))
    if who.project is None or who.project.id != project_id:
        raise bad_request("Malformed request url")
    return who


def version(request: Request) -> tuple[int, int]:
    return negotiate(request, VOLUME)


def links(request: Request, project_id: str, collection: str, item_id: str) -> list[dict[str, str]]:
    base = f"{str(request.base_url).rstrip('/')}{PREFIX}"
    return [{"rel": "self", "href": f"{base}/v3/{project_id}/{collection}/{item_id}"},
            {"rel": "bookmark", "href": f"{base}/{project_id}/{collection}/{item_id}"}]


def _versions(request: Request) -> dict[str, Any]:
    href = f"{str(request.base_url).rstrip('/')}{PREFIX}/v3/"
    return {"versions": [{
        "id": "v3.0", "status": "CURRENT", "version": shown(VOLUME.maximum), "min_version": shown(VOLUME.minimum),
        "updated": UPDATED, "media-types": [{"base": "application/json",
                                             "type": "application/vnd.openstack.volume+json;version=3"}],
        "links": [{"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
                  {"rel": "self", "href": href}]}]}


@router.get("", include_in_schema=False)
@router.get("/", summary="The block-storage API versions (300 Multiple Choices, as Cinder answers)")
def versions(request: Request) -> JSONResponse:
    return JSONResponse(_versions(request), status_code=300)


@router.get("/v3", include_in_schema=False)
@router.get("/v3/", summary="Block storage v3: its microversion range")
def version_v3(request: Request) -> dict[str, Any]:
    return _versions(request)


# ------------------------------------------------------------------ QoS specs


def _spec(spec: StoredQosSpec) -> dict[str, Any]:
    return {"id": spec.id, "name": spec.name, "consumer": spec.consumer, "specs": spec.specs}


def _spec_detail(request: Request, project_id: str, spec: StoredQosSpec) -> dict[str, Any]:
    return {"qos_specs": _spec(spec), "links": links(request, project_id, "qos-specs", spec.id)}


_QOS = V3 + "/qos-specs"


@router.get(_QOS, summary="QoS specs (admin)")
def list_qos_specs(request: Request, who: Caller = Depends(caller), at: Any = Depends(version)) -> dict[str, Any]:
    return {"qos_specs": [_spec(s) for s in cinder_qos.list_qos_specs(store_of(request), who)]}


@router.post(_QOS, summary="Create a QoS spec (admin); front-end specs are read as vmqos enforces them")
def create_qos_spec(request: Request, project_id: str, body: Any = Body(None), who: Caller = Depends(caller),
                    at: Any = Depends(version)) -> dict[str, Any]:
    return _spec_detail(request, project_id, cinder_qos.create_qos_spec(store_of(request), who, body))


@router.get(_QOS + "/{spec_id}", summary="One QoS spec (admin)")
def show_qos_spec(request: Request, project_id: str, spec_id: str, who: Caller = Depends(caller),
                  at: Any = Depends(version)) -> dict[str, Any]:
    return _spec_detail(request, project_id, cinder_qos.show_qos_spec(store_of(request), who, spec_id))


@router.put(_QOS + "/{spec_id}", summary="Add or change keys of a QoS spec (admin)")
def set_qos_spec(request: Request, spec_id: str, body: Any = Body(None), who: Caller = Depends(caller),
                 at: Any = Depends(version)) -> dict[str, Any]:
    return cinder_qos.set_qos_spec(store_of(request), who, spec_id, body)


@router.put(_QOS + "/{spec_id}/delete_keys", status_code=202, summary="Remove keys of a QoS spec (admin)")
def unset_qos_spec(request: Request, spec_id: str, body: Any = Body(None), who: Caller = Depends(caller),
                   at: Any = Depends(version)) -> Response:
    cinder_qos.unset_qos_spec(store_of(request), who, spec_id, body)
    return Response(status_code=202)


@router.delete(_QOS + "/{spec_id}", status_code=202, summary="Delete a QoS spec (admin; force= takes it from types)")
def delete_qos_spec(request: Request, spec_id: str, who: Caller = Depends(caller),
                    at: Any = Depends(version)) -> Response:
    raw = request.query_params.get("force")
    force = False if raw is None else query_boolean(raw)
    if force is None:
        raise bad_request(f"Invalid value '{raw}' for force: Unrecognized value '{raw}', acceptable values are: "
                          "'0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'")
    cinder_qos.delete_qos_spec(store_of(request), who, spec_id, force)
    return Response(status_code=202)


@router.get(_QOS + "/{spec_id}/associations", summary="The volume types that have this QoS spec (admin)")
def associations(request: Request, spec_id: str, who: Caller = Depends(caller),
                 at: Any = Depends(version)) -> dict[str, Any]:
    found = cinder_qos.associations(store_of(request), who, spec_id)
    return {"qos_associations": [{"association_type": "volume_type", "name": t.name, "id": t.id} for t in found]}


@router.get(_QOS + "/{spec_id}/associate", status_code=202, summary="Give a volume type this QoS spec (admin)")
def associate(request: Request, spec_id: str, who: Caller = Depends(caller), at: Any = Depends(version)) -> Response:
    cinder_qos.associate(store_of(request), who, spec_id, request.query_params.get("vol_type_id"))
    return Response(status_code=202)


@router.get(_QOS + "/{spec_id}/disassociate", status_code=202, summary="Take this QoS spec from a type (admin)")
def disassociate(request: Request, spec_id: str, who: Caller = Depends(caller),
                 at: Any = Depends(version)) -> Response:
    cinder_qos.disassociate(store_of(request), who, spec_id, request.query_params.get("vol_type_id"))
    return Response(status_code=202)


@router.get(_QOS + "/{spec_id}/disassociate_all", status_code=202, summary="Take this QoS spec from every type")
def disassociate_all(request: Request, spec_id: str, who: Caller = Depends(caller),
                     at: Any = Depends(version)) -> Response:
    cinder_qos.disassociate(store_of(request), who, spec_id, None, every=True)
    return Response(status_code=202)


# ------------------------------------------------------------------ volume types


def type_view(who: Caller, vtype: StoredVolumeType) -> dict[str, Any]:
    view: dict[str, Any] = {"id": vtype.id, "name": vtype.name, "is_public": vtype.is_public,
                            "description": vtype.description, "extra_specs": cinder_qos.visible_specs(who, vtype),
                            "os-volume-type-access:is_public": vtype.is_public}
    if who.is_admin:  # volume_extension:access_types_qos_specs_id
        view["qos_specs_id"] = vtype.qos_specs_id
    return view


_TYPES = V3 + "/types"


@router.get(_TYPES, summary="Volume types the caller may use (is_public=None: all, for the admin)")
def list_types(request: Request, who: Caller = Depends(caller), at: Any = Depends(version)) -> dict[str, Any]:
    raw = request.query_params.get("is_public")
    public = True if raw is None else None if raw.strip().lower() == "none" else query_boolean(raw)
    if public is None and raw is not None and raw.strip().lower() != "none":
        raise bad_request(f"Invalid is_public filter [{raw}]")
    return {"volume_types": [type_view(who, t) for t in cinder_qos.list_types(store_of(request), who, public)]}


@router.post(_TYPES, summary="Create a volume type (admin)")
def create_type(request: Request, body: Any = Body(None), who: Caller = Depends(caller),
                at: Any = Depends(version)) -> dict[str, Any]:
    return {"volume_type": type_view(who, cinder_qos.create_type(store_of(request), who, body))}


@router.get(_TYPES + "/{type_id}", summary="One volume type")
def show_type(request: Request, type_id: str, who: Caller = Depends(caller),
              at: Any = Depends(version)) -> dict[str, Any]:
    return {"volume_type": type_view(who, cinder_qos.get_type(store_of(request), who, type_id))}


@router.put(_TYPES + "/{type_id}", summary="Rename a volume type, or change its description or publicity (admin)")
def update_type(request: Request, type_id: str, body: Any = Body(None), who: Caller = Depends(caller),
                at: Any = Depends(version)) -> dict[str, Any]:
    return {"volume_type": type_view(who, cinder_qos.update_type(store_of(request), who, type_id, body))}


@router.delete(_TYPES + "/{type_id}", status_code=202, summary="Delete a volume type no volume uses (admin)")
def delete_type(request: Request, type_id: str, who: Caller = Depends(caller), at: Any = Depends(version)) -> Response:
    cinder_qos.delete_type(store_of(request), who, type_id)
    return Response(status_code=202)


@router.get(_TYPES + "/{type_id}/extra_specs", summary="A volume type's extra specs")
def type_specs(request: Request, type_id: str, who: Caller = Depends(caller),
               at: Any = Depends(version)) -> dict[str, Any]:
    vtype = cinder_qos.get_type(store_of(request), who, type_id)
    return {"extra_specs": cinder_qos.visible_specs(who, vtype)}


@router.post(_TYPES + "/{type_id}/extra_specs", summary="Add or change a volume type's extra specs (admin)")
def set_type_specs(request: Request, type_id: str, body: Any = Body(None), who: Caller = Depends(caller),
                   at: Any = Depends(version)) -> dict[str, Any]:
    return {"extra_specs": cinder_qos.set_type_specs(store_of(request), who, type_id, body)}


@router.get(_TYPES + "/{type_id}/extra_specs/{key}", summary="One extra spec of a volume type")
def type_spec(request: Request, type_id: str, key: str, who: Caller = Depends(caller),
              at: Any = Depends(version)) -> dict[str, Any]:
    specs = cinder_qos.visible_specs(who, cinder_qos.get_type(store_of(request), who, type_id))
    if key not in specs:
        raise Fault(404, f"Volume Type {type_id} has no extra specs with key {key}.")
    return {key: specs[key]}


@router.delete(_TYPES + "/{type_id}/extra_specs/{key}", status_code=202, summary="Remove an extra spec (admin)")
def delete_type_spec(request: Request, type_id: str, key: str, who: Caller = Depends(caller),
                     at: Any = Depends(version)) -> Response:
    cinder_qos.delete_type_spec(store_of(request), who, type_id, key)
    return Response(status_code=202)


@router.get(_TYPES + "/{type_id}/os-volume-type-access", summary="The projects that may use a private type")
def type_access(request: Request, type_id: str, who: Caller = Depends(caller),
                at: Any = Depends(version)) -> dict[str, Any]:
    projects = cinder_qos.type_access(store_of(request), who, type_id)
    return {"volume_type_access": [{"volume_type_id": type_id, "project_id": p} for p in projects]}


@router.post(_TYPES + "/{type_id}/action", status_code=202, summary="addProjectAccess / removeProjectAccess (admin)")
def type_action(request: Request, type_id: str, body: Any = Body(None), who: Caller = Depends(caller),
                at: Any = Depends(version)) -> Response:
    body = decoded(body)
    action = next(iter(body), None) if isinstance(body, dict) and len(body) == 1 else None
    if action not in ("addProjectAccess", "removeProjectAccess"):
        raise bad_request(f"There is no such action: {action}" if action else "Malformed request body")
    cinder_qos.change_type_access(store_of(request), who, type_id, body, action == "addProjectAccess")
    return Response(status_code=202)
