"""Nova's flavor subset at /compute/v2.1 (devstack's mount): flavors, os-extra_specs, os-flavor-access.

Paths, bodies and status codes are nova/api/openstack/compute's flavors.py, flavors_extraspecs.py
and flavor_access.py, and the views its views/flavors.py builds, at the microversion the client
asks for: description from 2.55, extra_specs in the flavor from 2.61, swap 0 instead of "" from
2.75, no rxtx_factor or OS-FLV-DISABLED from 2.102. 2.102 is the highest microversion that changes
flavors, and the highest this server claims. openstacksdk (and so the `openstack` CLI) asks for
2.61 for flavors. Every call needs a token and runs as its caller through services.flavors.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Depends, Request, Response

from vmqos.api import auth
from vmqos.api.microversion import Service, VersionedRoute, negotiate, shown
from vmqos.services import flavors
from vmqos.services.identity import Caller
from vmqos.services.nova_input import Version
from vmqos.services.openstack_input import Fault, bad_request, decoded
from vmqos.store import Store
from vmqos.store.nova import StoredFlavor

PREFIX = "/compute"
COMPUTE = Service("compute", (2, 1), (2, 102), legacy_header="X-OpenStack-Nova-API-Version")
router = APIRouter(prefix=PREFIX, tags=["compute"], route_class=VersionedRoute)
_UPDATED = "2013-07-23T11:33:21Z"


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def caller(request: Request) -> Caller:
    """The caller behind X-Auth-Token (keystonemiddleware's 401 otherwise; this server's tokens, or an
    external Keystone's), if it is a project's user: a service caller (an agent) gets Nova's 403."""
    return auth.project_member(request, "Nova", lambda message: Fault(403, message))


def version(request: Request) -> Version:
    return negotiate(request, COMPUTE)


def _base(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}{PREFIX}"


def _v21(request: Request) -> dict[str, Any]:
    return {"id": "v2.1", "status": "CURRENT", "version": shown(COMPUTE.maximum),
            "min_version": shown(COMPUTE.minimum), "updated": _UPDATED}


@router.get("", summary="The compute API versions", include_in_schema=False)
@router.get("/", summary="The compute API versions")
def versions(request: Request) -> dict[str, Any]:
    return {"versions": [_v21(request) | {"links": [{"rel": "self", "href": f"{_base(request)}/v2.1/"}]}]}


@router.get("/v2.1", summary="Compute v2.1: its microversion range")
@router.get("/v2.1/", include_in_schema=False)
def version_v21(request: Request) -> dict[str, Any]:
    return {"version": _v21(request) | {
        "links": [{"rel": "self", "href": f"{_base(request)}/v2.1/"},
                  {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}]}}


# ------------------------------------------------------------------ views (views/flavors.py)


def _links(request: Request, flavor_id: str) -> list[dict[str, str]]:
    return [{"rel": "self", "href": f"{_base(request)}/v2.1/flavors/{flavor_id}"},
            {"rel": "bookmark", "href": f"{_base(request)}/flavors/{flavor_id}"}]


def brief(request: Request, flavor: StoredFlavor, at: Version) -> dict[str, Any]:
    view: dict[str, Any] = {"id": flavor.id, "name": flavor.name, "links": _links(request, flavor.id)}
    if at >= (2, 55):
        view["description"] = flavor.description
    return view


def detail(request: Request, flavor: StoredFlavor, at: Version) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": flavor.id, "name": flavor.name, "ram": flavor.ram, "disk": flavor.disk,
        "swap": flavor.swap if at >= (2, 75) else (flavor.swap or ""),
        "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral, "OS-FLV-DISABLED:disabled": flavor.disabled,
        "vcpus": flavor.vcpus, "os-flavor-access:is_public": flavor.is_public,
        "rxtx_factor": flavor.rxtx_factor or "", "links": _links(request, flavor.id)}
    if at >= (2, 55):
        view["description"] = flavor.description
    if at >= (2, 61):  # os-flavor-extra-specs:index is everyone's (project reader or admin)
        view["extra_specs"] = flavor.extra_specs
    if at >= (2, 102):
        del view["OS-FLV-DISABLED:disabled"], view["rxtx_factor"]
    return view


def _query(request: Request) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        found.setdefault(key, []).append(value)
    return found


def _listing(request: Request, found: list[StoredFlavor], items: list[dict[str, Any]],
             collection: str) -> dict[str, Any]:
    """Nova's list body: a `next` link when a page came back full (common.ViewBuilder._get_collection_links)."""
    body: dict[str, Any] = {"flavors": items}
    query = {k: v[-1] for k, v in _query(request).items()}
    limit = int(query["limit"]) if query.get("limit", "").isdigit() else flavors.MAX_LIMIT
    if found and len(found) == min(limit, flavors.MAX_LIMIT):
        query |= {"limit": str(limit), "marker": found[-1].id}
        body["flavors_links"] = [{"rel": "next", "href": f"{_base(request)}/v2.1/{collection}?{urlencode(query)}"}]
    return body


# ------------------------------------------------------------------ flavors


@router.get("/v2.1/flavors", summary="Flavors the caller may use, in brief")
def list_flavors(request: Request, who: Caller = Depends(caller), at: Version = Depends(version)) -> dict[str, Any]:
    found = flavors.list_flavors(_store(request), who, _query(request), at)
    return _listing(request, found, [brief(request, f, at) for f in found], "flavors")


@router.get("/v2.1/flavors/detail", summary="Flavors the caller may use, in detail")
def list_flavors_detail(request: Request, who: Caller = Depends(caller),
                        at: Version = Depends(version)) -> dict[str, Any]:
    found = flavors.list_flavors(_store(request), who, _query(request), at)
    return _listing(request, found, [detail(request, f, at) for f in found], "flavors/detail")


@router.post("/v2.1/flavors", summary="Create a flavor (admin)")
def create_flavor(request: Request, body: Any = Body(None), who: Caller = Depends(caller),
                  at: Version = Depends(version)) -> dict[str, Any]:
    return {"flavor": detail(request, flavors.create_flavor(_store(request), who, body, at), at)}


@router.get("/v2.1/flavors/{flavor_id}", summary="One flavor")
def show_flavor(request: Request, flavor_id: str, who: Caller = Depends(caller),
                at: Version = Depends(version)) -> dict[str, Any]:
    return {"flavor": detail(request, flavors.show_flavor(_store(request), who, flavor_id), at)}


@router.put("/v2.1/flavors/{flavor_id}", summary="Change a flavor's description (admin, 2.55)")
def update_flavor(request: Request, flavor_id: str, body: Any = Body(None), who: Caller = Depends(caller),
                  at: Version = Depends(version)) -> dict[str, Any]:
    if at < (2, 55):  # VersionNotFoundForAPIMethod: as if there were no such method
        raise Fault(404, "The resource could not be found.")
    return {"flavor": detail(request, flavors.update_flavor(_store(request), who, flavor_id, body), at)}


@router.delete("/v2.1/flavors/{flavor_id}", status_code=202, summary="Delete a flavor (admin)")
def delete_flavor(request: Request, flavor_id: str, who: Caller = Depends(caller),
                  at: Version = Depends(version)) -> Response:
    flavors.delete_flavor(_store(request), who, flavor_id)
    return Response(status_code=202)


# ------------------------------------------------------------------ extra specs


_SPECS = "/v2.1/flavors/{flavor_id}/os-extra_specs"


@router.get(_SPECS, summary="A flavor's extra specs")
def list_extra_specs(request: Request, flavor_id: str, who: Caller = Depends(caller),
                     at: Version = Depends(version)) -> dict[str, Any]:
    return {"extra_specs": flavors.extra_specs(_store(request), who, flavor_id)}


@router.post(_SPECS, summary="Add or replace extra specs (admin); quota:* keys are checked as vmqos reads them, "
                              "hw:, hw_rng:, hw_video: and os: keys as Nova checks them from 2.86")
def create_extra_specs(request: Request, flavor_id: str, body: Any = Body(None), who: Caller = Depends(caller),
                       at: Version = Depends(version)) -> dict[str, Any]:
    return flavors.set_extra_specs(_store(request), who, flavor_id, body, at)


@router.get(_SPECS + "/{key}", summary="One extra spec")
def show_extra_spec(request: Request, flavor_id: str, key: str, who: Caller = Depends(caller),
                    at: Version = Depends(version)) -> dict[str, Any]:
    return flavors.extra_spec(_store(request), who, flavor_id, key)


@router.put(_SPECS + "/{key}", summary="Set one extra spec (admin)")
def update_extra_spec(request: Request, flavor_id: str, key: str, body: Any = Body(None),
                      who: Caller = Depends(caller), at: Version = Depends(version)) -> dict[str, Any]:
    return flavors.update_extra_spec(_store(request), who, flavor_id, key, body, at)


@router.delete(_SPECS + "/{key}", summary="Remove one extra spec (admin)")
def delete_extra_spec(request: Request, flavor_id: str, key: str, who: Caller = Depends(caller),
                      at: Version = Depends(version)) -> Response:
    flavors.delete_extra_spec(_store(request), who, flavor_id, key)
    return Response(status_code=200)


# ------------------------------------------------------------------ access to private flavors


def _access(flavor_id: str, projects: tuple[str, ...]) -> dict[str, Any]:
    return {"flavor_access": [{"flavor_id": flavor_id, "tenant_id": p} for p in projects]}


@router.get("/v2.1/flavors/{flavor_id}/os-flavor-access", summary="The projects that may use a private flavor")
def list_access(request: Request, flavor_id: str, who: Caller = Depends(caller),
                at: Version = Depends(version)) -> dict[str, Any]:
    return _access(flavor_id, flavors.access(_store(request), who, flavor_id))


@router.post("/v2.1/flavors/{flavor_id}/action", summary="addTenantAccess / removeTenantAccess (admin)")
def flavor_action(request: Request, flavor_id: str, body: Any = Body(None), who: Caller = Depends(caller),
                  at: Version = Depends(version)) -> dict[str, Any]:
    store = _store(request)
    body = decoded(body)
    action = next(iter(body), None) if isinstance(body, dict) and len(body) == 1 else None
    if action == "addTenantAccess":
        return _access(flavor_id, flavors.add_access(store, who, flavor_id, body, at))
    if action == "removeTenantAccess":
        return _access(flavor_id, flavors.remove_access(store, who, flavor_id, body))
    raise bad_request(f"There is no such action: {action}" if action else "Malformed request body")
